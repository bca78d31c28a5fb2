"""The Travis API v3 endpoints of the emulator: who may call, and what each route answers.

A mixin of actions.travis.emulator.TravisEmulator, which holds the state these read and change
(under its lock, taken by the HTTP edge before a handler runs). The module docstring of
actions.travis.emulator.emulator lists what each answer is modelled on.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import TYPE_CHECKING

from actions.travis.emulator._model import (
    CREATE,
    RATE_WINDOW,
    TERMINAL_STATES,
    BuildRecord,
    Repo,
    RequestRecord,
    TravisError,
    User,
    not_found,
    parse_time,
)
from actions.travis.emulator._render import (
    paginate,
    render_build,
    render_build_minimal,
    render_pending_request,
    render_repo_minimal,
    render_repo_standard,
    render_request,
    render_user,
)
from actions.travis.emulator._wire import query_filter, query_include, request_fields, sort_builds
from engine.devtools.emulator import Request, Response


class Endpoints:
    """Route handlers: (request, path arguments, now) -> response; TravisError for refusals."""

    _users: dict[str, User]
    _repos: dict[str, Repo]
    _repos_by_id: dict[int, Repo]
    _requests: dict[int, RequestRecord]
    _pending: list[RequestRecord]
    _builds: dict[int, BuildRecord]
    _request_ids: itertools.count[int]
    cancel_delay: float
    processed_message: str

    if TYPE_CHECKING:  # the emulator's own: its settings, and the gatekeeper's clock
        def _limit(self, repo: Repo) -> int: ...

        def _delay(self, repo: Repo) -> float: ...

        def _process_due(self, now: float) -> None: ...

    def _authenticate(self, request: Request) -> str:
        """v3's access control: no header is anonymous (and these routes need a login); any
        header that names no known token is wrong credentials (v3/access_control.rb)."""
        scheme, token = credentials(request)
        if not scheme:
            raise TravisError(403, "login_required", "login required")
        if scheme != "token" or token not in self._users:
            raise TravisError(403, "wrong_credentials", "access denied")
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
        since, until = request.param("from"), request.param("to")
        earliest = None if since is None else parse_time(since, "from")
        latest = None if until is None else parse_time(until, "to")
        found = [
            r
            for r in sorted(self._requests.values(), key=lambda r: r.id, reverse=True)
            if r.repo is repo
            and (states is None or r.state in states)
            and (results is None or (r.result or "") in results)
            and (branches is None or (r.on_branch and r.branch in branches))
            and (earliest is None or r.created_at >= earliest)
            and (latest is None or r.created_at <= latest)
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
                "requests": [render_request(r, now, include, self.processed_message)
                             for r in page],
            },
        )

    def _find_request(self, request: Request, args: Mapping[str, str], now: float) -> Response:
        token = self._authenticate(request)
        repo = self._visible_repo(args["slug"], token)
        record = self._requests.get(int(args["id"]))
        if record is None or record.repo is not repo:
            raise not_found("request")
        return Response.json(200, render_request(record, now, query_include(request),
                                                 self.processed_message))

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
        include = query_include(request)
        return Response.json(
            200,
            {
                "@type": "builds",
                "@href": href,
                "@representation": "standard",
                "@pagination": pagination,
                "builds": [render_build(b, now, include, self.processed_message) for b in page],
            },
        )

    def _find_repo(self, request: Request, args: Mapping[str, str], now: float) -> Response:
        token = self._authenticate(request)
        return Response.json(200, render_repo_standard(self._visible_repo(args["slug"], token)))

    def _find_build(self, request: Request, args: Mapping[str, str], now: float) -> Response:
        token = self._authenticate(request)
        build = self._visible_build(args["id"], token)
        return Response.json(200, render_build(build, now, query_include(request),
                                               self.processed_message))

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
        # Queued (queries/build.rb#cancel): the 202 renders the build as it is, and a build
        # that finishes before the cancel is handled keeps its own result.
        rendered = render_build_minimal(build, now)
        if build.cancel_at is None:
            build.cancel_at = now + self.cancel_delay
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


def credentials(request: Request) -> tuple[str, str]:
    """The Authorization header's scheme (lower case, "" when absent) and value."""
    scheme, _, value = request.header("authorization").strip().partition(" ")
    return scheme.lower(), value.strip().strip('"')
