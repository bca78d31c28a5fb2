"""The records behind the Travis emulator and the JSON Travis API v3 renders for them.

Kept apart from routing and admin plumbing so each shape can be checked against PROTOCOL B3-B7
(and travis-api's renderers) on its own. Build state is never stored: it is computed from the
clock and the build's schedule, so a test that advances a FakeClock sees the build move without
any background thread.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlencode

from engine.emulator._http import Response

TERMINAL_STATES = frozenset({"passed", "failed", "errored", "canceled"})
"""States a build never leaves (restarts are not emulated)."""

MERGE_MODES = ("deep_merge_append", "deep_merge_prepend", "deep_merge", "merge", "replace")
"""The merge modes Travis accepts for an API request's config (PROTOCOL B3)."""

RATE_WINDOW = 3600
"""Travis counts API-triggered requests over the last hour (PROTOCOL B8)."""

CREATE = "create_request"
READ = "read"
"""Token permissions: a token either may trigger builds (and cancel them) or only read."""

DEFAULT_LIMIT = 25
MAX_LIMIT = 100
"""Travis's paginator: 25 entries unless asked, never more than 100 for a normal user."""

GITHUB_ID_OFFSET = 7_000_000
"""Travis puts the GitHub id, not its own, in a 202's request.repository; keeping them apart
lets a client test catch code that confuses the two."""


class TravisError(Exception):
    """A Travis API v3 error, raised anywhere in a handler and rendered once at the edge."""

    def __init__(self, status: int, error_type: str, message: str, **payload: Any) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message
        self.payload = payload

    def response(self) -> Response:
        body = {
            "@type": "error",
            "error_type": self.error_type,
            "error_message": self.message,
            **self.payload,
        }
        return Response.json(self.status, body)


def wrong_params(message: str) -> TravisError:
    return TravisError(400, "wrong_params", message)


def not_found(resource: str) -> TravisError:
    return TravisError(
        404,
        "not_found",
        f"{resource} not found (or insufficient access)",
        resource_type=resource,
    )


