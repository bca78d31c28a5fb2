"""What the GitHub Actions emulator writes and reads: run resources, run names, Link headers and
the `created` filter. Pure functions of their arguments, so a surprising shape can be checked
without a server.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlencode

from actions.github.emulator._model import (
    LIST_RUNS_DOCS,
    GitHubError,
    Repository,
    Run,
    Workflow,
    iso,
)

HTML_URL = "https://github.com"
"""Where html_url points, whatever host serves the API (a console link, never followed here)."""

_EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
_CONTEXT_NAMES = ("github.ref_name", "github.ref", "github.actor", "github.triggering_actor",
                  "github.sha", "github.workflow", "github.event_name", "github.repository",
                  "github.repository_owner")


def check_run_name(template: str, inputs: Sequence[str]) -> None:
    """Refuse a run-name template using an expression the emulator cannot evaluate, so a test
    never passes on a title GitHub would have rendered differently."""
    for expression in _EXPRESSION.findall(template):
        name = _input_name(expression)
        if name is not None:
            if name not in inputs:
                raise ValueError(f"run_name uses inputs.{name}, which the workflow does not "
                                 f"declare (declared: {sorted(inputs)})")
        elif expression not in _CONTEXT_NAMES:
            known = ", ".join(_CONTEXT_NAMES)
            raise ValueError(f"run_name uses ${{{{ {expression} }}}}; the emulator evaluates "
                             f"inputs.NAME, github.event.inputs.NAME and {known}")


def display_title(workflow: Workflow, context: Mapping[str, str], inputs: Mapping[str, str]) -> str:
    """The run's display_title: the workflow's `run-name` rendered with the `github` and
    `inputs` contexts (the only ones run-name may use; docs: workflow-syntax#run-name). "If
    run-name is omitted or is only whitespace", GitHub uses event-specific information, which
    for a workflow_dispatch run is the workflow's name (home-assistant/core#91873 shows
    dispatch runs listed as just "CI")."""
    if workflow.run_name is None:
        return workflow.name

    def value(match: re.Match[str]) -> str:
        name = _input_name(match.group(1))
        if name is not None:
            return inputs.get(name, "")
        return context.get(match.group(1), "")

    title = _EXPRESSION.sub(value, workflow.run_name)
    return title if title.strip() else workflow.name


def _input_name(expression: str) -> str | None:
    for prefix in ("inputs.", "github.event.inputs."):
        if expression.startswith(prefix) and re.fullmatch(r"[A-Za-z_][\w-]*",
                                                          expression[len(prefix):]):
            return expression[len(prefix):]
    return None


def render_run(run: Run, now: float, api_url: str) -> dict[str, Any]:
    """The workflow run resource (docs: get-a-workflow-run, its example response). Inputs are
    not part of it: GitHub's run resource does not show them (PROTOCOL D)."""
    status, conclusion, updated_at = run.status_at(now)
    repo = run.repo
    base = f"{api_url}/repos/{repo.full_name}/actions/runs/{run.id}"
    actor = render_user(run.actor)
    repository = render_repository(repo, api_url)
    return {
        "id": run.id,
        "name": run.workflow.name,
        "node_id": f"WFR_emulated{run.id}",
        "head_branch": run.ref_name,
        "head_sha": run.head_sha,
        "path": f"{run.workflow.path}@{run.ref}",
        "display_title": run.display_title,
        "run_number": run.run_number,
        "event": "workflow_dispatch",
        "status": status,
        "conclusion": conclusion,
        "workflow_id": run.workflow.id,
        "check_suite_id": run.id * 10,
        "check_suite_node_id": f"CS_emulated{run.id * 10}",
        "url": base,
        "html_url": f"{HTML_URL}/{repo.full_name}/actions/runs/{run.id}",
        "pull_requests": [],
        "created_at": iso(run.created_at),
        "updated_at": iso(updated_at),
        "actor": actor,
        "triggering_actor": actor,
        "run_attempt": 1,
        "referenced_workflows": [],
        "run_started_at": iso(run.created_at),
        "jobs_url": f"{base}/jobs",
        "logs_url": f"{base}/logs",
        "check_suite_url": f"{api_url}/repos/{repo.full_name}/check-suites/{run.id * 10}",
        "artifacts_url": f"{base}/artifacts",
        "cancel_url": f"{base}/cancel",
        "rerun_url": f"{base}/rerun",
        "previous_attempt_url": None,
        "workflow_url": f"{api_url}/repos/{repo.full_name}/actions/workflows/{run.workflow.id}",
        "head_commit": {"id": run.head_sha, "tree_id": run.head_sha[::-1],
                        "message": f"Emulated commit {run.head_sha[:7]}",
                        "timestamp": iso(run.dispatched_at)},
        "repository": repository,
        "head_repository": repository,
    }


