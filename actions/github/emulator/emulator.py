"""A local GitHub Actions REST API: dispatch workflows, find and watch their runs, cancel them.

It answers the way api.github.com does, as its documentation says (each endpoint names its
page; PROTOCOL D has the facts): a dispatch is answered 204, or 200 with the run's id and URLs
when the body asks `return_run_details` (changelog 2026-02-19, "Workflow dispatch API now
returns run IDs"); the run it creates is only listed `run_delay` seconds later, which is what
makes a dispatch whose answer was lost hard to find again; runs move from queued through
in_progress to completed on a schedule read from the injected clock; every refusal a client
must survive can be produced on purpose. The admin side (Python methods, or HTTP under
/_emulator/) sets the world up and shows what a client really did, the inputs of each run
included (GitHub's run resource never shows them).

Choices where the documentation is silent (settings where a client's behaviour depends on them):

- `return_run_details_supported=False` models GitHub Enterprise Server 3.20 and older, which
  refuse the field with 400 (cli/cli#12672; `ghes_refusal_status` if a server says 422).
- `details_visible_at_once`: a run whose id the 200 returned is listed and readable at once
  (GitHub returned its id, so it exists); False applies `run_delay` to it too.
- `max_inputs` (25: docs "manually-running-a-workflow", "You can define up to 25 inputs"; 10
  before December 2025) bounds both the inputs a workflow declares and those a call sends.
- A run that `ignore_cancel`s accepts cancels (202) and keeps running; force-cancel ends it.
- Resources' `url` fields point at the emulator (from the Host header), `html_url` at
  github.com; `api_url` overrides the former.
- Faults (engine.devtools.emulator.Faults, `/_emulator/faults`): "throttle" answers the
  secondary limit's refusal, "error" a 500 (or `error_status` 502), "lost" resets the
  connection after the call was carried out (a dispatch still creates its run);
  `errors_after_effect` makes the injected error strike after the call took effect too.
"""

from __future__ import annotations

import itertools
import random
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import unquote

from actions.github.emulator._admin import ADMIN_PREFIX, handle_admin
from actions.github.emulator._endpoints import Endpoints, Route
from actions.github.emulator._limits import RateLimits
from actions.github.emulator._model import (
    DOCS,
    GitHubError,
    InputSpec,
    Repository,
    Run,
    Schedule,
    User,
    Workflow,
    check_seconds,
    check_sha,
    fake_sha,
    iso,
    token_digest,
)
from actions.github.emulator._render import check_run_name
from engine.clock import Clock, SystemClock
from engine.devtools.emulator import Faults, Request, Response, real_sleep

ERROR_STATUSES = (500, 502)
_BOOLEAN_SETTINGS = ("return_run_details_supported", "details_visible_at_once")


