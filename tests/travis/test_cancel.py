"""cancel(): stop the build nobody wants; a build that already ended is not a failure to cancel."""

from __future__ import annotations

from actions.travis import TravisAction
from actions.travis.emulator import TravisEmulator
from engine import FakeClock, InProgress
from tests.travis.conftest import SLUG, Job, Wire


def running_job(action: TravisAction, travis: TravisEmulator, clock: FakeClock) -> Job:
    travis.set_schedule(SLUG, start_after=1, finish_after=100)
    job = Job(clock)
    job.submit(action)
    clock.advance(3.0)
    assert isinstance(job.check(action), InProgress)
    return job


def test_a_running_build_is_cancelled(
    action: TravisAction, travis: TravisEmulator, clock: FakeClock
) -> None:
    job = running_job(action, travis, clock)
    outcome = action.cancel(job.context())
    assert outcome.ok and "accepted the cancel" in outcome.message
    # Travis queues it: the action says so rather than claim the build is already canceled.
    assert travis.builds(SLUG)[0]["state"] == "started"
    clock.advance(travis.cancel_delay)
    assert travis.builds(SLUG)[0]["state"] == "canceled"


def test_a_finished_build_409_is_fine(
    action: TravisAction, travis: TravisEmulator, clock: FakeClock
) -> None:
    job = running_job(action, travis, clock)
    clock.advance(200.0)
    outcome = action.cancel(job.context())
    assert outcome.ok and "already finished" in outcome.message
    assert travis.builds(SLUG)[0]["state"] == "passed"


def test_the_build_is_found_from_the_request_when_only_the_request_is_recorded(
    action: TravisAction, travis: TravisEmulator, clock: FakeClock
) -> None:
    travis.set_schedule(SLUG, start_after=1, finish_after=100)
    job = Job(clock)
    job.submit(action)
    clock.advance(3.0)
    assert "build_id" not in job.run
    outcome = action.cancel(job.context())
    assert outcome.ok
    clock.advance(travis.cancel_delay)
    assert travis.builds(SLUG)[0]["state"] == "canceled"


def test_a_request_still_pending_cannot_be_cancelled_and_says_so(
    action: TravisAction, travis: TravisEmulator, clock: FakeClock
) -> None:
    job = Job(clock)
    job.submit(action)
    outcome = action.cancel(job.context())
    assert not outcome.ok and "still pending" in outcome.message


def test_nothing_submitted_means_nothing_to_cancel(
    action: TravisAction, clock: FakeClock, wire: Wire
) -> None:
    outcome = action.cancel(Job(clock).context())
    assert outcome.ok and "nothing to cancel" in outcome.message
    assert wire.seen == []


def test_a_read_only_token_cannot_cancel_and_the_build_goes_on(
    action: TravisAction, travis: TravisEmulator, clock: FakeClock
) -> None:
    job = running_job(action, travis, clock)
    job.configuration["APIToken"] = "trv-read-only-token-77b1"
    outcome = action.cancel(job.context())
    assert not outcome.ok and "insufficient_access" in outcome.message
    assert "trv-read-only-token-77b1" not in outcome.message
    assert travis.builds(SLUG)[0]["state"] == "started"