def render_user(user: Any) -> dict[str, Any]:
    return {"login": user.login, "id": user.id, "type": "User",
            "html_url": f"{HTML_URL}/{user.login}"}


def render_repository(repo: Repository, api_url: str) -> dict[str, Any]:
    return {"id": repo.id, "node_id": f"R_emulated{repo.id}", "name": repo.name,
            "full_name": repo.full_name, "private": repo.private,
            "owner": {"login": repo.owner, "type": "Organization"},
            "html_url": f"{HTML_URL}/{repo.full_name}",
            "url": f"{api_url}/repos/{repo.full_name}"}


def link_header(url: str, query: Mapping[str, list[str]], page: int, last: int) -> str | None:
    """GitHub's Link header: prev, next, last, first, each the same query with another page
    (docs: using-pagination-in-the-rest-api); none when everything fits on one page."""
    if last <= 1:
        return None

    def to(number: int) -> str:
        params = [(k, v) for k, values in query.items() if k != "page" for v in values]
        return f"<{url}?{urlencode([*params, ('page', str(number))])}>"

    links = []
    if page > 1:
        links.append(f'{to(min(page - 1, last))}; rel="prev"')
    if page < last:
        links.append(f'{to(page + 1)}; rel="next"')
        links.append(f'{to(last)}; rel="last"')
    if page > 1:
        links.append(f'{to(1)}; rel="first"')
    return ", ".join(links)


def created_range(value: str) -> tuple[float | None, bool, float | None, bool]:
    """The `created` filter in GitHub's search syntax (docs: list-workflow-runs, "Returns
    workflow runs created within the given date-time range"; search syntax "Query for dates"):
    `>=T`, `>T`, `<=T`, `<T`, `A..B`, `A..*`, `*..B` or a bare date or time. A date alone
    covers its whole day (UTC). Returns (low, low inclusive, high, high inclusive); None is
    unbounded."""
    text = value.strip()
    for op in (">=", "<=", ">", "<"):
        if text.startswith(op):
            start, end = _moment(text[len(op):])
            day = end != start
            if op == ">=":
                return start, True, None, False
            if op == ">":
                return end, day, None, False
            if op == "<=":
                return None, False, end, not day
            return None, False, start, False
    if ".." in text:
        low_text, _, high_text = text.partition("..")
        low = None if low_text.strip() == "*" else _moment(low_text)[0]
        if high_text.strip() == "*":
            return low, True, None, False
        start, end = _moment(high_text)
        return low, True, end, end == start
    start, end = _moment(text)
    return start, True, end, end == start


def in_range(moment: float, bounds: tuple[float | None, bool, float | None, bool]) -> bool:
    low, low_inclusive, high, high_inclusive = bounds
    if low is not None and (moment < low or (moment == low and not low_inclusive)):
        return False
    return high is None or moment < high or (moment == high and high_inclusive)


def _moment(text: str) -> tuple[float, float]:
    """(start, end) of a date (its day, end exclusive) or of a time (start == end)."""
    text = text.strip()
    # An unencoded "+01:00" reaches the server as " 01:00" (a plus in a query is a space).
    text = re.sub(r"(T\d\d:\d\d(?::\d\d(?:\.\d+)?)?) (\d\d:?\d\d)$", r"\1+\2", text)
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            day = datetime.fromisoformat(text).replace(tzinfo=timezone.utc)
            return day.timestamp(), (day + timedelta(days=1)).timestamp()
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        # What GitHub answers to a malformed date is not documented; a 422 in its error shape
        # is the emulator's choice (a silently ignored filter would hide a client's bug).
        raise GitHubError(422, f"Invalid created filter: {text!r} is not a date or a time "
                          "like 2026-12-01T10:00:00Z", LIST_RUNS_DOCS) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp(), moment.timestamp()