class GitHubEmulator(Endpoints):
    """The GitHub Actions REST API as an App: call it with a Request, or serve it with
    EmulatorServer."""

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        seed: int = 0,
        run_delay: float = 3.0,
        cancel_delay: float = 2.0,
        return_run_details_supported: bool = True,
        details_visible_at_once: bool = True,
        ghes_refusal_status: int = 400,
        max_inputs: int = 25,
        rate_limit: int = 5000,
        primary_status: int = 403,
        secondary_posts_per_minute: int = 80,
        secondary_status: int = 403,
        secondary_retry_after: float | None = 60.0,
        api_url: str | None = None,
    ) -> None:
        self.clock: Clock = clock or SystemClock()
        self.faults = Faults(seed)
        self._seed = seed
        self._lock = threading.RLock()
        self.run_delay = 3.0
        """Seconds from a dispatch to its run being listed (and readable by id)."""
        self.cancel_delay = 2.0
        """Seconds from an accepted cancel to the run being completed/cancelled."""
        self.return_run_details_supported = True
        self.details_visible_at_once = True
        self.ghes_refusal_status = 400
        self.max_inputs = 25
        self.api_url: str | None = None
        self.error_status = 500
        self.errors_after_effect = False
        self._defaults: dict[str, Any] = {
            "run_delay": run_delay, "cancel_delay": cancel_delay,
            "return_run_details_supported": return_run_details_supported,
            "details_visible_at_once": details_visible_at_once,
            "ghes_refusal_status": ghes_refusal_status, "max_inputs": max_inputs,
            "rate_limit": rate_limit, "primary_status": primary_status,
            "secondary_posts_per_minute": secondary_posts_per_minute,
            "secondary_status": secondary_status, "secondary_retry_after": secondary_retry_after,
            "api_url": api_url}
        self._route_table: list[Route] = self._routes()
        self._init_state()

    def _init_state(self) -> None:
        self._repos: dict[str, Repository] = {}
        """Keyed by lower-cased owner/name: GitHub's names are case-insensitive."""
        self._runs: dict[int, Run] = {}
        self._users: dict[str, User] = {}
        """token -> the user it authenticates."""
        self._calls: Counter[str] = Counter()
        start = random.Random(self._seed).randrange(10_000_000_000, 20_000_000_000, 1000)
        self._run_ids = itertools.count(start)
        """Seeded: a restarted emulator never hands out run ids a worker's database holds."""
        self._repo_ids = itertools.count(700_001)
        self._workflow_ids = itertools.count(160_001)
        self._user_ids = itertools.count(58_001)
        self._request_ids = itertools.count(1)
        self.limits = RateLimits()
        self.faults.clear(self._seed)
        self.error_status = 500
        self.errors_after_effect = False
        self.configure(**self._defaults)

    # ----------------------------------------------------------------- admin Python API

    def configure(self, *, clear_retry_after: bool = False, **settings: Any) -> dict[str, Any]:
        """Change how the emulator behaves where GitHub's behaviour is a choice or a number;
        a setting left out (or None) stays as it is; `clear_retry_after` drops the secondary
        limit's retry-after header. Everything is checked before anything changes. Returns
        behaviour()."""
        known = {"run_delay", "cancel_delay", "ghes_refusal_status", "max_inputs", "api_url",
                 "rate_limit", "primary_status", "secondary_posts_per_minute",
                 "secondary_status", "secondary_retry_after", *_BOOLEAN_SETTINGS}
        unknown = set(settings) - known
        if unknown:
            raise ValueError(f"unknown settings {sorted(unknown)}; known: {sorted(known)}")
        given = {key: value for key, value in settings.items() if value is not None}
        for key in ("run_delay", "cancel_delay"):
            if key in given:
                check_seconds(given[key], key)
        for key in _BOOLEAN_SETTINGS:
            if key in given and not isinstance(given[key], bool):
                raise ValueError(f"{key} must be true or false, not {given[key]!r}")
        if given.get("ghes_refusal_status", 400) not in (400, 422):
            raise ValueError("ghes_refusal_status must be 400 or 422")
        max_inputs = given.get("max_inputs", 1)
        if isinstance(max_inputs, bool) or not isinstance(max_inputs, int) or max_inputs < 1:
            raise ValueError(f"max_inputs must be a whole number >= 1, not {max_inputs!r}")
        if "api_url" in given and not str(given["api_url"]).startswith(("http://", "https://")):
            raise ValueError(f"api_url must be an http(s) URL, not {given['api_url']!r}")
        with self._lock:
            self.limits.configure(
                limit=given.get("rate_limit"), primary_status=given.get("primary_status"),
                secondary_posts=given.get("secondary_posts_per_minute"),
                secondary_status=given.get("secondary_status"),
                secondary_retry_after=given.get("secondary_retry_after"),
                clear_retry_after=clear_retry_after)
            for key in ("run_delay", "cancel_delay"):
                if key in given:
                    setattr(self, key, float(given[key]))
            for key in ("ghes_refusal_status", "max_inputs", "api_url", *_BOOLEAN_SETTINGS):
                if key in given:
                    setattr(self, key, given[key])
            return self.behaviour()

    def behaviour(self) -> dict[str, Any]:
        with self._lock:
            return {"run_delay": self.run_delay, "cancel_delay": self.cancel_delay,
                    "return_run_details_supported": self.return_run_details_supported,
                    "details_visible_at_once": self.details_visible_at_once,
                    "ghes_refusal_status": self.ghes_refusal_status,
                    "max_inputs": self.max_inputs, "api_url": self.api_url,
                    **self.limits.settings()}

    def add_repository(
        self,
        full_name: str,
        *,
        token: str | None = None,
        read_only_tokens: Sequence[str] = (),
        workflows: Mapping[str, Mapping[str, Any]] | None = None,
        private: bool = True,
        default_branch: str = "main",
    ) -> dict[str, Any]:
        """A repository with its default branch (a made-up head commit) and its workflows, by
        file name: {"deploy.yml": {"name": ..., "run_name": ..., "inputs": [...], "dispatch":
        True}}. Only its tokens see it when it is private. Returns its record."""
        owner, sep, name = full_name.partition("/")
        if not sep or not owner or not name or "/" in name or full_name != full_name.strip():
            raise ValueError(f"a repository is named 'owner/name', not {full_name!r}")
        _check_ref_name(default_branch, "default_branch")
        specs = {file: _workflow_spec(file, spec) for file, spec in (workflows or {}).items()}
        for each in (token, *read_only_tokens):
            if each is not None:
                _check_token(each)
        with self._lock:
            if full_name.lower() in self._repos:
                raise ValueError(f"repository {full_name!r} already exists")
            repo = Repository(id=next(self._repo_ids), full_name=full_name,
                              private=bool(private), default_branch=default_branch)
            repo.branches[default_branch] = fake_sha(full_name, default_branch, 0)
            self._repos[full_name.lower()] = repo
            for file, (wf_name, run_name, inputs, dispatch) in specs.items():
                repo.workflows[file] = Workflow(next(self._workflow_ids), file, wf_name,
                                                run_name, inputs, dispatch)
            if token is not None:
                self._grant(repo, token, write=True)
            for read_only in read_only_tokens:
                self._grant(repo, read_only, write=False)
            return _repository_record(repo)

    def add_workflow(self, full_name: str, file: str, *, name: str | None = None,
                     run_name: str | None = None, inputs: Any = (),
                     dispatch: bool = True) -> dict[str, Any]:
        """Add a workflow file to a repository; returns its record with its numeric id."""
        spec = _workflow_spec(file, {"name": name, "run_name": run_name, "inputs": inputs,
                                     "dispatch": dispatch})
        with self._lock:
            repo = self._repo(full_name)
            if file in repo.workflows:
                raise ValueError(f"workflow {file!r} already exists in {full_name}")
            workflow = Workflow(next(self._workflow_ids), file, *spec)
            repo.workflows[file] = workflow
            return _workflow_record(workflow)

    def add_token(self, full_name: str, token: str, *, read_only: bool = False) -> None:
        """Give a token access to a repository; a token may serve several repositories."""
        with self._lock:
            self._grant(self._repo(full_name), token, write=not read_only)

    def push(self, full_name: str, branch: str, sha: str | None = None) -> str:
        """Move (or create) a branch's head: runs dispatched from now on build it. Returns the
        sha (made up when not given)."""
        _check_ref_name(branch, "branch")
        with self._lock:
            repo = self._repo(full_name)
            new = check_sha(sha) if sha is not None else fake_sha(
                full_name, branch, len(repo.branches) + len(self._runs) + repo.dispatches,
                self.clock.now())
            repo.branches[branch] = new
            return new

    def tag(self, full_name: str, tag: str, sha: str | None = None) -> str:
        """Create or move a tag (a ref a dispatch may name)."""
        _check_ref_name(tag, "tag")
        with self._lock:
            repo = self._repo(full_name)
            repo.tags[tag] = check_sha(sha) if sha is not None else fake_sha(full_name, tag)
            return repo.tags[tag]

    def head(self, full_name: str, branch: str) -> str:
        with self._lock:
            repo = self._repo(full_name)
            if branch not in repo.branches:
                raise LookupError(f"{full_name} has no branch {branch!r}")
            return repo.branches[branch]

    def set_schedule(self, full_name: str, workflow: str | None = None, *,
                     start_after: float = 1.0, finish_after: float = 5.0,
                     conclusion: str = "success", ignore_cancel: bool = False) -> None:
        """How the next runs of a repository (or of one workflow file) go: queued until
        start_after, in_progress until finish_after, then completed with `conclusion`;
        `ignore_cancel` makes them ignore cancels (force-cancel still ends them)."""
        schedule = Schedule(start_after, finish_after, conclusion, bool(ignore_cancel))
        with self._lock:
            repo = self._repo(full_name)
            if workflow is not None and workflow not in repo.workflows:
                raise LookupError(f"{full_name} has no workflow {workflow!r}")
            repo.schedules[workflow] = schedule

    def set_run(self, run_id: int, *, ignore_cancel: bool) -> dict[str, Any]:
        """Make one run ignore cancels (a job that hangs), or listen to them again."""
        with self._lock:
            run = self._runs.get(run_id)
            if run is None:
                raise LookupError(f"no run {run_id}")
            run.ignore_cancel = bool(ignore_cancel)
            return self._run_record(run, self.clock.now())

    def repositories(self) -> list[dict[str, Any]]:
        with self._lock:
            return [_repository_record(repo) for repo in self._repos.values()]

    def runs(self, full_name: str | None = None) -> list[dict[str, Any]]:
        """Every run dispatched so far, oldest first, listed yet or not, with the inputs it was
        dispatched with: how a test sees which revision a client asked to build."""
        with self._lock:
            repo = None if full_name is None else self._repo(full_name)
            now = self.clock.now()
            return [self._run_record(run, now) for run in self._runs.values()
                    if repo is None or run.repo is repo]

    def dispatches(self) -> dict[str, int]:
        """Dispatches that created a run, per repository (answered or not)."""
        with self._lock:
            return {repo.full_name: repo.dispatches for repo in self._repos.values()}

    def call_counts(self) -> dict[str, int]:
        """API calls received per endpoint, e.g. {"POST /repos/{owner}/{repo}/actions/...": 3}.
        Refused, limited and faulted calls count too; admin calls and outages do not."""
        with self._lock:
            return dict(self._calls)

    def impose_secondary_limit(self, token: str | None = None, seconds: float = 60.0) -> None:
        """Refuse every call of `token` (None: everyone's) with the secondary limit for a while."""
        with self._lock:
            self.limits.impose(token, seconds, self.clock.now())

    def rate_limits(self) -> list[dict[str, Any]]:
        """Each client's primary window now (tokens shown as digests)."""
        with self._lock:
            return self.limits.usage(self.clock.now())

    def advance(self, seconds: float) -> float:
        """Move the emulator's FakeClock (only a fake clock can be moved); returns the time."""
        move = getattr(self.clock, "advance", None)
        if not callable(move):
            raise RuntimeError("the emulator runs on a real clock, which cannot be advanced")
        check_seconds(seconds, "seconds")
        move(float(seconds))
        return self.clock.now()

    def reset(self) -> None:
        """Forget everything, as a freshly constructed emulator (same clock and seed)."""
        with self._lock:
            self._init_state()

    def _repo(self, full_name: str) -> Repository:
        repo = self._repos.get(full_name.lower())
        if repo is None:
            raise LookupError(f"no repository {full_name!r}; add it with add_repository first")
        return repo

    def _grant(self, repo: Repository, token: str, *, write: bool) -> None:
        _check_token(token)
        repo.tokens[token] = write
        if token not in self._users:
            user_id = next(self._user_ids)
            self._users[token] = User(id=user_id, login=f"octo-user-{user_id}")

    def _run_record(self, run: Run, now: float) -> dict[str, Any]:
        status, conclusion, _ = run.status_at(now)
        return {"id": run.id, "repository": run.repo.full_name, "workflow": run.workflow.file,
                "run_number": run.run_number, "ref": run.ref, "head_branch": run.ref_name,
                "head_sha": run.head_sha, "inputs": dict(run.inputs),
                "display_title": run.display_title, "actor": run.actor.login,
                "dispatched_at": iso(run.dispatched_at), "created_at": iso(run.created_at),
                "listed": run.visible(now), "status": status, "conclusion": conclusion,
                "cancel_requested": run.cancel_requested_at is not None,
                "force_cancelled": run.force_cancelled_at is not None,
                "ignore_cancel": run.ignore_cancel, "schedule": run.schedule.as_dict()}

    # ---------------------------------------------------------------------- the HTTP edge

    def __call__(self, request: Request) -> Response:
        if request.path == ADMIN_PREFIX or request.path.startswith(ADMIN_PREFIX + "/"):
            return handle_admin(self, request)
        outage = self.faults.in_outage()
        if outage == "unavailable":
            return _unavailable()
        if outage is not None:
            return Response.dropped()
        segments = [unquote(part) for part in request.path.split("/") if part]
        route, args = self._match(request.method, segments)
        with self._lock:
            self._calls[route.key if route else f"{request.method} (unknown route)"] += 1
            request_id = f"E{next(self._request_ids):07X}:{self._seed:04X}"
            token, bad = self._credentials(request)
            user = self._users.get(token) if token is not None else None
            who = f"user ID {user.id}" if user is not None else "127.0.0.1"
            limit_headers, refused = self.limits.check(token, who, request.method,
                                                       self.clock.now(), request_id)
        headers = {**limit_headers, "x-github-request-id": request_id,
                   "x-github-api-version-selected":
                       request.header("x-github-api-version") or "2022-11-28"}
        if refused is None and bad:
            refused = GitHubError(401, "Bad credentials", DOCS)
        if refused is not None:
            return _with(refused.response(), headers)
        real_sleep(self.faults.latency)
        fault = self.faults.draw()
        if fault == "throttle":
            return _with(self.limits.secondary(request_id, limit_headers).response(), headers)
        late_error = fault == "error" and self.errors_after_effect
        if fault == "error" and not late_error:
            return _with(self._server_error(), headers)
        try:
            if route is None or args is None:
                raise GitHubError(404, "Not Found", DOCS)
            with self._lock:
                response = route.handler(request, args, self.clock.now(), token)
        except GitHubError as error:
            response = error.response()
        if fault == "lost":
            return Response.dropped()  # carried out, and the answer lost on its way back
        return _with(self._server_error() if late_error else response, headers)

    def _credentials(self, request: Request) -> tuple[str | None, bool]:
        """(token, bad): `Authorization: Bearer <token>` or `token <token>`; any other value,
        or a token GitHub does not know, is bad credentials (401)."""
        header = request.header("authorization").strip()
        if not header:
            return None, False
        scheme, _, value = header.partition(" ")
        value = value.strip()
        if scheme.lower() in ("bearer", "token") and value in self._users:
            return value, False
        return None, True

    def _match(self, method: str,
               segments: Sequence[str]) -> tuple[Route | None, dict[str, str] | None]:
        for route in self._route_table:
            args = route.match(method, segments)
            if args is not None:
                return route, args
        return None, None

    def _server_error(self) -> Response:
        if self.error_status == 502:
            # A front end's answer, not the API's JSON.
            return Response(502, b"<html><body><h1>502 Bad Gateway</h1></body></html>\n",
                            {"Content-Type": "text/html; charset=utf-8"})
        return GitHubError(500, "Server Error", DOCS).response()


