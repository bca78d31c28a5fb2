"""A local Travis CI API v3: trigger requests, watch builds, cancel them, hit the limits.

It answers the way api.travis-ci.com does (PROTOCOL B2-B8): a POST to /requests is accepted with
202 while the build appears only after a delay, builds move through their states on a schedule
read from the injected clock, and every failure a client must survive (missing or read-only
tokens, inactive repositories, the 10-requests-per-hour limit, rack-attack's plain-text 429,
500s) can be produced on purpose. The admin side (Python methods, or HTTP under /_emulator/)
sets the world up and lets tests see what the client really did.

Choices where Travis's behaviour is not documented (PROTOCOL D9 and friends):

- A request is processed `build_delay` seconds after it was accepted; it then has state
  "finished" and result "approved" (one build) or "rejected" (no build). Before that it is
  "pending" with no builds and no commit.
- A rejected request explains itself in `messages`, shown only with include=request.messages,
  as Travis does for its other request details.
- A request's own `message` is always null: the message a client sends shows up only as the
  commit message of the request and of its build, which is where PROTOCOL B9 says to look.
- Every API request counts towards the hourly limit, whatever its result.
- A missing Travis-API-Version header (without a /v3 prefix or a v3 Accept type) is answered
  400 wrong_params: the real server would hand the call to its legacy API, and a client that
  forgot the header should fail loudly rather than half work.
- Every API route needs a token; an unknown token is treated like a missing one (403
  login_required), as the brief for this emulator asks.
- POST /requests checks, in order: token, repository visibility, create_request permission,
  active repository, body, hourly limit; a refused call creates nothing and uses up nothing.
- Cancelling needs the same permission as triggering; the 202 shows the build as it was, the
  next read shows it "canceled".
- Faults (engine.emulator._http.Faults, `/_emulator/faults`): a lost answer resets the connection
  after the call was carried out (a POST /requests still creates its request); an outage
  refuses every API call, "unreachable" with a connection reset, "unavailable" with the HTML 503
  page of the front end, and the service counts none of them.
"""

from __future__ import annotations

import itertools
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from engine.clock import Clock, SystemClock
from engine.emulator._http import Faults, Request, Response, real_sleep
from engine.emulator._travis_admin import ADMIN_PREFIX, handle_admin
from engine.emulator._travis_model import (
    CREATE,
    RATE_WINDOW,
    READ,
    TERMINAL_STATES,
    BuildRecord,
    Commit,
    Repo,
    RequestRecord,
    Schedule,
    TravisError,
    User,
    build_record,
    fake_sha,
    not_found,
    paginate,
    render_build,
    render_build_minimal,
    render_pending_request,
    render_repo_minimal,
    render_repo_standard,
    render_request,
    render_user,
    repo_record,
    request_record,
    wrong_params,
)
from engine.emulator._travis_wire import (
    Route,
    asks_for_v3,
    query_filter,
    query_include,
    request_fields,
    sort_builds,
    split_path,
)


