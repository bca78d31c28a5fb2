"""Finding the run a dispatch of this execution started, by what the run shows.

The dispatch answers 204 with no run id on servers without `return_run_details` (GitHub
Enterprise Server 3.20 and older), and a dispatch whose answer was lost (a crash, a timeout)
left no id at all. GitHub keeps no idempotency key and does not show a run's inputs (PROTOCOL
D), so the dispatch carries the execution's marker as the input cpworker_marker, which the
documented `run-name` puts in the run's `display_title`. The lookup lists the workflow's
runs with `event=workflow_dispatch` created since the execution first meant to dispatch (less
a margin for the clocks of GitHub and the worker), newest first, page by page through the
Link header, and matches the marker; nothing is ever guessed from timing. Paging also stops
at the first run older than the bound, should the server ignore `created`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from actions._http import Endpoint
from actions.github.client import GitHubClient, Repo

MAX_PAGES = 10
"""Pages (of 100) read before the lookup gives up telling: a thousand dispatched runs of one
workflow since this execution's first submit is beyond any pipeline's use."""
CLOCK_SKEW = 300.0
"""Seconds GitHub's clock (a run's created_at) may be behind the worker's."""
MARKER_PREFIX = "cpworker:"


def marker(execution_id: str) -> str:
    """What ties a workflow run to its CodePipeline action execution (the cpworker_marker
    input, shown by the run-name)."""
    return f"{MARKER_PREFIX}{execution_id}"


@dataclass(frozen=True)
class Mine:
    """The run whose display_title carries this execution's marker."""

    run: dict[str, Any]


@dataclass(frozen=True)
class Absent:
    """No run since the bound carries the marker; `unmarked` of them carry no marker at all
    (a run-name that does not show cpworker_marker, or runs dispatched by hand)."""

    unmarked: int = 0


@dataclass(frozen=True)
class Unsure:
    """Too many runs since the bound to read them all."""

    read: int


Found = Mine | Absent | Unsure


def find_run(client: GitHubClient, endpoint: Endpoint, repo: Repo, execution_id: str, *,
             since: float) -> Found:
    """This execution's run among the workflow's dispatched runs created since `since`.

    Raises actions.github.errors.GitHubError when a listing fails.
    """
    wanted = marker(execution_id)
    read = unmarked = 0
    page_url: str | None = None
    for _ in range(MAX_PAGES):
        answer = client.list_runs(endpoint, repo, created_since=iso(since), page_url=page_url)
        runs = answer.body.get("workflow_runs")
        for run in runs if isinstance(runs, list) else []:
            if not isinstance(run, dict) or run_id_of(run) is None:
                continue
            created = timestamp(run.get("created_at"))
            if created is not None and created < since:
                return Absent(unmarked)
            read += 1
            title = run.get("display_title")
            title = title if isinstance(title, str) else ""
            if wanted in title:
                return Mine(run)
            if MARKER_PREFIX not in title:
                unmarked += 1
        page_url = answer.next_url
        if page_url is None:
            return Absent(unmarked)
    return Unsure(read)


def run_id_of(run: dict[str, Any]) -> int | None:
    value = run.get("id")
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def iso(moment: float) -> str:
    """A time as GitHub's `created` filter reads it."""
    return datetime.fromtimestamp(moment, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def timestamp(value: object) -> float | None:
    """GitHub's UTC time stamps (2026-02-19T12:00:00Z)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()
