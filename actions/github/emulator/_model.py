"""The records behind the GitHub Actions emulator: repositories, workflows, runs, and errors.

Kept apart from routing (emulator.py, _endpoints.py) and from the JSON shapes (_render.py).
A run's status is never stored: it is computed from the clock and the run's schedule, so a test
that advances a FakeClock sees the run move without any background thread.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from engine.devtools.emulator import Response

DOCS = "https://docs.github.com/rest"
"""Where GitHub's error bodies point when no endpoint page is more precise."""

DISPATCH_DOCS = f"{DOCS}/actions/workflows#create-a-workflow-dispatch-event"
LIST_RUNS_DOCS = f"{DOCS}/actions/workflow-runs#list-workflow-runs-for-a-workflow"
GET_RUN_DOCS = f"{DOCS}/actions/workflow-runs#get-a-workflow-run"
CANCEL_DOCS = f"{DOCS}/actions/workflow-runs#cancel-a-workflow-run"
FORCE_CANCEL_DOCS = f"{DOCS}/actions/workflow-runs#force-cancel-a-workflow-run"

CONCLUSIONS = frozenset({"success", "failure", "cancelled", "timed_out", "action_required",
                         "neutral", "skipped", "stale", "startup_failure"})
"""A completed run's conclusions (PROTOCOL D; docs: get-a-workflow-run, `conclusion`)."""

STATUSES = frozenset({"queued", "in_progress", "completed", "waiting", "requested", "pending"})
"""A run's statuses (PROTOCOL D). The emulator's runs use queued, in_progress and completed."""