def _with(response: Response, headers: Mapping[str, str]) -> Response:
    for name, value in headers.items():
        response.headers.setdefault(name, value)
    return response


def _unavailable() -> Response:
    """What stands in front of the API answers while it is down: a 503 page, not its JSON."""
    return Response(503, b"<html><body><h1>503 Service Unavailable</h1>"
                         b"No server is available to handle this request.</body></html>\n",
                    {"Content-Type": "text/html; charset=utf-8"})


def _workflow_spec(file: str, spec: Mapping[str, Any]
                   ) -> tuple[str, str | None, tuple[InputSpec, ...], bool]:
    """(name, run_name, inputs, dispatch) from an admin description of a workflow file."""
    if not isinstance(file, str) or not file.endswith((".yml", ".yaml")) or "/" in file:
        raise ValueError(f"a workflow is a file name like deploy.yml, not {file!r}")
    unknown = set(spec) - {"name", "run_name", "inputs", "dispatch"}
    if unknown:
        raise ValueError(f"unknown workflow keys {sorted(unknown)}; known: "
                         "['dispatch', 'inputs', 'name', 'run_name']")
    name = spec.get("name") or f".github/workflows/{file}"
    run_name = spec.get("run_name")
    if not isinstance(name, str) or (run_name is not None and not isinstance(run_name, str)):
        raise ValueError("a workflow's name and run_name are strings")
    dispatch = spec.get("dispatch", True)
    if not isinstance(dispatch, bool):
        raise ValueError("a workflow's dispatch is true or false")
    inputs = _input_specs(spec.get("inputs") or ())
    if run_name is not None:
        check_run_name(run_name, [each.name for each in inputs])
    return name, run_name, inputs, dispatch


