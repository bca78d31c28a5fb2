"""What a workflow run's status and conclusion mean for the CodePipeline job.

GitHub's run has a `status` (queued, in_progress, waiting, requested, pending, completed) and,
once completed, a `conclusion` (PROTOCOL D). The table below is the whole mapping; a stage is
a release gate, so only a run that did its work and said so passes:

- success: Done.
- neutral: Done. The run completed and reported no failure: GitHub counts a neutral
  conclusion as passing for required status checks, and Actions no longer produces it from a
  step (the old exit code 78), so a neutral run is one a workflow marked on purpose.
- skipped: Failed (JobFailed). Every job's `if:` said no, so the revision was not tested or
  deployed at all; letting the pipeline release it on nothing would be a silent pass. (GitHub
  counts skipped as passing for branch protection; a release gate must not.)
- failure, timed_out, cancelled, stale: Failed (JobFailed), each saying what happened.
- action_required: Failed (JobFailed): the run waits for someone's approval on GitHub and
  will not go on by itself.
- startup_failure: Failed (ConfigurationError): GitHub could not start the workflow (an
  invalid file, a reusable workflow it cannot find): only a change to the workflow fixes it.
- anything else: Failed (JobFailed), naming it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from actions.github.lookup import marker, run_id_of, timestamp
from actions.github.target import Target
from engine import Done, Failed, FailureType, InProgress, RunDetails

PASSED = frozenset({"success", "neutral"})
FAILURES: Mapping[str, tuple[FailureType, str]] = {
    "failure": (FailureType.JOB_FAILED, "failed"),
    "timed_out": (FailureType.JOB_FAILED,
                  "timed out (a job ran past its timeout-minutes, 360 by default)"),
    "cancelled": (FailureType.JOB_FAILED,
                  "was cancelled on GitHub (by someone, or by a concurrency group)"),
    "stale": (FailureType.JOB_FAILED, "went stale (GitHub gave up on it)"),
    "skipped": (FailureType.JOB_FAILED,
                "was skipped: every job's condition said no, so nothing was tested or "
                "deployed (check the jobs' if: conditions for workflow_dispatch)"),
    "action_required": (FailureType.JOB_FAILED,
                        "needs someone's approval on GitHub before it can go on"),
    "startup_failure": (FailureType.CONFIGURATION_ERROR,
                        "could not start: GitHub found the workflow file invalid, or a "
                        "workflow or action it uses missing"),
}
"""Completed runs that fail the job: the failure type, and how the message says it."""

WAITING = {
    "queued": "queued, waiting for a runner",
    "waiting": "waiting for a deployment to be approved (environment protection rules)",
    "requested": "requested",
    "pending": "pending (waiting for a concurrency group or a runner)",
    "in_progress": "in progress",
}
TYPICAL_RUN_SECONDS = 600.0
"""The progress bar's guess at a run's length; percent stays at 99 until GitHub says done."""


def judge(run: Mapping[str, Any], target: Target, execution_id: str, revision: str | None,
          now: float) -> Done | InProgress | Failed:
    """The job's outcome from the run as GitHub shows it; `data` keeps the run's ids."""
    run_id = run_id_of(dict(run))
    status = str(run.get("status") or "unknown")
    conclusion = run.get("conclusion")
    number = str(run.get("run_number") or "?")
    html_url = run.get("html_url")
    url = html_url if isinstance(html_url, str) and html_url else target.run_url(run_id)
    head_sha = run.get("head_sha") if isinstance(run.get("head_sha"), str) else None
    data: dict[str, Any] = {"run_id": run_id, "run_number": number, "html_url": url}
    if head_sha:
        data["head_sha"] = head_sha
    title = run.get("display_title")
    unmarked = isinstance(title, str) and marker(execution_id) not in title
    of = f", revision {revision[:7]}" if revision else ""
    note = " (its run-name does not show cpworker_marker: see the README)" if unmarked else ""
    external = str(run_id)
    if status == "completed":
        said = str(conclusion or "unknown")
        summary = f"GitHub run #{number} {said}{of}: {url}{note}"
        details = RunDetails(external, summary, 100)
        if said in PASSED:
            variables = {"RunId": external, "RunNumber": number, "RunUrl": url,
                         "Conclusion": said}
            if head_sha:
                variables["HeadSha"] = head_sha
            if revision:
                variables["CommitId"] = revision
            return Done(details, variables, data)
        failure_type, how = FAILURES.get(said, (FailureType.JOB_FAILED,
                                                f"ended with the conclusion {said}"))
        return Failed(failure_type,
                      f"{target.where}: run #{number}{of} {how}. See {url} for its log; fix "
                      "it and release the change again (or retry the stage)", details)
    doing = WAITING.get(status, status)
    percent = _percent(status, timestamp(run.get("run_started_at")), now)
    return InProgress(RunDetails(external, f"GitHub run #{number} {doing}{of}: {url}{note}",
                                 percent), data)


def _percent(status: str, started_at: float | None, now: float) -> int:
    """5 while waiting for a runner, then elapsed against a typical run."""
    if status != "in_progress" or started_at is None:
        return 5
    share = max(0.0, now - started_at) / TYPICAL_RUN_SECONDS
    return min(99, 10 + int(share * 89))