class GitHubError(Exception):
    """A GitHub REST error, raised anywhere in a handler and rendered once at the edge.

    The body is GitHub's: {"message", "documentation_url", "status"} (the status as a string,
    as api.github.com has sent it since 2024, e.g. `"status": "401"` on Bad credentials).
    """

    def __init__(self, status: int, message: str, documentation_url: str = DOCS,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.documentation_url = documentation_url
        self.headers = headers or {}

    def response(self) -> Response:
        body = {"message": self.message, "documentation_url": self.documentation_url,
                "status": str(self.status)}
        return Response.json(self.status, body, "application/json; charset=utf-8", self.headers)


def not_found(documentation_url: str = DOCS) -> GitHubError:
    """GitHub answers 404, not 403, for what a token may not see, "to avoid confirming the
    existence of private repositories" (docs: troubleshooting-the-rest-api, 404 Not Found)."""
    return GitHubError(404, "Not Found", documentation_url)


def invalid(message: str, status: int = 422, documentation_url: str = DISPATCH_DOCS) -> GitHubError:
    return GitHubError(status, message, documentation_url)


@dataclass(frozen=True)
class Schedule:
    """How a run dispatched on a repository (or one workflow of it) behaves.

    Times are seconds after the run was created: queued until `start_after`, in_progress until
    `finish_after`, then completed with `conclusion`. `ignore_cancel` makes the run ignore a
    normal cancel (it keeps running), which only force-cancel ends.
    """

    start_after: float = 1.0
    finish_after: float = 5.0
    conclusion: str = "success"
    ignore_cancel: bool = False

    def __post_init__(self) -> None:
        for name in ("start_after", "finish_after"):
            check_seconds(getattr(self, name), name)
        if self.finish_after < self.start_after:
            raise ValueError(f"finish_after ({self.finish_after}) must not come before "
                             f"start_after ({self.start_after})")
        if self.conclusion not in CONCLUSIONS:
            raise ValueError(f"conclusion must be one of {sorted(CONCLUSIONS)}, "
                             f"not {self.conclusion!r}")

    def as_dict(self) -> dict[str, Any]:
        return {"start_after": self.start_after, "finish_after": self.finish_after,
                "conclusion": self.conclusion, "ignore_cancel": self.ignore_cancel}


@dataclass(frozen=True)
class InputSpec:
    """One declared `on.workflow_dispatch.inputs` entry."""

    name: str
    required: bool = False
    default: str | None = None


@dataclass
class Workflow:
    id: int
    file: str
    """The file name under .github/workflows/, which the API also takes as the workflow_id."""
    name: str
    run_name: str | None
    inputs: tuple[InputSpec, ...]
    dispatch: bool
    """Whether the workflow has an `on: workflow_dispatch` trigger."""
    run_count: int = 0

    @property
    def path(self) -> str:
        return f".github/workflows/{self.file}"


@dataclass
class User:
    id: int
    login: str


@dataclass
class Repository:
    id: int
    full_name: str
    private: bool
    default_branch: str
    tokens: dict[str, bool] = field(default_factory=dict)
    """token -> may it write (dispatch, cancel)? Only these tokens can see a private repository."""
    workflows: dict[str, Workflow] = field(default_factory=dict)
    """By file name."""
    branches: dict[str, str] = field(default_factory=dict)
    """branch -> head sha."""
    tags: dict[str, str] = field(default_factory=dict)
    schedules: dict[str | None, Schedule] = field(default_factory=dict)
    """workflow file -> schedule; the None key is the repository-wide one."""
    dispatches: int = 0

    @property
    def owner(self) -> str:
        return self.full_name.split("/", 1)[0]

    @property
    def name(self) -> str:
        return self.full_name.split("/", 1)[1]

    def workflow(self, workflow_id: str) -> Workflow | None:
        """By file name or numeric id, as the API's {workflow_id} accepts either."""
        if workflow_id.isdigit():
            return next((w for w in self.workflows.values() if w.id == int(workflow_id)), None)
        return self.workflows.get(workflow_id)

    def schedule_for(self, workflow: Workflow) -> Schedule:
        return self.schedules.get(workflow.file) or self.schedules.get(None) or Schedule()

    def resolve(self, ref: str) -> tuple[str, str, str] | None:
        """A dispatch's ref (a branch or tag, short or refs/heads/..., refs/tags/...) as
        (full ref, short name, head sha); None when the repository has no such ref. A commit
        sha is not a ref: GitHub answers "No ref found for" (PROTOCOL D)."""
        if ref.startswith("refs/heads/"):
            short = ref[len("refs/heads/"):]
            sha = self.branches.get(short)
            return None if sha is None else (ref, short, sha)
        if ref.startswith("refs/tags/"):
            short = ref[len("refs/tags/"):]
            sha = self.tags.get(short)
            return None if sha is None else (ref, short, sha)
        if ref in self.branches:
            return f"refs/heads/{ref}", ref, self.branches[ref]
        if ref in self.tags:
            return f"refs/tags/{ref}", ref, self.tags[ref]
        return None


@dataclass
class Run:
    """One workflow run. Its status is a function of the time (see status_at)."""

    id: int
    repo: Repository
    workflow: Workflow
    run_number: int
    ref: str
    ref_name: str
    head_sha: str
    inputs: dict[str, str]
    actor: User
    display_title: str
    dispatched_at: float
    created_at: float
    """When the run exists (and is listed): the dispatch plus the run delay."""
    schedule: Schedule
    ignore_cancel: bool
    cancel_requested_at: float | None = None
    cancel_at: float | None = None
    """When a cancel takes effect (the cancel request plus the cancel delay)."""
    force_cancelled_at: float | None = None

    def visible(self, now: float) -> bool:
        return now >= self.created_at

    def _finish_time(self) -> float:
        return self.created_at + self.schedule.finish_after

    def _cancelled_at(self, now: float) -> float | None:
        """When the run ended cancelled, if it did by `now` before finishing on its own."""
        ends = []
        if self.force_cancelled_at is not None:
            ends.append(self.force_cancelled_at)
        if self.cancel_at is not None and not self.ignore_cancel:
            ends.append(self.cancel_at)
        ended = [moment for moment in ends if moment <= now and moment < self._finish_time()]
        return min(ended) if ended else None

    def status_at(self, now: float) -> tuple[str, str | None, float]:
        """(status, conclusion, updated_at) as of `now`."""
        cancelled = self._cancelled_at(now)
        if cancelled is not None:
            return "completed", "cancelled", cancelled
        start = self.created_at + self.schedule.start_after
        if now < start:
            return "queued", None, self.cancel_requested_at or self.created_at
        finish = self._finish_time()
        if now < finish:
            return "in_progress", None, max(start, self.cancel_requested_at or start)
        return "completed", self.schedule.conclusion, finish


def check_seconds(value: Any, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"{name} must be a number of seconds >= 0, not {value!r}")


def fake_sha(*parts: object) -> str:
    """A stable 40-hex commit id, so a rerun of a test sees the same shas."""
    return hashlib.sha1(":".join(map(str, parts)).encode("utf-8")).hexdigest()


def check_sha(sha: str) -> str:
    sha = sha.lower()
    if not re.fullmatch(r"[0-9a-f]{40}", sha):
        raise ValueError(f"a commit sha is 40 hex digits, not {sha!r}")
    return sha


def iso(moment: float) -> str:
    """GitHub's JSON time format: UTC, whole seconds, a Z suffix."""
    return datetime.fromtimestamp(moment, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def token_digest(token: str) -> str:
    """How an admin view names a token: never the token itself (admin answers reach logs)."""
    return "sha256:" + hashlib.sha256(token.encode("utf-8")).hexdigest()[:12]
