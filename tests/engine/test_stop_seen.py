"""decide.stop_seen: what a job does when CodePipeline's events say its action execution ended."""

from __future__ import annotations

import pytest

from engine.decide import EVENT_SKEW, STOP_LATER, stop_seen
from engine.machine import FINAL, JobState, next_state
from engine.projection import Job, NewEvent

T0 = 1_800_000_000.0


def _job(state: JobState) -> Job:
    return Job(job_id="j-1", state=state, action="ledger", action_type="Test/Custom/Ledger/1",
               execution_id="e-1", created_at=T0, updated_at=T0, last_seq=3,
               next_due_at=None if state in FINAL else T0)


@pytest.mark.parametrize(("state", "then"), [
    (JobState.ACQUIRED, JobState.ABANDONED),
    (JobState.ACKNOWLEDGED, JobState.ABANDONED),
    (JobState.RUNNING, JobState.CANCELLING),
    (JobState.HANDING_ON, JobState.CANCELLING),
    (JobState.AWAITING_CONTINUATION, JobState.CANCELLING),
])
def test_what_started_nothing_is_abandoned_and_a_run_going_on_is_cancelled(
        state: JobState, then: JobState) -> None:
    decided = stop_seen(_job(state), "ABANDONED", T0 + 5)
    assert isinstance(decided, NewEvent) and decided.type == "execution_stopped"
    assert decided.data["state"] == "ABANDONED" and "ABANDONED" in str(decided.data["reason"])
    assert next_state(state, decided.type) is then


def test_a_submission_in_flight_waits_for_its_run() -> None:
    assert stop_seen(_job(JobState.SUBMITTED), "CANCELED", T0 + 5) == STOP_LATER


@pytest.mark.parametrize("state", [JobState.REPORTING_SUCCESS, JobState.REPORTING_FAILURE,
                                   JobState.TIMING_OUT, JobState.CANCELLING,
                                   *sorted(FINAL, key=lambda s: s.value)])
def test_what_already_ends_is_left_to_end(state: JobState) -> None:
    assert stop_seen(_job(state), "FAILED", T0 + 5) is None


def test_an_event_older_than_the_job_is_an_earlier_attempts_and_changes_nothing() -> None:
    running = _job(JobState.RUNNING)
    assert stop_seen(running, "FAILED", T0 - EVENT_SKEW - 1) is None
    assert isinstance(stop_seen(running, "FAILED", T0 - EVENT_SKEW + 1), NewEvent)
    assert isinstance(stop_seen(running, "FAILED", None), NewEvent)  # no readable time: act
