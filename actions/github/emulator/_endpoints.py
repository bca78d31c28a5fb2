"""The REST endpoints of the GitHub Actions emulator: who may call, and what each route answers.

A mixin of actions.github.emulator.GitHubEmulator, which holds the state these read and change
(under its lock, taken by the HTTP edge before a handler runs). Each answer names the GitHub
documentation page it is modelled on; the module docstring of emulator.py lists the choices
made where the documentation is silent.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from actions.github.emulator._model import (
    CANCEL_DOCS,
    CONCLUSIONS,
    DISPATCH_DOCS,
    FORCE_CANCEL_DOCS,
    GET_RUN_DOCS,
    LIST_RUNS_DOCS,
    STATUSES,
    GitHubError,
    Repository,
    Run,
    User,
    Workflow,
    invalid,
    not_found,
)
from actions.github.emulator._render import (
    HTML_URL,
    created_range,
    display_title,
    in_range,
    link_header,
    render_run,
)
from engine.devtools.emulator import Request, Response

Handler = Callable[[Request, Mapping[str, str], float, str | None], Response]
"""An endpoint: the request, its path values, the time of the call, the caller's token."""

SEARCH_CAP = 1000
"""List workflow runs "returns up to 1,000 results for each search when using the following
parameters: actor, branch, check_suite_id, created, event, head_sha, status" (its docs)."""

_SEARCH_PARAMS = ("actor", "branch", "check_suite_id", "created", "event", "head_sha", "status")
DEFAULT_PER_PAGE = 30
MAX_PER_PAGE = 100


@dataclass(frozen=True)
class Route:
    key: str
    """"METHOD /path/{placeholder}": also how the call is counted in call_counts()."""
    method: str
    pattern: tuple[str, ...]
    handler: Handler

    @classmethod
    def of(cls, key: str, handler: Handler) -> Route:
        method, _, path = key.partition(" ")
        return cls(key, method, tuple(part for part in path.split("/") if part), handler)

    def match(self, method: str, segments: Sequence[str]) -> dict[str, str] | None:
        if method != self.method or len(segments) != len(self.pattern):
            return None
        args: dict[str, str] = {}
        for want, got in zip(self.pattern, segments, strict=True):
            if want.startswith("{"):
                if want == "{run_id}" and not got.isdigit():
                    return None
                args[want[1:-1]] = got
            elif want != got:
                return None
        return args


