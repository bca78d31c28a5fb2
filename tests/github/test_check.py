"""check(): a run's status and conclusion as the job's outcome, and GitHub's limits honoured."""

from __future__ import annotations

import pytest

from actions.github import GitHubAction
from actions.github.emulator import GitHubEmulator
from actions.github.report import FAILURES, PASSED
from engine import Done, Failed, FailureType, FakeClock, InProgress, RetryLater
from engine.devtools.emulator import Response
from tests.github.conftest import REPO, REVISION, TOKEN, Job, Wire, github_error


@pytest.mark.parametrize("conclusion, failure_type", [
    ("success", None), ("neutral", None),
    ("failure", FailureType.JOB_FAILED), ("timed_out", FailureType.JOB_FAILED),
    ("cancelled", FailureType.JOB_FAILED), ("stale", FailureType.JOB_FAILED),
    ("skipped", FailureType.JOB_FAILED), ("action_required", FailureType.JOB_FAILED),
    ("startup_failure", FailureType.CONFIGURATION_ERROR),
])
def test_each_conclusion_becomes_the_documented_outcome(
    action: GitHubAction, github: GitHubEmulator, clock: FakeClock, conclusion: str,
    failure_type: FailureType | None,
) -> None:
    github.set_schedule(REPO, start_after=1.0, finish_after=5.0, conclusion=conclusion)
    job = Job(clock)
    job.submit(action)
    queued = job.check(action)
    assert isinstance(queued, InProgress) and queued.details is not None
    assert "queued" in (queued.details.summary or "") and queued.details.percent == 5
    clock.advance(2.0)
    running = job.check(action)
    assert isinstance(running, InProgress) and running.details is not None
    assert "in progress" in (running.details.summary or "")
    clock.advance(10.0)
    final = job.check(action)
    (run,) = github.runs(REPO)
    url = f"https://github.com/{REPO}/actions/runs/{run['id']}"
    if failure_type is None:
        assert isinstance(final, Done)
        assert final.output_variables == {
            "RunId": str(run["id"]), "RunNumber": "1", "RunUrl": url, "Conclusion": conclusion,
            "HeadSha": run["head_sha"], "CommitId": REVISION}
        assert final.details is not None and final.details.percent == 100
    else:
        assert isinstance(final, Failed) and final.failure_type is failure_type
        assert url in final.message and FAILURES[conclusion][1] in final.message
        assert final.details is not None and final.details.external_id == str(run["id"])


def test_the_mapping_covers_every_documented_conclusion() -> None:
    documented = {"success", "failure", "cancelled", "timed_out", "action_required", "neutral",
                  "skipped", "stale", "startup_failure"}
    assert set(FAILURES) | PASSED == documented and not set(FAILURES) & PASSED


def test_an_unknown_conclusion_fails_naming_it(
    action: GitHubAction, clock: FakeClock, wire: Wire
) -> None:
    job = Job(clock)
    job.run.update(run_id=77, revision=REVISION)
    wire.script.append(Response.json(200, {"id": 77, "status": "completed",
                                           "conclusion": "exploded", "run_number": 3}))
    outcome = job.check(action)
    assert isinstance(outcome, Failed) and outcome.failure_type is FailureType.JOB_FAILED
    assert "exploded" in outcome.message


def test_an_exhausted_budget_spreads_checks_until_the_reset(
    action: GitHubAction, github: GitHubEmulator, clock: FakeClock, wire: Wire
) -> None:
    job = Job(clock)
    job.submit(action)
    reset = int(clock.now()) + 1200
    run = github.runs(REPO)[0]
    wire.script.append(Response.json(200, {**run, "status": "in_progress"}, headers={
        "x-ratelimit-remaining": "10", "x-ratelimit-reset": str(reset)}))
    outcome = job.check(action)
    assert isinstance(outcome, InProgress) and outcome.check_in is not None
    assert 110 <= outcome.check_in <= 121  # 1200 s left for 10 requests


def test_a_spent_primary_limit_on_a_check_waits_until_reset_uncounted(
    action: GitHubAction, github: GitHubEmulator, clock: FakeClock
) -> None:
    github.configure(rate_limit=3)
    job = Job(clock)
    job.submit(action)
    results = [job.check(action) for _ in range(3)]
    limited = results[-1]
    assert isinstance(limited, RetryLater) and not limited.counted
    assert limited.after is not None and 0 < limited.after <= 3601
    assert "x-ratelimit-remaining 0" in limited.reason


def test_server_errors_are_retried_counted(
    action: GitHubAction, clock: FakeClock, wire: Wire
) -> None:
    job = Job(clock)
    job.run.update(run_id=77)
    wire.script.extend([github_error(500, "Server Error")] * 3)
    outcome = job.check(action)
    assert isinstance(outcome, RetryLater) and outcome.counted and outcome.transient
    assert "HTTP 500" in outcome.reason and TOKEN not in outcome.reason


def test_a_run_the_dispatch_named_but_github_does_not_serve_yet_is_waited_for(
    action: GitHubAction, github: GitHubEmulator, clock: FakeClock
) -> None:
    github.configure(details_visible_at_once=False)
    job = Job(clock)
    job.submit(action)
    waiting = job.check(action)
    assert isinstance(waiting, InProgress) and waiting.details is not None
    assert "waiting for GitHub to show it" in (waiting.details.summary or "")
    clock.advance(5.0)
    assert isinstance(job.check(action), InProgress)


def test_in_ghes_mode_a_run_that_never_shows_its_marker_fails_with_the_run_name_fix(
    action: GitHubAction, github: GitHubEmulator, clock: FakeClock
) -> None:
    github.configure(return_run_details_supported=False)
    job = Job(clock, Workflow="no-run-name.yml")
    job.submit(action)
    clock.advance(action.give_up_after - 1)
    assert isinstance(job.check(action), InProgress)
    clock.advance(2.0)
    outcome = job.check(action)
    assert isinstance(outcome, Failed)
    assert outcome.failure_type is FailureType.CONFIGURATION_ERROR
    assert "run-name" in outcome.message and "1 run(s)" in outcome.message


def test_with_run_details_a_run_name_without_the_marker_is_pointed_out(
    action: GitHubAction, clock: FakeClock
) -> None:
    job = Job(clock, Workflow="no-run-name.yml")
    job.submit(action)
    outcome = job.check(action)
    assert isinstance(outcome, InProgress) and outcome.details is not None
    assert "does not show cpworker_marker" in (outcome.details.summary or "")
