"""check(): from a pending request to a build, and from a build to how it ended."""

from __future__ import annotations

import pytest

from actions.travis import TravisAction
from actions.travis.emulator import TravisEmulator
from engine import Done, Failed, FailureType, FakeClock, InProgress, RetryLater, RunDetails
from tests.travis.conftest import BRANCH, REVISION, SLUG, TOKEN, Job, Wire


def started(action: TravisAction, clock: FakeClock) -> Job:
    job = Job(clock)
    assert isinstance(job.submit(action), InProgress)
    return job


def test_a_pending_request_is_in_progress_without_a_build(
    action: TravisAction, travis: TravisEmulator, clock: FakeClock
) -> None:
    job = started(action, clock)
    outcome = job.check(action)
    assert isinstance(outcome, InProgress)
    assert outcome.details == RunDetails(
        None, f"Travis request {job.run['request_id']} pending, revision {REVISION[:7]}", 0)
    assert "build_id" not in job.run
    assert job.run["revision"] == REVISION


def test_the_build_is_recorded_once_the_request_has_one_and_followed_to_passed(
    action: TravisAction, travis: TravisEmulator, clock: FakeClock, wire: Wire
) -> None:
    travis.set_schedule(SLUG, start_after=5, finish_after=65)
    job = started(action, clock)
    clock.advance(2.0)
    created = job.check(action)
    (build,) = travis.builds(SLUG)
    assert isinstance(created, InProgress)
    assert created.data == {"request_id": job.run["request_id"], "revision": REVISION,
                            "build_id": build["id"], "build_number": "1", "commit": REVISION}
    assert created.details == RunDetails(str(build["id"]),
                                         f"Travis build #1 created, {REVISION[:7]}", 5)
    assert build["sha"] == REVISION

    clock.advance(5.0 + 30.0)
    running = job.check(action)
    assert isinstance(running, InProgress) and running.details is not None
    assert running.details.summary == f"Travis build #1 started, {REVISION[:7]}"
    assert running.details.percent is not None and 10 < running.details.percent < 99
    assert wire.calls("GET")[-1].path == f"/build/{build['id']}"

    clock.advance(60.0)
    passed = job.check(action)
    url = f"https://app.travis-ci.com/github/octo/app/builds/{build['id']}"
    assert passed == Done(
        RunDetails(str(build["id"]), f"Travis build #1 passed, {REVISION[:7]}", 100),
        {"BuildId": str(build["id"]), "BuildNumber": "1", "BuildUrl": url,
         "CommitId": REVISION},
        {"build_id": build["id"], "build_number": "1", "commit": REVISION},
    )


def test_a_long_build_shows_at_most_99_percent(
    action: TravisAction, travis: TravisEmulator, clock: FakeClock
) -> None:
    travis.set_schedule(SLUG, start_after=1, finish_after=20_000)
    job = started(action, clock)
    clock.advance(10_000.0)
    outcome = job.check(action)
    assert isinstance(outcome, InProgress) and outcome.details is not None
    assert outcome.details.percent == 99


@pytest.mark.parametrize("result, words", [
    ("failed", "failed"),
    ("errored", "errored (Travis could not run it"),
    ("canceled", "was canceled on Travis CI"),
])
def test_a_build_that_did_not_pass_fails_the_job_naming_repo_branch_and_link(
    action: TravisAction, travis: TravisEmulator, clock: FakeClock, result: str, words: str
) -> None:
    travis.set_schedule(SLUG, result=result)
    job = started(action, clock)
    clock.advance(60.0)
    outcome = job.check(action)
    (build,) = travis.builds(SLUG)
    assert isinstance(outcome, Failed)
    assert outcome.failure_type is FailureType.JOB_FAILED
    assert (f"Travis repository {SLUG}, branch {BRANCH}: Travis build #1 of {REVISION[:12]} "
            f"{words}") in outcome.message
    assert f"https://app.travis-ci.com/github/octo/app/builds/{build['id']}" in outcome.message
    assert outcome.details == RunDetails(str(build["id"]),
                                         f"Travis build #1 {result}, {REVISION[:7]}", 100)


def test_a_state_the_action_does_not_know_counts_as_in_progress(
    action: TravisAction, travis: TravisEmulator, clock: FakeClock
) -> None:
    travis.set_schedule(SLUG, start_after=30, finish_after=40, intermediate="warming_up")
    job = started(action, clock)
    clock.advance(3.0)
    outcome = job.check(action)
    assert isinstance(outcome, InProgress) and outcome.details is not None
    assert outcome.details.summary == f"Travis build #1 warming_up, {REVISION[:7]}"
    outcome = job.check(action)
    assert isinstance(outcome, InProgress)


def test_a_rejected_request_is_a_configuration_error_with_travis_own_reason(
    action: TravisAction, travis: TravisEmulator, clock: FakeClock
) -> None:
    travis.set_schedule(SLUG, reject="Branch main not included per configuration.")
    job = started(action, clock)
    clock.advance(3.0)
    outcome = job.check(action)
    assert isinstance(outcome, Failed)
    assert outcome.failure_type is FailureType.CONFIGURATION_ERROR
    assert "Branch main not included per configuration." in outcome.message
    assert f"Travis repository {SLUG}, branch {BRANCH}" in outcome.message
    assert f"request {job.run['request_id']}" in outcome.message


def test_a_build_that_vanished_or_is_hidden_is_a_configuration_error(
    action: TravisAction, clock: FakeClock
) -> None:
    job = Job(clock)
    job.run.update({"request_id": 200_001, "build_id": 999_999})
    outcome = job.check(action)
    assert isinstance(outcome, Failed)
    assert outcome.failure_type is FailureType.CONFIGURATION_ERROR
    assert "not_found" in outcome.message


def test_a_travis_outage_while_checking_is_retried_by_the_engine(
    action: TravisAction, travis: TravisEmulator, clock: FakeClock
) -> None:
    job = started(action, clock)
    travis.faults.configure(error_rate=1.0)
    outcome = job.check(action)
    assert isinstance(outcome, RetryLater)
    assert outcome.counted and outcome.failure_type is FailureType.SYSTEM_UNAVAILABLE
    assert travis.call_counts()["GET /repo/{slug}/request/{id}"] == 3  # the client's own tries


def test_a_token_revoked_mid_run_is_a_permission_error_without_the_token(
    action: TravisAction, clock: FakeClock
) -> None:
    job = started(action, clock)
    job.configuration["APIToken"] = "trv-revoked-token-0000"
    outcome = job.check(action)
    assert isinstance(outcome, Failed)
    assert outcome.failure_type is FailureType.PERMISSION_ERROR
    assert "trv-revoked-token-0000" not in str(outcome) and TOKEN not in str(outcome)


def test_a_check_without_run_data_finds_the_request_by_marker(
    action: TravisAction, travis: TravisEmulator, clock: FakeClock
) -> None:
    started(action, clock)
    clock.advance(3.0)
    outcome = Job(clock).check(action)
    assert isinstance(outcome, InProgress)
    assert outcome.data["build_id"] == travis.builds(SLUG)[0]["id"]


def test_a_check_with_no_request_anywhere_fails_rather_than_trigger(
    action: TravisAction, travis: TravisEmulator, clock: FakeClock
) -> None:
    outcome = Job(clock).check(action)
    assert isinstance(outcome, Failed)
    assert outcome.failure_type is FailureType.SYSTEM_UNAVAILABLE
    assert travis.requests(SLUG) == []