class Endpoints:
    """Route handlers: (request, path values, now, token) -> response; GitHubError refuses."""

    _repos: dict[str, Repository]
    _runs: dict[int, Run]
    _users: dict[str, User]
    _run_ids: itertools.count[int]
    run_delay: float
    cancel_delay: float
    return_run_details_supported: bool
    ghes_refusal_status: int
    max_inputs: int
    details_visible_at_once: bool
    api_url: str | None

    def _routes(self) -> list[Route]:
        prefix = "/repos/{owner}/{repo}/actions"
        return [
            Route.of(f"POST {prefix}/workflows/{{workflow_id}}/dispatches", self._dispatch),
            Route.of(f"GET {prefix}/workflows/{{workflow_id}}/runs", self._list_runs),
            Route.of(f"GET {prefix}/runs/{{run_id}}", self._get_run),
            Route.of(f"POST {prefix}/runs/{{run_id}}/cancel", self._cancel),
            Route.of(f"POST {prefix}/runs/{{run_id}}/force-cancel", self._force_cancel),
        ]

    # ------------------------------------------------------------------------ who may call

    def _visible_repo(self, args: Mapping[str, str], token: str | None,
                      docs: str) -> Repository:
        """A private repository the token cannot see is 404, exactly as an absent one."""
        repo = self._repos.get(f"{args['owner']}/{args['repo']}".lower())
        if repo is None or (repo.private and (token is None or token not in repo.tokens)):
            raise not_found(docs)
        return repo

    def _require_write(self, repo: Repository, token: str | None, docs: str) -> None:
        """Writes need credentials, and a token allowed to write (fine-grained tokens need
        `actions: write`; PROTOCOL D); a read-only token gets GitHub's 403 for fine-grained
        tokens."""
        if token is None:
            raise GitHubError(401, "Requires authentication", docs)
        if not repo.tokens.get(token, False):
            raise GitHubError(403, "Resource not accessible by personal access token", docs)

    def _api_url(self, request: Request) -> str:
        """Where the resources' `url` fields point: the emulator itself (from the Host the
        client used), so a client can follow them; or the configured `api_url`."""
        if self.api_url:
            return self.api_url.rstrip("/")
        return f"http://{request.header('host') or '127.0.0.1'}"

    # ------------------------------------------------------------------------ dispatch

    def _dispatch(self, request: Request, args: Mapping[str, str], now: float,
                  token: str | None) -> Response:
        """docs: actions/workflows#create-a-workflow-dispatch-event; the 2026-02-19 changelog
        "Workflow dispatch API now returns run IDs" for return_run_details."""
        repo = self._visible_repo(args, token, DISPATCH_DOCS)
        workflow = repo.workflow(args["workflow_id"])
        if workflow is None:
            raise not_found(DISPATCH_DOCS)
        self._require_write(repo, token, DISPATCH_DOCS)
        assert token is not None
        body = _json_object(request)
        ref, inputs, details = self._dispatch_fields(body)
        resolved = repo.resolve(ref)
        if resolved is None:
            raise invalid(f"No ref found for: {ref}")
        if not workflow.dispatch:
            raise invalid("Workflow does not have 'workflow_dispatch' trigger")
        if len(workflow.inputs) > self.max_inputs:
            # Seen from gh: "HTTP 422: Invalid Argument - failed to parse workflow: you may
            # only define up to 25 `inputs` for a `workflow_dispatch` event".
            raise invalid("Invalid Argument - failed to parse workflow: you may only define "
                          f"up to {self.max_inputs} `inputs` for a `workflow_dispatch` event")
        declared = {spec.name: spec for spec in workflow.inputs}
        unexpected = [name for name in inputs if name not in declared]
        if unexpected:
            raise invalid(f"Unexpected inputs provided: {json.dumps(unexpected)}")
        for spec in workflow.inputs:
            if spec.required and spec.default is None and spec.name not in inputs:
                raise invalid(f"Required input '{spec.name}' not provided")
        full_ref, ref_name, sha = resolved
        run = self._create_run(repo, workflow, full_ref, ref_name, sha, inputs,
                               self._users[token], now, details)
        if not details:
            return Response(204)
        api = self._api_url(request)
        return Response.json(200, {
            "workflow_run_id": run.id,
            "run_url": f"{api}/repos/{repo.full_name}/actions/runs/{run.id}",
            "html_url": f"{HTML_URL}/{repo.full_name}/actions/runs/{run.id}",
        }, "application/json; charset=utf-8")

    def _dispatch_fields(self, body: Mapping[str, Any]) -> tuple[str, dict[str, str], bool]:
        """The body checked as GitHub's schema validator would ("Invalid request." and why).

        GitHub Enterprise Server 3.20 and older know no return_run_details and answer 400 to it
        (cli/cli#12672); github.com answers 422 to keys it does not know (emilyriederer/
        projmgr#43: "Invalid request. "per_page" is not a permitted key.").
        """
        known = {"ref", "inputs"} | ({"return_run_details"}
                                     if self.return_run_details_supported else set())
        unknown = sorted(set(body) - known)
        if unknown:
            ghes = "return_run_details" in unknown and not self.return_run_details_supported
            names = ", ".join(json.dumps(name) for name in unknown)
            verb = "is not a permitted key" if len(unknown) == 1 else "are not permitted keys"
            raise invalid(f"Invalid request.\n\n{names} {verb}.",
                          self.ghes_refusal_status if ghes else 422)
        if "ref" not in body:
            raise invalid("Invalid request.\n\n\"ref\" wasn't supplied.")
        ref = body["ref"]
        if not isinstance(ref, str):
            raise invalid(f"Invalid request.\n\nFor 'properties/ref', {json.dumps(ref)} is not "
                          "a string.")
        details = body.get("return_run_details", False)
        if not isinstance(details, bool):
            raise invalid("Invalid request.\n\nFor 'properties/return_run_details', "
                          f"{json.dumps(details)} is not a boolean.")
        inputs = body.get("inputs") or {}
        if not isinstance(inputs, dict):
            raise invalid(f"Invalid request.\n\nFor 'properties/inputs', {json.dumps(inputs)} "
                          "is not an object.")
        if len(inputs) > self.max_inputs:
            raise invalid(f"Invalid request.\n\nFor 'properties/inputs', the object has "
                          f"{len(inputs)} properties; at most {self.max_inputs} are allowed.")
        for name, value in inputs.items():
            if not isinstance(value, str):
                raise invalid(f"Invalid request.\n\nFor 'properties/{name}', "
                              f"{json.dumps(value)} is not a string.")
        return ref, dict(inputs), details

    def _create_run(self, repo: Repository, workflow: Workflow, ref: str, ref_name: str,
                    sha: str, sent: Mapping[str, str], actor: User, now: float,
                    details: bool) -> Run:
        inputs = {spec.name: spec.default for spec in workflow.inputs
                  if spec.default is not None}
        inputs.update(sent)
        context = {"github.ref": ref, "github.ref_name": ref_name, "github.sha": sha,
                   "github.actor": actor.login, "github.triggering_actor": actor.login,
                   "github.workflow": workflow.name, "github.event_name": "workflow_dispatch",
                   "github.repository": repo.full_name, "github.repository_owner": repo.owner}
        delay = 0.0 if details and self.details_visible_at_once else self.run_delay
        workflow.run_count += 1
        repo.dispatches += 1
        schedule = repo.schedule_for(workflow)
        run = Run(id=next(self._run_ids), repo=repo, workflow=workflow,
                  run_number=workflow.run_count, ref=ref, ref_name=ref_name, head_sha=sha,
                  inputs=inputs, actor=actor,
                  display_title=display_title(workflow, context, inputs),
                  dispatched_at=now, created_at=now + delay, schedule=schedule,
                  ignore_cancel=schedule.ignore_cancel)
        self._runs[run.id] = run
        return run

    # ------------------------------------------------------------------------ runs

    def _list_runs(self, request: Request, args: Mapping[str, str], now: float,
                   token: str | None) -> Response:
        """docs: actions/workflow-runs#list-workflow-runs-for-a-workflow: newest first,
        filtered, paginated with a Link header (per_page 30 by default, 100 at most)."""
        repo = self._visible_repo(args, token, LIST_RUNS_DOCS)
        workflow = repo.workflow(args["workflow_id"])
        if workflow is None:
            raise not_found(LIST_RUNS_DOCS)
        found = [run for run in self._runs.values()
                 if run.workflow is workflow and run.visible(now)]
        found = [run for run in found if _matches(run, request, now)]
        found.sort(key=lambda run: (run.created_at, run.id), reverse=True)
        if any(request.param(name) is not None for name in _SEARCH_PARAMS):
            found = found[:SEARCH_CAP]
        per_page = _number(request.param("per_page"), DEFAULT_PER_PAGE)
        per_page = min(per_page, MAX_PER_PAGE) if per_page > 0 else DEFAULT_PER_PAGE
        page = max(_number(request.param("page"), 1), 1)
        last = max(math.ceil(len(found) / per_page), 1)
        chosen = found[(page - 1) * per_page: page * per_page]
        api = self._api_url(request)
        headers = {}
        link = link_header(api + request.path, request.query, page, last)
        if link is not None:
            headers["Link"] = link
        return Response.json(200, {"total_count": len(found),
                                   "workflow_runs": [render_run(r, now, api) for r in chosen]},
                             "application/json; charset=utf-8", headers)

    def _run(self, args: Mapping[str, str], token: str | None, now: float, docs: str) -> Run:
        repo = self._visible_repo(args, token, docs)
        run = self._runs.get(int(args["run_id"]))
        if run is None or run.repo is not repo or not run.visible(now):
            raise not_found(docs)
        return run

    def _get_run(self, request: Request, args: Mapping[str, str], now: float,
                 token: str | None) -> Response:
        """docs: actions/workflow-runs#get-a-workflow-run."""
        run = self._run(args, token, now, GET_RUN_DOCS)
        return Response.json(200, render_run(run, now, self._api_url(request)),
                             "application/json; charset=utf-8")

    def _cancel(self, request: Request, args: Mapping[str, str], now: float,
                token: str | None) -> Response:
        """docs: actions/workflow-runs#cancel-a-workflow-run: 202, or 409 once it is over. The
        cancel takes effect `cancel_delay` later (the run stays as it was meanwhile), and never
        for a run that ignores cancels (a job that does not stop: force-cancel's case)."""
        run = self._run(args, token, now, CANCEL_DOCS)
        self._require_write(run.repo, token, CANCEL_DOCS)
        if run.status_at(now)[0] == "completed":
            raise GitHubError(409, "Cannot cancel a workflow run that is completed.",
                              CANCEL_DOCS)
        if run.cancel_at is None:
            run.cancel_requested_at = now
            run.cancel_at = now + self.cancel_delay
        return Response.json(202, {}, "application/json; charset=utf-8")

    def _force_cancel(self, request: Request, args: Mapping[str, str], now: float,
                      token: str | None) -> Response:
        """docs: actions/workflow-runs#force-cancel-a-workflow-run: "bypasses any conditions
        that would otherwise cause a run not to be cancelled"; it ends the run at once. A
        completed run answers 409 with the cancel endpoint's words (the emulator's choice)."""
        run = self._run(args, token, now, FORCE_CANCEL_DOCS)
        self._require_write(run.repo, token, FORCE_CANCEL_DOCS)
        if run.status_at(now)[0] == "completed":
            raise GitHubError(409, "Cannot cancel a workflow run that is completed.",
                              FORCE_CANCEL_DOCS)
        run.force_cancelled_at = now
        return Response.json(202, {}, "application/json; charset=utf-8")


