"""The job machine: every legal move works, every other (state, event) pair is refused, and
the hot-path lookup, replay and the diagrams are all read from the one `transitions` Machine."""

from __future__ import annotations

import itertools

import pytest

from engine.machine import (
    EFFECTS,
    EVENT_TYPES,
    FINAL,
    MACHINE,
    TRANSITIONS,
    Effect,
    IllegalEvent,
    JobState,
    mermaid,
    next_state,
    replay,
    text_diagram,
)

S = JobState
WORKING = [S.ACQUIRED, S.SUBMITTED, S.RUNNING, S.HANDING_ON, S.REPORTING_SUCCESS,
           S.REPORTING_FAILURE, S.TIMING_OUT, S.CANCELLING]

# The lifecycle, written out once more by hand: the specification the table must meet.
LEGAL: dict[tuple[JobState, str], JobState] = {
    (S.NEW, "acquired"): S.ACQUIRED,
    (S.ACQUIRED, "redispatched"): S.ACQUIRED,
    (S.LOST, "redispatched"): S.ACQUIRED,
    (S.ACQUIRED, "acknowledged"): S.ACKNOWLEDGED,
    (S.ACQUIRED, "job_lost"): S.LOST,
    (S.ACKNOWLEDGED, "submit_intended"): S.SUBMITTED,
    (S.ACKNOWLEDGED, "continuation_resumed"): S.RUNNING,
    (S.ACKNOWLEDGED, "run_failed"): S.REPORTING_FAILURE,
    (S.SUBMITTED, "submit_deferred"): S.SUBMITTED,
    (S.SUBMITTED, "submit_armed"): S.SUBMITTED,
    (S.SUBMITTED, "run_started"): S.RUNNING,
    (S.SUBMITTED, "run_succeeded"): S.REPORTING_SUCCESS,
    (S.SUBMITTED, "run_failed"): S.REPORTING_FAILURE,
    (S.SUBMITTED, "job_rejected"): S.ABANDONED,
    (S.RUNNING, "checked"): S.RUNNING,
    (S.RUNNING, "progress_changed"): S.HANDING_ON,
    (S.RUNNING, "run_succeeded"): S.REPORTING_SUCCESS,
    (S.RUNNING, "run_failed"): S.REPORTING_FAILURE,
    (S.RUNNING, "run_timed_out"): S.TIMING_OUT,
    (S.RUNNING, "job_rejected"): S.ABANDONED,
    (S.HANDING_ON, "continuation_reported"): S.AWAITING_CONTINUATION,
    (S.HANDING_ON, "continuation_joined"): S.HANDED_ON,
    (S.HANDING_ON, "job_rejected"): S.CANCELLING,
    (S.HANDING_ON, "gave_up"): S.ABANDONED,
    (S.HANDING_ON, "report_degraded"): S.HANDING_ON,
    (S.HANDING_ON, "progress_undeliverable"): S.TIMING_OUT,
    (S.AWAITING_CONTINUATION, "continuation_joined"): S.HANDED_ON,
    (S.AWAITING_CONTINUATION, "continuation_postponed"): S.AWAITING_CONTINUATION,
    (S.AWAITING_CONTINUATION, "continuation_missing"): S.CANCELLING,
    (S.REPORTING_SUCCESS, "result_reported"): S.SUCCEEDED,
    (S.REPORTING_SUCCESS, "job_rejected"): S.ABANDONED,
    (S.REPORTING_SUCCESS, "gave_up"): S.ABANDONED,
    (S.REPORTING_SUCCESS, "report_degraded"): S.REPORTING_SUCCESS,
    (S.REPORTING_SUCCESS, "success_undeliverable"): S.REPORTING_FAILURE,
    (S.REPORTING_FAILURE, "result_reported"): S.FAILED,
    (S.REPORTING_FAILURE, "job_rejected"): S.ABANDONED,
    (S.REPORTING_FAILURE, "gave_up"): S.ABANDONED,
    (S.REPORTING_FAILURE, "report_degraded"): S.REPORTING_FAILURE,
    (S.TIMING_OUT, "run_cancelled"): S.REPORTING_FAILURE,
    (S.TIMING_OUT, "job_rejected"): S.ABANDONED,
    (S.CANCELLING, "run_cancelled"): S.ABANDONED,
    (S.CANCELLING, "job_rejected"): S.ABANDONED,
    (S.ACQUIRED, "execution_stopped"): S.ABANDONED,
    (S.ACKNOWLEDGED, "execution_stopped"): S.ABANDONED,
    (S.RUNNING, "execution_stopped"): S.CANCELLING,
    (S.HANDING_ON, "execution_stopped"): S.CANCELLING,
    (S.AWAITING_CONTINUATION, "execution_stopped"): S.CANCELLING,
    **{(state, "attempt_failed"): state for state in WORKING},
}

