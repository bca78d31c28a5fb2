"""A local Travis CI API v3: trigger requests, watch builds, cancel them, hit the limits.

It answers the way api.travis-ci.com does (PROTOCOL B2-B9, read against travis-ci/travis-api at
d1cbb6d; the files are named where each behaviour is made): a POST to /requests is accepted
with 202 while the request waits, pending, for the gatekeeper; builds move through their
states on a schedule read from the injected clock; every failure a client must survive can be
produced on purpose. The admin side (Python methods, or HTTP under /_emulator/) sets the world
up and lets tests see what the client really did.

What the source says, and what the emulator does:

- A request created through the API is stored pending with no branch, no commit and no message
  (`queries/request.rb#create_request`); its branch_name is its commit's
  (`models/request.rb#branch_name`) and `?branch=` filters on branch_id (`queries/requests.rb`),
  so until it is processed it shows `branch_name: null`, `commit: null`, `message: null` and is
  missing from every branch-filtered list. It is processed `build_delay` seconds after the POST
  (_gatekeeper): then it has its commit (the sha sent, or the branch's
  head at that moment), its branch and its build, or it is rejected.
- `GET /repo/{slug}/requests` filters on result, state, from, to and branch, newest id first
  (`queries/requests.rb`), paginated 25 by default, 100 at most.
- A build resource carries `request` only with include=build.request (`renderer/build.rb`).
- A request's config is echoed in the 202 as a JSON string (`queries/request.rb#to_str`) and
  read back as an object (`renderer/request.rb#config`).
- A cancel is queued (`queries/build.rb#cancel` pushes "build:cancel"): the 202 shows the build
  as it was and it turns "canceled" `cancel_delay` seconds later, unless it finished first; only
  a build already passed, failed, errored or canceled answers 409 build_not_cancelable.
- No Authorization header: 403 login_required. A token Travis does not know: 403
  wrong_credentials "access denied" from the v3 access control (`v3/access_control.rb`); but
  the ScopeCheck middleware in front of v3 may answer first with a plain-text 403 "access
  denied" (`app/middleware/scope_check.rb`): which one a client sees is the `wrong_token`
  setting ("json", "text").
- rack-attack's rules (_attack): the one-hour ban after 50 POSTs in 30 s
  and the 2000-a-minute throttle, per token.
- The 10-per-hour limit of API requests per repository (`services/requests/create.rb`).

Choices where the source says nothing (settings where a client's behaviour depends on them):

- `processed_message`: what a processed request shows as its own message
  (_render.PROCESSED_MESSAGES); `unknown_sha` per repository: what the
  gatekeeper does with a sha it does not know (_model.UNKNOWN_SHA).
- A processed request has state "finished" and result "approved" (one build) or "rejected" (no
  build); a rejected one explains itself in `messages` (include=request.messages).
- A body shorter than its Content-Length is refused with 400 (a front end never hands such a
  request to the application, and reading it as `{}` would trigger a build nobody asked for).
- A missing Travis-API-Version header (without a /v3 prefix or a v3 Accept type) is answered
  400 wrong_params: the real server would hand the call to its legacy API.
- POST /requests checks, in order: token, repository visibility, create_request permission,
  active repository, body, hourly limit; a refused call creates nothing and uses up nothing.
- Faults (engine.devtools.emulator.Faults, `/_emulator/faults`): a lost answer resets the connection
  after the call was carried out (a POST /requests still creates its request); an outage
  refuses every API call, "unreachable" with a connection reset, "unavailable" with the HTML 503
  page of the front end, and the service counts none of them.
"""

from __future__ import annotations

import itertools
import threading
from collections import Counter
from collections.abc import Sequence
from typing import Any

from actions.travis.emulator._admin import ADMIN_PREFIX, handle_admin
from actions.travis.emulator._attack import Attack
from actions.travis.emulator._endpoints import Endpoints, credentials
from actions.travis.emulator._gatekeeper import Gatekeeper
from actions.travis.emulator._model import (
    CREATE,
    READ,
    UNKNOWN_SHA,
    Repo,
    RequestRecord,
    Schedule,
    TravisError,
    User,
    wrong_params,
)
from actions.travis.emulator._render import (
    PROCESSED_MESSAGES,
    build_record,
    repo_record,
    request_record,
)
from actions.travis.emulator._wire import Route, asks_for_v3, split_path
from engine.clock import Clock, SystemClock
from engine.devtools.emulator import Faults, Request, Response, real_sleep

WRONG_TOKEN_SHAPES = ("json", "text")
"""How a token Travis does not know is refused: v3's JSON wrong_credentials, or ScopeCheck's
plain-text "access denied" (see the module docstring)."""


