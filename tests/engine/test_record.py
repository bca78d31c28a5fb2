"""engine.record: the one path from decided events to stored events and a row."""

from __future__ import annotations

import pytest

from engine.decide import Policy, advance, step
from engine.machine import IllegalEvent, JobState
from engine.outcomes import Acknowledged
from engine.projection import NewEvent, fold
from engine.record import record

ACQUIRED = {"nonce": "n", "action": "ledger", "action_type": "Test/Custom/Ledger/1",
            "execution_id": "x"}


def test_first_events_are_numbered_from_one_stamped_and_folded() -> None:
    done = record(None, [NewEvent("acquired", ACQUIRED)], 5.0, "w-1", "job-1")
    assert done.new and [(e.job_id, e.seq, e.type, e.at, e.worker) for e in done.events] == [
        ("job-1", 1, "acquired", 5.0, "w-1")]
    assert done.job.state is JobState.ACQUIRED and done.job.last_seq == 1


def test_later_events_follow_the_rows_last_seq_and_fold_like_a_rebuild() -> None:
    first = record(None, [NewEvent("acquired", ACQUIRED)], 5.0, "w-1", "job-1")
    more = record(first.job, [NewEvent("acknowledged"), NewEvent("submit_intended")], 6.0,
                  "w-2")
    assert not more.new and [e.seq for e in more.events] == [2, 3]
    assert {e.worker for e in more.events} == {"w-2"}
    assert more.job == fold([*first.events, *more.events])


def test_what_the_machine_refuses_is_never_recorded() -> None:
    first = record(None, [NewEvent("acquired", ACQUIRED)], 5.0, None, "job-1")
    with pytest.raises(IllegalEvent):
        record(first.job, [NewEvent("run_started")], 6.0, None)
    with pytest.raises(ValueError):
        record(None, [NewEvent("acquired", ACQUIRED)], 5.0, None)


def test_decide_steps_through_the_same_path() -> None:
    first = record(None, [NewEvent("acquired", ACQUIRED)], 5.0, "w-1", "job-1")
    done = advance(first.job, Acknowledged(), 7.0, Policy(), "w-1")
    assert [e.type for e in done.events] == ["acknowledged", "submit_intended"]
    assert [e.seq for e in done.events] == [2, 3] and {e.worker for e in done.events} == {"w-1"}
    assert done.job == fold([*first.events, *done.events])
    events, row = step(first.job, Acknowledged(), 7.0, Policy(), "w-1")
    assert [e.type for e in events] == ["acknowledged", "submit_intended"] and row == done.job