PATHS: dict[str, tuple[list[str], JobState]] = {
    "pass": (["acquired", "acknowledged", "submit_intended", "run_started", "checked",
              "run_succeeded", "result_reported"], S.SUCCEEDED),
    "fail": (["acquired", "acknowledged", "submit_intended", "run_started", "run_failed",
              "result_reported"], S.FAILED),
    "handed on": (["acquired", "acknowledged", "submit_intended", "run_started",
                   "progress_changed", "continuation_reported", "continuation_joined"],
                  S.HANDED_ON),
    "continuation": (["acquired", "redispatched", "acknowledged", "continuation_resumed",
                      "checked", "run_succeeded", "result_reported"], S.SUCCEEDED),
    "abandoned": (["acquired", "acknowledged", "submit_intended", "run_started",
                   "progress_changed", "job_rejected", "run_cancelled"], S.ABANDONED),
    "lost": (["acquired", "attempt_failed", "job_lost"], S.LOST),
    "resumed by another worker": (["acquired", "acknowledged", "submit_intended",
                                   "submit_deferred", "submit_armed", "run_started",
                                   "run_succeeded", "result_reported"], S.SUCCEEDED),
    "lost then handed out again": (["acquired", "job_lost", "redispatched", "acknowledged",
                                    "submit_intended"], S.SUBMITTED),
    "timed out": (["acquired", "acknowledged", "submit_intended", "run_started",
                   "run_timed_out", "attempt_failed", "run_cancelled", "result_reported"],
                  S.FAILED),
    "success refused, failure delivered": (["acquired", "acknowledged", "submit_intended",
                                            "run_started", "run_succeeded", "report_degraded",
                                            "report_degraded", "success_undeliverable",
                                            "report_degraded", "result_reported"], S.FAILED),
    "progress refused, run cancelled, failure delivered": (
        ["acquired", "acknowledged", "submit_intended", "run_started", "progress_changed",
         "report_degraded", "progress_undeliverable", "run_cancelled", "result_reported"],
        S.FAILED),
    "the job gone while its secrets were fetched again": (
        ["acquired", "acknowledged", "submit_intended", "run_started", "checked",
         "job_rejected"], S.ABANDONED),
}


ALL_PAIRS = [(state, event) for state in JobState for event in sorted(EVENT_TYPES)]


@pytest.mark.parametrize(("state", "event"), ALL_PAIRS)
def test_every_state_event_pair(state: JobState, event: str) -> None:
    expected = LEGAL.get((state, event))
    if expected is None:
        with pytest.raises(IllegalEvent) as raised:
            next_state(state, event, "job-1")
        assert "job-1" in str(raised.value) and state.value in str(raised.value)
    else:
        assert next_state(state, event) is expected


def test_the_table_has_no_move_the_specification_lacks() -> None:
    for state, event in itertools.product(JobState, sorted(EVENT_TYPES)):
        try:
            got = next_state(state, event)
        except IllegalEvent:
            continue
        assert LEGAL[(state, event)] is got


@pytest.mark.parametrize("name", sorted(PATHS))
def test_replay_with_transitions_reaches_the_same_state(name: str) -> None:
    events, final = PATHS[name]
    result = replay(events)
    assert result.error is None and result.state is final and result.accepted == len(events)
    state = S.NEW
    for event in events:
        state = next_state(state, event)
    assert state is final


def test_replay_reports_the_first_event_it_cannot_accept() -> None:
    result = replay(["acquired", "acknowledged", "run_started", "checked"], "job-9")
    assert result.accepted == 2 and result.state is S.ACKNOWLEDGED
    assert result.error is not None and result.error.event_type == "run_started"
    assert "allowed here" in str(result.error)


def test_replay_names_an_event_type_this_version_does_not_know() -> None:
    result = replay(["acquired", "teleported"])
    assert result.error is not None and "does not know" in str(result.error)


def test_final_states_have_no_effect_and_accept_nothing_but_a_new_dispatch() -> None:
    for state in FINAL:
        assert state not in EFFECTS
        for event in EVENT_TYPES:
            if (state, event) == (S.LOST, "redispatched"):
                continue
            with pytest.raises(IllegalEvent):
                next_state(state, event)


def test_every_working_state_has_exactly_one_effect() -> None:
    for state in JobState:
        if state in FINAL or state is S.NEW:
            continue
        assert isinstance(EFFECTS[state], Effect)


def test_diagrams_are_drawn_from_the_table() -> None:
    drawn = mermaid()
    for (state, event), dest in LEGAL.items():
        if state is S.NEW:
            assert f"[*] --> {dest.value}: {event}" in drawn
        else:
            assert f"{state.value} --> {dest.value}: {event}" in drawn
    text = text_diagram()
    assert all(event in text for event in EVENT_TYPES)


@pytest.mark.parametrize(("state", "event"), ALL_PAIRS)
def test_the_lookup_is_what_the_machine_accepts(state: JobState, event: str) -> None:
    """next_state (the compiled lookup) and the Machine's own trigger agree on every pair."""
    asked = replay([event], start=state)
    try:
        looked_up: JobState | None = next_state(state, event)
    except IllegalEvent:
        looked_up = None
    if asked.error is None:
        assert looked_up is asked.state
    else:
        assert looked_up is None and asked.state is state and asked.accepted == 0


def test_the_machine_is_built_from_the_table_alone() -> None:
    """Each row of TRANSITIONS is one set of the Machine's transitions, and nothing more."""
    rows = {(trigger, source, dest)
            for trigger, sources, dest in TRANSITIONS
            for source in (sources if isinstance(sources, list) else [sources])}
    built = {(trigger, JobState[source], None if t.dest is None else JobState[t.dest])
             for trigger, event in MACHINE.events.items()
             for source, moves in event.transitions.items() for t in moves}
    assert built == rows
    assert set(MACHINE.events) == EVENT_TYPES


def test_one_replay_does_not_leak_into_the_next() -> None:
    """The Machine's one model is reset per history."""
    assert replay(["acquired", "acknowledged"]).state is S.ACKNOWLEDGED
    fresh = replay(["acknowledged"])
    assert fresh.error is not None and fresh.state is S.NEW and fresh.accepted == 0


def test_every_transition_of_the_machine_is_drawn_once() -> None:
    arrows = [line.strip() for line in mermaid().splitlines() if ": " in line]
    expected = [f"{'[*]' if source is S.NEW else source.value} --> {target.value}: {event}"
                for (source, event), target in LEGAL.items()]
    assert sorted(arrows) == sorted(expected)
    rows = text_diagram().partition("\n\n")[0].splitlines()[1:]
    assert len(rows) == len(TRANSITIONS)