def _matches(run: Run, request: Request, now: float) -> bool:
    event = request.param("event")
    if event is not None and event != "workflow_dispatch":
        return False
    branch = request.param("branch")
    if branch is not None and branch != run.ref_name:
        return False
    actor = request.param("actor")
    if actor is not None and actor != run.actor.login:
        return False
    head_sha = request.param("head_sha")
    if head_sha is not None and head_sha != run.head_sha:
        return False
    status = request.param("status")
    if status is not None:
        current, conclusion, _ = run.status_at(now)
        if status in STATUSES and status != current:
            return False
        if status in CONCLUSIONS and status != conclusion:
            return False
        if status not in STATUSES and status not in CONCLUSIONS:
            return False  # GitHub's answer to an unknown status is undocumented: nothing.
    created = request.param("created")
    return created is None or in_range(run.created_at, created_range(created))


def _json_object(request: Request) -> Mapping[str, Any]:
    """GitHub's answer to a body it cannot read as a JSON object: 400 "Problems parsing JSON"."""
    try:
        body = request.json()
    except (ValueError, UnicodeDecodeError):
        body = None
    if not isinstance(body, dict):
        raise GitHubError(400, "Problems parsing JSON", DISPATCH_DOCS)
    return body


def _number(value: str | None, default: int) -> int:
    return int(value) if value is not None and value.isdigit() else default