def _input_specs(raw: Any) -> tuple[InputSpec, ...]:
    """Inputs as a list of names, or {name: {"required": bool, "default": str}}."""
    if isinstance(raw, Mapping):
        specs = []
        for name, options in raw.items():
            options = options or {}
            if not isinstance(options, Mapping) or set(options) - {"required", "default"}:
                raise ValueError(f"input {name!r}: give {{'required': bool, 'default': str}}")
            default = options.get("default")
            if default is not None and not isinstance(default, str):
                raise ValueError(f"input {name!r}: a default is a string")
            specs.append(InputSpec(str(name), bool(options.get("required", False)), default))
        return tuple(specs)
    if isinstance(raw, (list, tuple)) and all(isinstance(name, str) for name in raw):
        return tuple(InputSpec(name) for name in raw)
    raise ValueError("inputs are a list of names or {name: {'required': ..., 'default': ...}}")


def _repository_record(repo: Repository) -> dict[str, Any]:
    return {"id": repo.id, "full_name": repo.full_name, "private": repo.private,
            "default_branch": repo.default_branch, "branches": dict(repo.branches),
            "tags": dict(repo.tags),
            "workflows": [_workflow_record(w) for w in repo.workflows.values()],
            "tokens": sorted(token_digest(t) for t in repo.tokens),
            "schedules": {str(k) if k else "*": s.as_dict() for k, s in repo.schedules.items()},
            "dispatches": repo.dispatches}


def _workflow_record(workflow: Workflow) -> dict[str, Any]:
    return {"id": workflow.id, "file": workflow.file, "name": workflow.name,
            "path": workflow.path, "run_name": workflow.run_name, "dispatch": workflow.dispatch,
            "inputs": [{"name": i.name, "required": i.required, "default": i.default}
                       for i in workflow.inputs]}


def _check_token(token: str) -> None:
    if not isinstance(token, str) or not token or token.split() != [token]:
        raise ValueError("a token must be a non-empty string without whitespace")


def _check_ref_name(name: str, what: str) -> None:
    if not isinstance(name, str) or not name or name.startswith("refs/") or " " in name:
        raise ValueError(f"{what} must be a short ref name like main, not {name!r}")


__all__ = ["ERROR_STATUSES", "GitHubEmulator"]