@dataclass(frozen=True)
class Schedule:
    """How a build triggered on a repository (or one branch of it) behaves.

    Times are seconds after the build's creation. Before `start_after` the build shows
    `intermediate` (default "created"), so a client can be shown a state it does not know.
    """

    start_after: float = 1.0
    finish_after: float = 5.0
    result: str = "passed"
    reject: str | None = None
    intermediate: str | None = None

    def __post_init__(self) -> None:
        for name in ("start_after", "finish_after"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{name} must be a number of seconds >= 0, not {value!r}")
        if self.finish_after < self.start_after:
            raise ValueError(
                f"finish_after ({self.finish_after}) must not come before "
                f"start_after ({self.start_after})"
            )
        if self.result not in TERMINAL_STATES:
            raise ValueError(
                f"result must be one of {sorted(TERMINAL_STATES)}, not {self.result!r}"
            )
        if self.reject is not None and (not isinstance(self.reject, str) or not self.reject):
            raise ValueError("reject must be a non-empty message, or None to accept requests")
        if self.intermediate is not None and (
            not isinstance(self.intermediate, str)
            or not self.intermediate
            or self.intermediate in TERMINAL_STATES
            or self.intermediate == "started"
        ):
            raise ValueError(
                "intermediate must name a state other than started or a terminal state, "
                f"not {self.intermediate!r}"
            )

    def as_dict(self) -> dict[str, Any]:
        return {
            "start_after": self.start_after,
            "finish_after": self.finish_after,
            "result": self.result,
            "reject": self.reject,
            "intermediate": self.intermediate,
        }


@dataclass
class User:
    id: int
    login: str


@dataclass
class Repo:
    id: int
    slug: str
    default_branch: str
    active: bool
    request_limit: int | None
    build_delay: float | None
    tokens: dict[str, str] = field(default_factory=dict)
    """token -> CREATE or READ. Only these tokens can see the repository at all."""
    schedules: dict[str | None, Schedule] = field(default_factory=dict)
    """branch -> schedule; the None key is the repository-wide one."""
    build_count: int = 0

    @property
    def owner_name(self) -> str:
        return self.slug.split("/", 1)[0]

    @property
    def name(self) -> str:
        return self.slug.split("/", 1)[1]

    def schedule_for(self, branch: str) -> Schedule:
        return self.schedules.get(branch) or self.schedules.get(None) or Schedule()


@dataclass
class Commit:
    id: int
    sha: str
    ref: str
    message: str
    committed_at: float


@dataclass
class RequestRecord:
    """One POST /requests. Its outcome is decided at creation and revealed at `due_at`."""

    id: int
    repo: Repo
    user: User
    branch: str
    message: str | None
    sha: str | None
    tag_name: str | None
    config: Any
    configs: Any
    merge_mode: str | None
    created_at: float
    due_at: float
    schedule: Schedule
    processed: bool = False
    commit: Commit | None = None
    build: BuildRecord | None = None
    messages: list[dict[str, Any]] = field(default_factory=list)

    @property
    def state(self) -> str:
        return "finished" if self.processed else "pending"

    @property
    def result(self) -> str | None:
        if not self.processed:
            return None
        return "approved" if self.build is not None else "rejected"


@dataclass
class BuildRecord:
    id: int
    number: int
    job_id: int
    request: RequestRecord
    commit: Commit
    created_at: float
    previous_state: str | None
    canceled_at: float | None = None

    @property
    def repo(self) -> Repo:
        return self.request.repo

    @property
    def schedule(self) -> Schedule:
        return self.request.schedule

    def _start_time(self) -> float:
        return self.created_at + self.schedule.start_after

    def _finish_time(self) -> float:
        return self.created_at + self.schedule.finish_after

    def state_at(self, now: float) -> str:
        if self.canceled_at is not None and now >= self.canceled_at:
            return "canceled"
        if now < self._start_time():
            return self.schedule.intermediate or "created"
        if now < self._finish_time():
            return "started"
        return self.schedule.result

    def started_at(self, now: float) -> float | None:
        start = self._start_time()
        if now < start or (self.canceled_at is not None and self.canceled_at < start):
            return None
        return start

    def finished_at(self, now: float) -> float | None:
        if self.canceled_at is not None and now >= self.canceled_at:
            return self.canceled_at
        finish = self._finish_time()
        return finish if now >= finish else None

    def duration(self, now: float) -> int | None:
        started, finished = self.started_at(now), self.finished_at(now)
        if started is None or finished is None:
            return None
        return round(finished - started)


def fake_sha(*parts: object) -> str:
    """A stable 40-hex commit id, so a rerun of a test sees the same shas."""
    return hashlib.sha1(":".join(map(str, parts)).encode("utf-8")).hexdigest()


def iso(moment: float | None) -> str | None:
    """Travis's JSON time format: UTC, whole seconds, a Z suffix."""
    if moment is None:
        return None
    return datetime.fromtimestamp(moment, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_ms(moment: float) -> str:
    """The millisecond variant Travis uses for updated_at."""
    stamp = datetime.fromtimestamp(moment, tz=timezone.utc)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


# Rendering. Each function returns exactly what Travis puts on the wire for that representation.


def render_repo_minimal(repo: Repo) -> dict[str, Any]:
    return {
        "@type": "repository",
        "@href": f"/repo/{repo.id}",
        "@representation": "minimal",
        "id": repo.id,
        "name": repo.name,
        "slug": repo.slug,
    }


def render_repo_standard(repo: Repo) -> dict[str, Any]:
    return {
        **render_repo_minimal(repo),
        "@representation": "standard",
        "description": None,
        "github_id": repo.id + GITHUB_ID_OFFSET,
        "vcs_id": str(repo.id + GITHUB_ID_OFFSET),
        "vcs_type": "GithubRepository",
        "owner_name": repo.owner_name,
        "vcs_name": repo.name,
        "active": repo.active,
        "private": True,
        "owner": {"@type": "user", "login": repo.owner_name},
        "default_branch": render_branch(repo, repo.default_branch),
        "starred": False,
        "managed_by_installation": False,
        "migration_status": None,
    }


def render_user(user: User, representation: str = "minimal") -> dict[str, Any]:
    return {
        "@type": "user",
        "@href": f"/user/{user.id}",
        "@representation": representation,
        "id": user.id,
        "login": user.login,
    }


def render_branch(repo: Repo, name: str) -> dict[str, Any]:
    return {
        "@type": "branch",
        "@href": f"/repo/{repo.id}/branch/{name}",
        "@representation": "minimal",
        "name": name,
    }


def render_commit(commit: Commit | None) -> dict[str, Any] | None:
    if commit is None:
        return None
    return {
        "@type": "commit",
        "@representation": "minimal",
        "id": commit.id,
        "sha": commit.sha,
        "ref": commit.ref,
        "message": commit.message,
        "compare_url": None,
        "committed_at": iso(commit.committed_at),
    }


def render_pending_request(record: RequestRecord) -> dict[str, Any]:
    """The `request` member of a 202: the payload queued for the gatekeeper, None values dropped."""
    repo = record.repo
    payload: dict[str, Any] = {
        "repository": {
            "id": repo.id + GITHUB_ID_OFFSET,
            "vcs_type": "GithubRepository",
            "owner_name": repo.owner_name,
            "name": repo.name,
        },
        "user": {"id": record.user.id},
        "id": record.id,
        "message": record.message,
        "branch": record.branch,
        "sha": record.sha,
        "tag_name": record.tag_name,
        "merge_mode": record.merge_mode,
        "config": record.config,
        "configs": record.configs,
    }
    return {key: value for key, value in payload.items() if value is not None}


def render_request_minimal(record: RequestRecord) -> dict[str, Any]:
    # `message` is Travis's own status text for the request, not the override a client sent:
    # the override surfaces only as commit.message (PROTOCOL B4, B9).
    return {
        "@type": "request",
        "@href": f"/repo/{record.repo.id}/request/{record.id}",
        "@representation": "minimal",
        "id": record.id,
        "state": record.state,
        "result": record.result,
        "message": None,
    }


def render_request(
    record: RequestRecord, now: float, include: frozenset[str] = frozenset()
) -> dict[str, Any]:
    body: dict[str, Any] = {
        **render_request_minimal(record),
        "@representation": "standard",
        "repository": render_repo_minimal(record.repo),
        "branch_name": record.branch,
        "commit": render_commit(record.commit),
        "builds": [] if record.build is None else [render_build_minimal(record.build, now)],
        "owner": render_user(record.user),
        "created_at": iso(record.created_at),
        "event_type": "api",
        "base_commit": None,
        "head_commit": None,
    }
    if "request.messages" in include:
        body["messages"] = list(record.messages)
    return body


def render_build_minimal(build: BuildRecord, now: float) -> dict[str, Any]:
    return {
        "@type": "build",
        "@href": f"/build/{build.id}",
        "@representation": "minimal",
        "id": build.id,
        "number": str(build.number),
        "state": build.state_at(now),
        "duration": build.duration(now),
        "event_type": "api",
        "previous_state": build.previous_state,
        "pull_request_title": None,
        "pull_request_number": None,
        "started_at": iso(build.started_at(now)),
        "finished_at": iso(build.finished_at(now)),
    }


def render_build(build: BuildRecord, now: float) -> dict[str, Any]:
    repo = build.repo
    moments = (build.created_at, build.started_at(now), build.finished_at(now))
    updated = max(t for t in moments if t is not None)
    return {
        **render_build_minimal(build, now),
        "@representation": "standard",
        "repository": render_repo_minimal(repo),
        "branch": render_branch(repo, build.request.branch),
        "tag": None,
        "commit": render_commit(build.commit),
        "jobs": [
            {
                "@type": "job",
                "@href": f"/job/{build.job_id}",
                "@representation": "minimal",
                "id": build.job_id,
            }
        ],
        "stages": [],
        "created_by": render_user(build.request.user),
        "updated_at": iso_ms(updated),
        "request": render_request_minimal(build.request),
    }


def paginate(
    items: Sequence[Any], query: Mapping[str, list[str]], path: str
) -> tuple[list[Any], dict[str, Any], str]:
    """Slice a collection the way Travis's paginator does and describe the slice.

    Returns the page, the "@pagination" member and the collection's own "@href".
    """

    def number(name: str) -> int | None:
        values = query.get(name)
        if not values or values[0] == "":
            return None
        try:
            return int(values[0])
        except ValueError:
            raise wrong_params(f"{name} must be an integer") from None

    limit = number("limit")
    if limit is None or limit < 0:
        limit = DEFAULT_LIMIT
    if limit < 1 or limit > MAX_LIMIT:
        limit = MAX_LIMIT
    offset = max(number("offset") or 0, 0)
    count = len(items)
    others = [(k, v) for k, values in query.items() if k not in ("limit", "offset") for v in values]

    def href(at: int, size: int) -> str:
        return f"{path}?{urlencode([*others, ('limit', size), ('offset', at)])}"

    def info(at: int, size: int = limit) -> dict[str, Any]:
        return {"@href": href(at, size), "offset": at, "limit": size}

    is_last = count <= offset + limit
    last_offset = count // limit * limit
    if last_offset == count and last_offset > 0:
        last_offset -= limit
    previous = None
    if offset > 0:
        previous = info(0, offset) if offset <= limit else info(offset - limit)
    pagination = {
        "limit": limit,
        "offset": offset,
        "count": count,
        "is_first": offset == 0,
        "is_last": is_last,
        "next": None if is_last else info(offset + limit),
        "prev": previous,
        "first": info(0),
        "last": info(last_offset),
    }
    self_href = href(offset, limit) if query else path
    return list(items[offset : offset + limit]), pagination, self_href


# Admin records: plain data for tests and the admin HTTP interface, times as epoch floats.


def repo_record(repo: Repo, request_limit: int, build_delay: float) -> dict[str, Any]:
    """A repository as the admin API shows it; tokens are counted, never shown."""
    return {
        "id": repo.id,
        "slug": repo.slug,
        "owner_name": repo.owner_name,
        "name": repo.name,
        "default_branch": repo.default_branch,
        "active": repo.active,
        "request_limit": request_limit,
        "build_delay": build_delay,
        "tokens": len(repo.tokens),
        "schedules": {
            "*" if branch is None else branch: schedule.as_dict()
            for branch, schedule in repo.schedules.items()
        },
    }


def request_record(record: RequestRecord) -> dict[str, Any]:
    """A request with the message and branch exactly as the client sent them."""
    return {
        "id": record.id,
        "repository": record.repo.slug,
        "repository_id": record.repo.id,
        "branch": record.branch,
        "message": record.message,
        "sha": record.sha,
        "tag_name": record.tag_name,
        "merge_mode": record.merge_mode,
        "config": record.config,
        "event_type": "api",
        "state": record.state,
        "result": record.result,
        "created_at": record.created_at,
        "build_id": None if record.build is None else record.build.id,
        "messages": list(record.messages),
    }


def build_record(build: BuildRecord, now: float) -> dict[str, Any]:
    return {
        "id": build.id,
        "number": build.number,
        "repository": build.repo.slug,
        "repository_id": build.repo.id,
        "branch": build.request.branch,
        "request_id": build.request.id,
        "message": build.commit.message,
        "state": build.state_at(now),
        "created_at": build.created_at,
        "started_at": build.started_at(now),
        "finished_at": build.finished_at(now),
        "canceled": build.canceled_at is not None,
    }