class TravisEmulator:
    """The Travis API v3 as an App: call it with a Request, or serve it with EmulatorServer."""

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        request_limit: int = 10,
        build_delay: float = 2.0,
        seed: int = 0,
    ) -> None:
        _check_limit(request_limit)
        _check_delay(build_delay)
        self.clock: Clock = clock or SystemClock()
        self.request_limit = request_limit
        """API requests per repository per hour unless the repository says otherwise."""
        self.build_delay = build_delay
        """Seconds from an accepted request to its build, unless the repository says otherwise."""
        self.faults = Faults(seed)
        self.retry_after: float | None = None
        """Add Retry-After to injected plain-text 429s; Travis never does, some proxies might."""
        self.errors_after_create = False
        """Let an injected 500 on POST /requests strike after the request was created.

        That is the failure that makes re-submitting dangerous (PROTOCOL B9): the client sees an
        error, yet a build is on its way.
        """
        self._seed = seed
        self._defaults = (request_limit, build_delay)
        self._lock = threading.RLock()
        self._routes = [
            Route.of("POST /repo/{slug}/requests", self._create_request),
            Route.of("GET /repo/{slug}/requests", self._list_requests),
            Route.of("GET /repo/{slug}/request/{id}", self._find_request),
            Route.of("GET /repo/{slug}/builds", self._list_builds),
            Route.of("GET /repo/{slug}", self._find_repo),
            Route.of("GET /build/{id}", self._find_build),
            Route.of("POST /build/{id}/cancel", self._cancel_build),
            Route.of("GET /user", self._find_user),
        ]
        self._init_state()

    def _init_state(self) -> None:
        self._repos: dict[str, Repo] = {}
        """Keyed by lower-cased slug: GitHub slugs are case-insensitive."""
        self._repos_by_id: dict[int, Repo] = {}
        self._users: dict[str, User] = {}
        """token -> the user it authenticates."""
        self._requests: dict[int, RequestRecord] = {}
        self._pending: list[RequestRecord] = []
        self._builds: dict[int, BuildRecord] = {}
        self._calls: Counter[str] = Counter()
        self._repo_ids = itertools.count(1001)
        self._user_ids = itertools.count(1)
        # Separate, far apart id ranges: a client that mixes up a request id and a build id
        # gets a 404 instead of someone else's build.
        self._request_ids = itertools.count(200_001)
        self._build_ids = itertools.count(500_001)
        self._job_ids = itertools.count(800_001)
        self._commit_ids = itertools.count(900_001)

    # ----------------------------------------------------------------- admin Python API

    def add_repository(
        self,
        slug: str,
        *,
        token: str | None = None,
        read_only_tokens: Sequence[str] = (),
        default_branch: str = "main",
        active: bool = True,
        request_limit: int | None = None,
        build_delay: float | None = None,
    ) -> dict[str, Any]:
        """Register a repository; only its tokens will see it. Returns its record with its id."""
        owner, sep, name = slug.partition("/")
        if not sep or not owner or not name or "/" in name or slug != slug.strip():
            raise ValueError(f"a repository slug looks like 'owner/name', not {slug!r}")
        if not isinstance(default_branch, str) or not default_branch:
            raise ValueError("default_branch must be a non-empty branch name")
        if request_limit is not None:
            _check_limit(request_limit)
        if build_delay is not None:
            _check_delay(build_delay)
        for each in (token, *read_only_tokens):
            if each is not None:
                _check_token(each)
        with self._lock:
            if slug.lower() in self._repos:
                raise ValueError(f"repository {slug!r} already exists")
            repo = Repo(
                id=next(self._repo_ids),
                slug=slug,
                default_branch=default_branch,
                active=bool(active),
                request_limit=request_limit,
                build_delay=build_delay,
            )
            self._repos[slug.lower()] = repo
            self._repos_by_id[repo.id] = repo
            if token is not None:
                self._grant(repo, token, CREATE)
            for read_only in read_only_tokens:
                self._grant(repo, read_only, READ)
            return repo_record(repo, self._limit(repo), self._delay(repo))

    def add_token(self, slug: str, token: str, *, read_only: bool = False) -> None:
        """Give a token access to a repository; a token may serve several repositories."""
        with self._lock:
            self._grant(self._repo(slug), token, READ if read_only else CREATE)

    def update_repository(
        self,
        slug: str,
        *,
        active: bool | None = None,
        request_limit: int | None = None,
        build_delay: float | None = None,
    ) -> dict[str, Any]:
        """Change a repository mid-test, e.g. deactivate it to see a client handle 406."""
        if request_limit is not None:
            _check_limit(request_limit)
        if build_delay is not None:
            _check_delay(build_delay)
        with self._lock:
            repo = self._repo(slug)
            if active is not None:
                repo.active = bool(active)
            if request_limit is not None:
                repo.request_limit = request_limit
            if build_delay is not None:
                repo.build_delay = build_delay
            return repo_record(repo, self._limit(repo), self._delay(repo))

    def set_schedule(
        self,
        slug: str,
        branch: str | None = None,
        *,
        start_after: float = 1.0,
        finish_after: float = 5.0,
        result: str = "passed",
        reject: str | None = None,
        intermediate: str | None = None,
    ) -> None:
        """Decide how the next builds of a repository (or of one branch) run.

        Applies to requests accepted from now on; a branch schedule beats the repository's.
        `reject` makes those requests finish "rejected" with that message and no build;
        `intermediate` replaces "created" before the build starts, e.g. "queued" or "received",
        to prove a client treats states it does not know as still running.
        """
        schedule = Schedule(
            start_after=start_after,
            finish_after=finish_after,
            result=result,
            reject=reject,
            intermediate=intermediate,
        )
        if branch is not None and (not isinstance(branch, str) or not branch):
            raise ValueError("branch must be a non-empty name, or None for the whole repository")
        with self._lock:
            self._repo(slug).schedules[branch] = schedule

    def repositories(self) -> list[dict[str, Any]]:
        """Every repository with its numeric id, for tests that build /repo/{id} paths."""
        with self._lock:
            return [repo_record(r, self._limit(r), self._delay(r)) for r in self._repos.values()]

    def requests(self, slug: str | None = None) -> list[dict[str, Any]]:
        """Every request accepted so far, oldest first, with the message and branch as sent.

        This is how a test counts what a client triggered: match its marker in `message`.
        """
        with self._lock:
            now = self.clock.now()
            self._process_due(now)
            repo = None if slug is None else self._repo(slug)
            return [
                request_record(r) for r in self._requests.values() if repo is None or r.repo is repo
            ]

    def builds(self, slug: str | None = None) -> list[dict[str, Any]]:
        """Every build created so far, oldest first, with its state as of now."""
        with self._lock:
            now = self.clock.now()
            self._process_due(now)
            repo = None if slug is None else self._repo(slug)
            return [
                build_record(b, now)
                for b in self._builds.values()
                if repo is None or b.repo is repo
            ]

    def call_counts(self) -> dict[str, int]:
        """API calls received per endpoint, e.g. {"POST /repo/{slug}/requests": 3}.

        Faulted calls count too: they reached the server, and a client's retries are exactly
        what a test wants to see here. Admin calls do not count.
        """
        with self._lock:
            return dict(self._calls)

    def reset(self) -> None:
        """Forget everything, as a freshly constructed emulator (same clock and seed)."""
        with self._lock:
            self._init_state()
            self.request_limit, self.build_delay = self._defaults
            self.retry_after = None
            self.errors_after_create = False
            self.faults.clear(self._seed)

    def _repo(self, slug: str) -> Repo:
        repo = self._repos.get(slug.lower())
        if repo is None:
            raise LookupError(f"no repository {slug!r}; add it with add_repository first")
        return repo

    def _grant(self, repo: Repo, token: str, permission: str) -> None:
        _check_token(token)
        repo.tokens[token] = permission
        if token not in self._users:
            user_id = next(self._user_ids)
            self._users[token] = User(id=user_id, login=f"travis-user-{user_id}")

    # ------------------------------------------------------------------ the world moving

    def _limit(self, repo: Repo) -> int:
        return self.request_limit if repo.request_limit is None else repo.request_limit

    def _delay(self, repo: Repo) -> float:
        return self.build_delay if repo.build_delay is None else repo.build_delay

    def _process_due(self, now: float) -> None:
        """Let the "gatekeeper" handle every request whose delay has passed, in due order.

        Doing this on every call, in due order, gives builds the numbers they would have had
        if a background worker had processed them on time.
        """
        due = sorted((r for r in self._pending if r.due_at <= now), key=lambda r: (r.due_at, r.id))
        if not due:
            return
        self._pending = [r for r in self._pending if r.due_at > now]
        for record in due:
            self._process(record)

    def _process(self, record: RequestRecord) -> None:
        repo = record.repo
        record.processed = True
        sha = record.sha or fake_sha(repo.slug, record.branch, record.id)
        record.commit = Commit(
            id=next(self._commit_ids),
            sha=sha,
            ref=f"refs/heads/{record.branch}",
            message=record.message or f"Emulated head commit of {record.branch}",
            committed_at=record.created_at,
        )
        if record.schedule.reject is not None:
            record.messages.append(
                {
                    "@type": "message",
                    "@representation": "minimal",
                    "id": record.id,
                    "level": "error",
                    "key": "request",
                    "code": "rejected",
                    "args": {"message": record.schedule.reject},
                    "src": None,
                    "line": None,
                }
            )
            return
        previous = next(
            (
                b
                for b in reversed(self._builds.values())
                if b.repo is repo and b.request.branch == record.branch
            ),
            None,
        )
        repo.build_count += 1
        build = BuildRecord(
            id=next(self._build_ids),
            number=repo.build_count,
            job_id=next(self._job_ids),
            request=record,
            commit=record.commit,
            created_at=record.due_at,
            previous_state=None if previous is None else previous.state_at(record.due_at),
        )
        record.build = build
        self._builds[build.id] = build

    # ---------------------------------------------------------------------- the HTTP edge

    def __call__(self, request: Request) -> Response:
        if request.path == ADMIN_PREFIX or request.path.startswith(ADMIN_PREFIX + "/"):
            return handle_admin(self, request)
        outage = self.faults.in_outage()
        if outage == "unavailable":
            return _unavailable()
        if outage is not None:
            return Response.dropped()
        segments, versioned = split_path(request.path)
        route, args = self._match(request.method, segments)
        with self._lock:
            self._calls[route.key if route else f"{request.method} (unknown route)"] += 1
        real_sleep(self.faults.latency)
        fault = self.faults.draw()
        if fault == "throttle":
            return self._throttled()
        late_error = (
            fault == "error"
            and self.errors_after_create
            and route is not None
            and route.handler == self._create_request
        )
        if fault == "error" and not late_error:
            return _server_error()
        try:
            if not versioned and not asks_for_v3(request):
                raise wrong_params(
                    "this server speaks Travis API v3 only: send the header "
                    "'Travis-API-Version: 3' (or use a /v3 path prefix)"
                )
            if route is None or args is None:
                raise TravisError(
                    404,
                    "not_found",
                    "resource not found (or insufficient access)",
                    resource_type="resource",
                )
            with self._lock:
                now = self.clock.now()
                self._process_due(now)
                response = route.handler(request, args, now)
        except TravisError as error:
            response = error.response()
        if fault == "lost":
            return Response.dropped()  # done, and the answer lost on its way back
        # The injected 500 strikes after the work was done, whether or not a request was created.
        return _server_error() if late_error else response

    def _match(
        self, method: str, segments: Sequence[str]
    ) -> tuple[Route | None, dict[str, str] | None]:
        for route in self._routes:
            args = route.match(method, segments)
            if args is not None:
                return route, args
        return None, None

    def _throttled(self) -> Response:
        headers = {}
        if self.retry_after is not None:
            headers["Retry-After"] = str(round(self.retry_after))
        return Response.text(429, "Retry later\n", headers=headers)

    def _authenticate(self, request: Request) -> str:
        scheme, _, value = request.header("authorization").strip().partition(" ")
        token = value.strip()
        if scheme.lower() != "token" or token not in self._users:
            raise TravisError(403, "login_required", "login required")
        return token

    def _visible_repo(self, ref: str, token: str) -> Repo:
        repo = self._repos_by_id.get(int(ref)) if ref.isdigit() else self._repos.get(ref.lower())
        if repo is None or token not in repo.tokens:
            raise not_found("repository")
        return repo

    def _visible_build(self, build_id: str, token: str) -> BuildRecord:
        build = self._builds.get(int(build_id))
        if build is None or token not in build.repo.tokens:
            raise not_found("build")
        return build

    # ------------------------------------------------------------------------ endpoints

    def _create_request(self, request: Request, args: Mapping[str, str], now: float) -> Response:
        token = self._authenticate(request)
        repo = self._visible_repo(args["slug"], token)
        if repo.tokens[token] != CREATE:
            raise TravisError(
                403,
                "insufficient_access",
                "operation requires create_request access to repository",
                permission="create_request",
                resource_type="repository",
                repository=render_repo_minimal(repo),
            )
        if not repo.active:
            raise TravisError(
                406,
                "repository_inactive",
                "cannot create requests on an inactive repository",
                repository=render_repo_minimal(repo),
            )
        fields = request_fields(request)
        limit = self._limit(repo)
        recent = sum(
            1
            for r in self._requests.values()
            if r.repo is repo and r.created_at > now - RATE_WINDOW
        )
        remaining = max(limit - recent, 0)
        if remaining == 0:
            raise TravisError(
                429,
                "request_limit_reached",
                "request limit reached for resource",
                max_requests=limit,
                per_seconds=RATE_WINDOW,
                repository=render_repo_minimal(repo),
            )
        branch = fields.get("branch") or repo.default_branch
        record = RequestRecord(
            id=next(self._request_ids),
            repo=repo,
            user=self._users[token],
            branch=branch,
            message=fields.get("message"),
            sha=fields.get("sha"),
            tag_name=fields.get("tag_name"),
            config=fields.get("config"),
            configs=fields.get("configs"),
            merge_mode=fields.get("merge_mode"),
            created_at=now,
            due_at=now + self._delay(repo),
            schedule=repo.schedule_for(branch),
        )
        self._requests[record.id] = record
        self._pending.append(record)
        # A zero delay means "processed before anyone can look", as a very fast gatekeeper would.
        self._process_due(now)
        body = {
            "@type": "pending",
            "resource_type": "request",
            "remaining_requests": remaining,
            "repository": render_repo_minimal(repo),
            "request": render_pending_request(record),
        }
        return Response.json(202, body)

    def _list_requests(self, request: Request, args: Mapping[str, str], now: float) -> Response:
        token = self._authenticate(request)
        repo = self._visible_repo(args["slug"], token)
        states = query_filter(request, "state", "request.state")
        results = query_filter(request, "result", "request.result")
        branches = query_filter(request, "branch", "request.branch")
        found = [
            r
            for r in sorted(self._requests.values(), key=lambda r: r.id, reverse=True)
            if r.repo is repo
            and (states is None or r.state in states)
            and (results is None or (r.result or "") in results)
            and (branches is None or r.branch in branches)
        ]
        page, pagination, href = paginate(found, request.query, request.path)
        include = query_include(request)
        return Response.json(
            200,
            {
                "@type": "requests",
                "@href": href,
                "@representation": "standard",
                "@pagination": pagination,
                "requests": [render_request(r, now, include) for r in page],
            },
        )

    def _find_request(self, request: Request, args: Mapping[str, str], now: float) -> Response:
        token = self._authenticate(request)
        repo = self._visible_repo(args["slug"], token)
        record = self._requests.get(int(args["id"]))
        if record is None or record.repo is not repo:
            raise not_found("request")
        return Response.json(200, render_request(record, now, query_include(request)))

    def _list_builds(self, request: Request, args: Mapping[str, str], now: float) -> Response:
        token = self._authenticate(request)
        repo = self._visible_repo(args["slug"], token)
        states = query_filter(request, "build.state")
        previous = query_filter(request, "build.previous_state")
        events = query_filter(request, "build.event_type")
        creators = query_filter(request, "build.created_by")
        branches = query_filter(request, "branch.name")
        found = [
            b
            for b in self._builds.values()
            if b.repo is repo
            and (states is None or b.state_at(now) in states)
            and (previous is None or (b.previous_state or "") in previous)
            and (events is None or "api" in events)
            and (creators is None or b.request.user.login in creators)
            and (branches is None or b.request.branch in branches)
        ]
        found = sort_builds(found, request.param("sort_by"), now)
        page, pagination, href = paginate(found, request.query, request.path)
        return Response.json(
            200,
            {
                "@type": "builds",
                "@href": href,
                "@representation": "standard",
                "@pagination": pagination,
                "builds": [render_build(b, now) for b in page],
            },
        )

    def _find_repo(self, request: Request, args: Mapping[str, str], now: float) -> Response:
        token = self._authenticate(request)
        return Response.json(200, render_repo_standard(self._visible_repo(args["slug"], token)))

    def _find_build(self, request: Request, args: Mapping[str, str], now: float) -> Response:
        token = self._authenticate(request)
        return Response.json(200, render_build(self._visible_build(args["id"], token), now))

    def _cancel_build(self, request: Request, args: Mapping[str, str], now: float) -> Response:
        token = self._authenticate(request)
        build = self._visible_build(args["id"], token)
        if build.repo.tokens[token] != CREATE:
            raise TravisError(
                403,
                "insufficient_access",
                "operation requires cancel access to build",
                permission="cancel",
                resource_type="build",
                build=render_build_minimal(build, now),
            )
        if build.state_at(now) in TERMINAL_STATES:
            raise TravisError(409, "build_not_cancelable", "build is not running, cannot cancel")
        # Travis queues the cancel and renders the build as it was; the state changes "at once"
        # for the next reader, but the 202 itself does not promise it.
        rendered = render_build_minimal(build, now)
        build.canceled_at = now
        body = {
            "@type": "pending",
            "build": rendered,
            "state_change": "cancel",
            "resource_type": "build",
        }
        return Response.json(202, body)

    def _find_user(self, request: Request, args: Mapping[str, str], now: float) -> Response:
        token = self._authenticate(request)
        return Response.json(200, render_user(self._users[token], "standard"))


def _check_limit(limit: int) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise ValueError(f"a request limit must be a whole number >= 0, not {limit!r}")


def _check_token(token: str) -> None:
    if not isinstance(token, str) or not token or token.split() != [token]:
        raise ValueError("a token must be a non-empty string without whitespace")


def _check_delay(delay: float) -> None:
    if isinstance(delay, bool) or not isinstance(delay, (int, float)) or delay < 0:
        raise ValueError(f"a build delay must be a number of seconds >= 0, not {delay!r}")


def _server_error() -> Response:
    return TravisError(500, "server_error", "internal server error").response()


def _unavailable() -> Response:
    """What stands in front of Travis answers while the API is down: a 503 page, not Travis's
    JSON (its load balancer or CDN answers, not the application)."""
    return Response(
        503,
        b"<html><body><h1>503 Service Unavailable</h1>"
        b"No server is available to handle this request.</body></html>\n",
        {"Content-Type": "text/html; charset=utf-8"},
    )


__all__ = ["TravisEmulator"]
