"""The records behind the Travis emulator: repositories with their branches, requests, builds.

Kept apart from routing (emulator.py) and from the JSON shapes (_render.py) so each can be
checked on its own. Build state is never stored: it is computed from the clock and the build's
schedule, so a test that advances a FakeClock sees the build move without any background thread.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from engine.devtools.emulator import Response

TERMINAL_STATES = frozenset({"passed", "failed", "errored", "canceled"})
"""States a build never leaves (restarts are not emulated)."""

MERGE_MODES = ("deep_merge_append", "deep_merge_prepend", "deep_merge", "merge", "replace")
"""The merge modes Travis accepts for an API request's config (PROTOCOL B3)."""

RATE_WINDOW = 3600
"""Travis counts API-triggered requests over the last hour (PROTOCOL B8)."""

CREATE = "create_request"
READ = "read"
"""Token permissions: a token either may trigger builds (and cancel them) or only read."""

UNKNOWN_SHA = ("accept", "reject", "errored")
"""What a repository does with a requested sha it does not hold (a setting: travis-api only
forwards `request.sha` to its gatekeeper, `queries/request.rb#schedule`, and the gatekeeper's
source is not public):

- "accept": build it as given. The default, because the emulator holds only the commits a test
  pushed (and each branch's head): every other sha stands for a commit GitHub has.
- "reject": the request is processed as rejected, with no commit and no build, and says why.
- "errored": a build is made and errors, as a checkout of a missing commit would.
"""

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


@dataclass(frozen=True)
class GitCommit:
    """A commit the repository holds (what GitHub would answer for its sha)."""

    sha: str
    message: str
    branch: str


@dataclass
class Repo:
    id: int
    slug: str
    default_branch: str
    active: bool
    request_limit: int | None
    build_delay: float | None
    unknown_sha: str = "accept"
    tokens: dict[str, str] = field(default_factory=dict)
    """token -> CREATE or READ. Only these tokens can see the repository at all."""
    schedules: dict[str | None, Schedule] = field(default_factory=dict)
    """branch -> schedule; the None key is the repository-wide one."""
    build_count: int = 0
    heads: dict[str, str] = field(default_factory=dict)
    """branch -> the sha of its head commit (made up on first use, moved by push())."""
    commits: dict[str, GitCommit] = field(default_factory=dict)
    """Every commit pushed or made up as a head, by full sha."""

    @property
    def owner_name(self) -> str:
        return self.slug.split("/", 1)[0]

    @property
    def name(self) -> str:
        return self.slug.split("/", 1)[1]

    def schedule_for(self, branch: str) -> Schedule:
        return self.schedules.get(branch) or self.schedules.get(None) or Schedule()

    def head(self, branch: str) -> GitCommit:
        """The branch's head commit; a branch nobody pushed to has a stable made-up one."""
        sha = self.heads.get(branch)
        if sha is None:
            sha = fake_sha(self.slug, branch, "head")
            self.commits[sha] = GitCommit(sha, f"Emulated head commit of {branch}", branch)
            self.heads[branch] = sha
        return self.commits[sha]

    def push(self, branch: str, sha: str | None, message: str | None) -> GitCommit:
        """A new commit on `branch`, which becomes its head."""
        if sha is None:
            sha = fake_sha(self.slug, branch, len(self.commits))
        sha = sha.lower()
        if not re.fullmatch(r"[0-9a-f]{40}", sha):
            raise ValueError(f"a pushed sha is 40 hex digits, not {sha!r}")
        commit = GitCommit(sha, message or f"Commit {sha[:7]} on {branch}", branch)
        self.commits[sha] = commit
        self.heads[branch] = sha
        return commit

    def find_commit(self, sha: str) -> GitCommit | None:
        """A held commit by full or abbreviated sha (None when unknown or ambiguous)."""
        sha = sha.lower()
        if sha in self.commits:
            return self.commits[sha]
        matches = [c for full, c in self.commits.items() if full.startswith(sha)]
        return matches[0] if len(matches) == 1 else None


@dataclass
class Commit:
    """The commit row Travis makes for a processed request (what `commit` renders)."""

    id: int
    sha: str
    ref: str | None
    message: str
    committed_at: float


@dataclass
class RequestRecord:
    """One POST /requests. Its outcome is decided at processing time (`due_at`)."""

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
    status_message: str | None = None
    """Travis's own words about the request once processed (a rejection's reason)."""
    messages: list[dict[str, Any]] = field(default_factory=list)

    @property
    def state(self) -> str:
        return "finished" if self.processed else "pending"

    @property
    def result(self) -> str | None:
        if not self.processed:
            return None
        return "approved" if self.build is not None else "rejected"

    @property
    def on_branch(self) -> bool:
        """Whether Travis knows its branch: only once processed with a commit. An API request is
        stored without branch or commit (queries/request.rb#create_request), its branch_name is
        its commit's (models/request.rb#branch_name), and ?branch= filters on branch_id
        (queries/requests.rb): a pending request is in no branch's list."""
        return self.commit is not None


@dataclass
class BuildRecord:
    id: int
    number: int
    job_id: int
    request: RequestRecord
    commit: Commit
    created_at: float
    previous_state: str | None
    schedule: Schedule
    cancel_at: float | None = None
    """When a queued cancel takes effect (POST /build/{id}/cancel plus the cancel delay)."""

    @property
    def repo(self) -> Repo:
        return self.request.repo

    def _start_time(self) -> float:
        return self.created_at + self.schedule.start_after

    def _finish_time(self) -> float:
        return self.created_at + self.schedule.finish_after

    def _canceled_by(self, now: float) -> bool:
        """A cancel that took effect before the build finished on its own."""
        return (self.cancel_at is not None and now >= self.cancel_at
                and self.cancel_at < self._finish_time())

    def state_at(self, now: float) -> str:
        if self._canceled_by(now):
            return "canceled"
        if now < self._start_time():
            return self.schedule.intermediate or "created"
        if now < self._finish_time():
            return "started"
        return self.schedule.result

    def started_at(self, now: float) -> float | None:
        start = self._start_time()
        if now < start or (self._canceled_by(now) and self.cancel_at is not None
                           and self.cancel_at < start):
            return None
        return start

    def finished_at(self, now: float) -> float | None:
        if self._canceled_by(now):
            return self.cancel_at
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


def parse_time(value: str, name: str) -> float:
    """A `from`/`to` filter value: an ISO 8601 time (UTC unless it says otherwise)."""
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise wrong_params(f"{name} must be a time like 2024-05-01T12:00:00Z") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()