class TravisEmulator(Endpoints):
    """The Travis API v3 as an App: call it with a Request, or serve it with EmulatorServer."""

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        request_limit: int = 10,
        build_delay: float = 2.0,
        seed: int = 0,
        cancel_delay: float = 1.0,
        processed_message: str = "status",
        wrong_token: str = "json",
    ) -> None:
        _check_limit(request_limit)
        _check_delay(build_delay)
        self.clock: Clock = clock or SystemClock()
        self.request_limit = request_limit
        """API requests per repository per hour unless the repository says otherwise."""
        self.build_delay = build_delay
        """Seconds from an accepted request to its processing (its commit, branch and build),
        unless the repository says otherwise."""
        self.faults = Faults(seed)
        self.retry_after: float | None = None
        """Add Retry-After to injected plain-text 429s; Travis never does, some proxies might."""
        self.errors_after_create = False
        """Let an injected 500 on POST /requests strike after the request was created.

        That is the failure that makes re-submitting dangerous (PROTOCOL B9): the client sees an
        error, yet a build is on its way.
        """
        self.attack = Attack()
        self._seed = seed
        self._defaults = (request_limit, build_delay)
        self._behaviour_defaults: dict[str, Any] = {
            "cancel_delay": cancel_delay, "processed_message": processed_message,
            "wrong_token": wrong_token}
        self.cancel_delay = 1.0
        self.processed_message = "status"
        self.wrong_token = "json"
        self.configure(**self._behaviour_defaults)
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
        self._gatekeeper = Gatekeeper()
        self._builds = self._gatekeeper.builds
        self._calls: Counter[str] = Counter()
        self._repo_ids = itertools.count(1001)
        self._user_ids = itertools.count(1)
        self._request_ids = itertools.count(200_001)

    # ----------------------------------------------------------------- admin Python API

    def configure(
        self,
        *,
        cancel_delay: float | None = None,
        processed_message: str | None = None,
        wrong_token: str | None = None,
        ban_posts: int | None = None,
        ban_window: float | None = None,
        ban_time: float | None = None,
        throttle_limit: int | None = None,
    ) -> dict[str, Any]:
        """Change how the emulator behaves where Travis's behaviour is a choice; None leaves a
        setting as it is. Everything is checked before anything changes. Returns behaviour()."""
        if cancel_delay is not None:
            _check_delay(cancel_delay, "a cancel delay")
        if processed_message is not None and processed_message not in PROCESSED_MESSAGES:
            raise ValueError(f"processed_message must be one of {list(PROCESSED_MESSAGES)}, "
                             f"not {processed_message!r}")
        if wrong_token is not None and wrong_token not in WRONG_TOKEN_SHAPES:
            raise ValueError(f"wrong_token must be one of {list(WRONG_TOKEN_SHAPES)}, "
                             f"not {wrong_token!r}")
        self.attack.configure(ban_posts=ban_posts, ban_window=ban_window, ban_time=ban_time,
                              throttle_limit=throttle_limit)
        if cancel_delay is not None:
            self.cancel_delay = float(cancel_delay)
        if processed_message is not None:
            self.processed_message = processed_message
        if wrong_token is not None:
            self.wrong_token = wrong_token
        return self.behaviour()

    def behaviour(self) -> dict[str, Any]:
        return {"cancel_delay": self.cancel_delay, "processed_message": self.processed_message,
                "wrong_token": self.wrong_token, **self.attack.settings()}

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
        unknown_sha: str = "accept",
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
        _check_unknown_sha(unknown_sha)
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
                unknown_sha=unknown_sha,
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
        unknown_sha: str | None = None,
    ) -> dict[str, Any]:
        """Change a repository mid-test, e.g. deactivate it to see a client handle 406."""
        if request_limit is not None:
            _check_limit(request_limit)
        if build_delay is not None:
            _check_delay(build_delay)
        if unknown_sha is not None:
            _check_unknown_sha(unknown_sha)
        with self._lock:
            repo = self._repo(slug)
            if active is not None:
                repo.active = bool(active)
            if request_limit is not None:
                repo.request_limit = request_limit
            if build_delay is not None:
                repo.build_delay = build_delay
            if unknown_sha is not None:
                repo.unknown_sha = unknown_sha
            return repo_record(repo, self._limit(repo), self._delay(repo))

    def push(self, slug: str, branch: str, *, sha: str | None = None,
             message: str | None = None) -> str:
        """A new commit on a branch, which moves its head there (a developer's git push).

        Requests processed from now on build it when they name the branch and no sha. Returns
        the commit's sha (made up when not given; 40 hex digits when given).
        """
        if not isinstance(branch, str) or not branch:
            raise ValueError("branch must be a non-empty name")
        with self._lock:
            self._process_due(self.clock.now())
            return self._repo(slug).push(branch, sha, message).sha

    def head(self, slug: str, branch: str) -> str:
        """The sha a request naming no sha would build if processed now."""
        with self._lock:
            return self._repo(slug).head(branch).sha

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
        """Every request accepted so far, oldest first, with the message, branch and sha as
        sent and the commit it built (`commit_sha`).

        This is how a test counts what a client triggered: match its marker in `message`.
        """
        with self._lock:
            self._process_due(self.clock.now())
            repo = None if slug is None else self._repo(slug)
            return [
                request_record(r) for r in self._requests.values() if repo is None or r.repo is repo
            ]

    def builds(self, slug: str | None = None) -> list[dict[str, Any]]:
        """Every build created so far, oldest first, with its sha and its state as of now."""
        with self._lock:
            now = self.clock.now()
            self._process_due(now)
            repo = None if slug is None else self._repo(slug)
            return [
                build_record(b, now)
                for b in self._builds.values()
                if repo is None or b.repo is repo
            ]

    def bans(self) -> list[dict[str, Any]]:
        """Clients banned now (tokens shown as a digest), and until when."""
        with self._lock:
            return self.attack.bans(self.clock.now())

    def is_banned(self, token: str | None = None) -> bool:
        """Whether the token (None: the address of tokenless callers) is banned now."""
        with self._lock:
            return self.attack.is_banned(_client(token), self.clock.now())

    def call_counts(self) -> dict[str, int]:
        """API calls received per endpoint, e.g. {"POST /repo/{slug}/requests": 3}.

        Faulted and banned calls count too: they reached the server, and a client's retries are
        exactly what a test wants to see here. Admin calls do not count.
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
            self.attack = Attack()
            self.configure(**self._behaviour_defaults)

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
        """Let the gatekeeper handle every request whose delay has passed, in due order.

        Doing this on every call, in due order, gives builds the numbers (and the branch heads)
        they would have had if a background worker had processed them on time.
        """
        due = sorted((r for r in self._pending if r.due_at <= now), key=lambda r: (r.due_at, r.id))
        if not due:
            return
        self._pending = [r for r in self._pending if r.due_at > now]
        for record in due:
            self._gatekeeper.process(record)

    # ---------------------------------------------------------------------- the HTTP edge

    def incomplete_body(self, request: Request) -> Response:
        """The answer to a body shorter than its Content-Length (the HTTP server asks for it
        instead of calling the emulator): a front end's 400, never a request read as `{}`."""
        return Response.text(400, f"Bad Request: the body ended after {len(request.body)} bytes "
                                  "of the length its Content-Length announced\n")

    def __call__(self, request: Request) -> Response:
        declared = request.header("content-length").strip()
        if declared.isdigit() and int(declared) > len(request.body):
            return self.incomplete_body(request)  # called directly, not through the server
        if request.path == ADMIN_PREFIX or request.path.startswith(ADMIN_PREFIX + "/"):
            return handle_admin(self, request)
        outage = self.faults.in_outage()
        if outage == "unavailable":
            return _unavailable()
        if outage is not None:
            return Response.dropped()
        segments, versioned = split_path(request.path)
        route, args = self._match(request.method, segments)
        scheme, token = credentials(request)
        with self._lock:
            self._calls[route.key if route else f"{request.method} (unknown route)"] += 1
            known = token if scheme == "token" and token in self._users else None
            if self.wrong_token == "text" and scheme == "token" and token and known is None:
                # ScopeCheck refuses a token it cannot find before anything else sees the call.
                return Response(403, b"access denied",
                                {"Content-Type": "text/html;charset=utf-8"})
            refused = self.attack.check(_client(known), request.method, request.path,
                                        self.clock.now())
        if refused is not None:
            return refused
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

def _client(token: str | None) -> str:
    """rack-attack's identifier: the token when the call carries a valid one, else the IP (all
    the emulator's callers share one loopback address)."""
    return f"token:{token}" if token else "ip:127.0.0.1"


def _check_limit(limit: int) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise ValueError(f"a request limit must be a whole number >= 0, not {limit!r}")


def _check_token(token: str) -> None:
    if not isinstance(token, str) or not token or token.split() != [token]:
        raise ValueError("a token must be a non-empty string without whitespace")


def _check_delay(delay: float, what: str = "a build delay") -> None:
    if isinstance(delay, bool) or not isinstance(delay, (int, float)) or delay < 0:
        raise ValueError(f"{what} must be a number of seconds >= 0, not {delay!r}")


def _check_unknown_sha(value: str) -> None:
    if value not in UNKNOWN_SHA:
        raise ValueError(f"unknown_sha must be one of {list(UNKNOWN_SHA)}, not {value!r}")


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
