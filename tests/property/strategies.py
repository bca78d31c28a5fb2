"""Hypothesis strategies for the core: legal histories, walked through the machine, and the
outcomes each state's effect can bring back.

A history is generated the way the engine makes one: from the state the events so far lead to,
one of the events the machine allows there, with the data the engine writes for that type
(engine.decide, engine.intake), which is what engine.projection reads.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from hypothesis import strategies as st

from engine import limits
from engine.machine import FINAL, JobState, allowed_events, next_state
from engine.outcomes import (
    JSON,
    Acknowledged,
    Cancelled,
    Deferred,
    Done,
    Expired,
    Failed,
    FailureType,
    InProgress,
    Outcome,
    Refused,
    Rejected,
    Reported,
    RetryLater,
    RunDetails,
)
from engine.projection import Event

T0 = 1_767_225_600.0
"""2026-01-01T00:00:00Z: where generated histories begin."""

JOB_ID = "job"
"""The id generated events carry; a test that stores several histories gives each its own."""

# --- small values -----------------------------------------------------------------------------

ODD_TEXT = st.sampled_from([
    "", " ", "\x00", "\n\t", "é" * 3000, "😀" * 1100, "\u202e", "'; DROP TABLE events; --",
    "a" * 5001, "\ufeff", "\\u0000", "null",
])
"""Texts that have broken code before: empty, NUL, past a limit in one unit but not another."""

TEXT = st.one_of(st.text(max_size=40), ODD_TEXT)
"""Any unicode a JSON column and both databases take (hypothesis leaves out lone surrogates)."""

SHORT = st.text(st.characters(codec="utf-8"), min_size=1, max_size=20)

OFFSET = st.floats(min_value=0.0, max_value=7 * 86400.0, allow_nan=False, allow_infinity=False)
"""Seconds after an event's own time (a due time, the end of a call window)."""

SCALAR: st.SearchStrategy[JSON] = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**53), 2**53), TEXT,
    st.floats(allow_nan=False, allow_infinity=False),
)
JSON_VALUE: st.SearchStrategy[JSON] = st.recursive(
    SCALAR, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                    st.dictionaries(SHORT, inner, max_size=3)),
    max_leaves=8)
"""A JSON value as an action may put in its run data (NaN and infinity are not JSON)."""

RUN_DATA: st.SearchStrategy[dict[str, JSON]] = st.dictionaries(SHORT, JSON_VALUE, max_size=4)

RUN_DETAILS: st.SearchStrategy[RunDetails] = st.builds(
    RunDetails, st.none() | TEXT, st.none() | TEXT, st.none() | st.integers(-500, 500))

DETAILS: st.SearchStrategy[dict[str, JSON]] = RUN_DETAILS.map(RunDetails.to_json)
"""RunDetails as the events store them."""

FAILURE_TYPE = st.sampled_from(FailureType)


def _fitted(details: dict[str, JSON] | None) -> dict[str, JSON] | None:
    return limits.fit_details(details)[0]


SHOWN_DETAILS = (st.none() | DETAILS).map(_fitted)
"""Details as a report carries them: fitted to CodePipeline's limits by engine.decide."""

PROGRESS_REPORT = st.fixed_dictionaries(
    {"details": SHOWN_DETAILS}, optional={"strict": st.booleans(), "short_token": st.booleans()})
SUCCESS_REPORT = st.fixed_dictionaries(
    {"details": SHOWN_DETAILS,
     "output_variables": st.dictionaries(SHORT, TEXT, max_size=3).map(
         lambda v: limits.fit_output_variables(v)[0])},
    optional={"strict": st.booleans()})
FAILURE_REPORT = st.fixed_dictionaries(
    {"failure_type": FAILURE_TYPE.map(lambda f: f.value),
     "message": TEXT.map(limits.FAILURE_MESSAGE.fit), "details": st.none() | DETAILS},
    optional={"external_id": st.none() | TEXT.map(limits.EXTERNAL_ID.fit),
              "strict": st.booleans(), "minimal": st.booleans()})
"""The three reports a row can have pending, each as engine.decide fixes it."""

REPORT_IN = {JobState.HANDING_ON: PROGRESS_REPORT, JobState.REPORTING_SUCCESS: SUCCESS_REPORT,
             JobState.REPORTING_FAILURE: FAILURE_REPORT}
"""What report_degraded leaves pending, by the state it is written in."""


# --- event data, per type, as the engine writes it ----------------------------------------------

Data = Callable[[float, JobState], st.SearchStrategy[dict[str, JSON]]]
"""Given the event's time and the state it is written in, the strategy of its data."""


def _fixed(required: Mapping[str, st.SearchStrategy[Any]],
           optional: Mapping[str, st.SearchStrategy[Any]] | None = None) -> Data:
    return lambda at, state: st.fixed_dictionaries(dict(required), optional=dict(optional or {}))


def _timed(required: Mapping[str, st.SearchStrategy[Any]],
           optional: Mapping[str, st.SearchStrategy[Any]] | None = None,
           times: tuple[str, ...] = ("due_at",)) -> Data:
    """Data with times (due_at, armed_until) at or after the event's own."""
    def data(at: float, state: JobState) -> st.SearchStrategy[dict[str, JSON]]:
        moments = {name: OFFSET.map(lambda o: at + o) for name in times}
        return st.fixed_dictionaries({**required, **moments}, optional=dict(optional or {}))
    return data


_REASON = {"reason": TEXT}
_WORKER = st.sampled_from(["host:1:aaaaaa", "host:2:bbbbbb", "other:3:cccccc"])

EVENT_DATA: dict[str, Data] = {
    "redispatched": _fixed({"nonce": SHORT}),
    "acknowledged": _fixed({}),
    "job_lost": _fixed(_REASON),
    # Written before call windows existed, submit_intended had no armed_until: both are read.
    "submit_intended": lambda at, state: st.one_of(
        _timed({"worker": _WORKER}, times=("armed_until",))(at, state),
        st.fixed_dictionaries({"worker": _WORKER})),
    "submit_deferred": _timed({**_REASON, "holder": st.none() | _WORKER}),
    "submit_armed": _timed({**_REASON, "worker": _WORKER}, times=("due_at", "armed_until")),
    "continuation_resumed": _fixed({}),
    "run_started": _timed({}, {"run": RUN_DATA, "details": DETAILS}),
    "checked": _timed({}, {"run": RUN_DATA}),
    "progress_changed": _fixed({"report": PROGRESS_REPORT},
                               {"details": DETAILS, "run": RUN_DATA, "note": TEXT}),
    "continuation_reported": _timed({}),
    "continuation_joined": _fixed({"by": SHORT}),
    "continuation_postponed": _timed(_REASON),
    "continuation_missing": _fixed(_REASON),
    "run_succeeded": _fixed({"report": SUCCESS_REPORT},
                            {"details": DETAILS, "run": RUN_DATA, "note": TEXT}),
    "run_failed": _fixed({"reason": st.none() | TEXT, "report": FAILURE_REPORT},
                         {"details": DETAILS}),
    "run_timed_out": _fixed({**_REASON, "run": RUN_DATA}),
    "result_reported": _fixed({}, {"note": TEXT}),
    "report_degraded": lambda at, state: st.fixed_dictionaries(
        {**_REASON, "refused": TEXT, "dropped": st.lists(TEXT, max_size=2),
         "report": REPORT_IN[state]}),
    "success_undeliverable": _fixed({**_REASON, "report": FAILURE_REPORT}),
    "progress_undeliverable": _fixed({**_REASON, "report": FAILURE_REPORT}),
    "job_rejected": _fixed(_REASON),
    "execution_stopped": _fixed({**_REASON,
                                 "state": st.sampled_from(["ABANDONED", "CANCELED", "FAILED"])}),
    # Cancelled while timing out, the failure report to send next is fixed with it.
    "run_cancelled": lambda at, state: st.fixed_dictionaries(
        {"ok": st.booleans(), "message": TEXT,
         **({"report": FAILURE_REPORT} if state is JobState.TIMING_OUT else {})}),
    "gave_up": _fixed(_REASON),
    # A submission's retry opens a call window too (worker and armed_until).
    "attempt_failed": lambda at, state: st.fixed_dictionaries(
        {"effect": SHORT, "attempt": st.integers(1, 50), "counted": st.booleans(),
         "error": TEXT, "due_at": OFFSET.map(lambda o: at + o)},
        optional={"worker": _WORKER, "armed_until": OFFSET.map(lambda o: at + o)}),
}


def acquired_data(at: float) -> st.SearchStrategy[dict[str, JSON]]:
    """What intake records for a polled job: a new one, a continuation, or a malformed one."""
    return st.fixed_dictionaries(
        {"action": st.sampled_from(["ledger", "travis"]),
         "action_type": st.just("Custom/Test/1"), "execution_id": SHORT,
         "nonce": st.none() | SHORT,
         "pipeline": st.dictionaries(SHORT, st.none() | TEXT, max_size=3)},
        optional={"continues": SHORT, "continuation_token": TEXT, "problem": TEXT,
                  "run": RUN_DATA, "details": st.none() | DETAILS,
                  "run_started_at": st.none() | OFFSET.map(lambda o: at - o)})


def _distances(target: JobState) -> dict[JobState, int]:
    """Events needed, at the least, to reach `target` from each state that can reach it."""
    moves = [(s, e, next_state(s, e)) for s in JobState for e in allowed_events(s)]
    distance = {target: 0}
    changed = True
    while changed:
        changed = False
        for source, _, dest in moves:
            if dest in distance and distance[dest] + 1 < distance.get(source, 1 << 30):
                distance[source] = distance[dest] + 1
                changed = True
    return distance


@st.composite
def histories(draw: st.DrawFn, min_size: int = 1, max_size: int = 30,
              to: JobState | None = None) -> list[Event]:
    """A legal history of one job: `acquired`, then events the machine allows, one at a time.

    Without `to` it ends at a state with no way out or after a drawn length. With `to` it
    wanders only where `to` can still be reached and ends on reaching it (past the drawn length,
    by a shortest way).
    """
    length = draw(st.integers(min_size, max_size))
    distance = _distances(to) if to is not None else {}
    at = T0 + draw(OFFSET)
    worker = draw(st.none() | _WORKER)
    history = [Event(JOB_ID, 1, "acquired", at, draw(acquired_data(at)), worker=worker)]
    state = next_state(JobState.NEW, "acquired")
    while state is not to:
        allowed = allowed_events(state)
        if to is not None:
            allowed = [e for e in allowed if next_state(state, e) in distance]
            if len(history) >= length:
                allowed = [e for e in allowed
                           if distance[next_state(state, e)] < distance[state]]
        elif len(history) >= length:
            break
        if not allowed:
            break
        kind = draw(st.sampled_from(allowed))
        at += draw(st.sampled_from([0.0, 0.5, 1.0]) | OFFSET)
        data = draw(EVENT_DATA[kind](at, state))
        history.append(Event(JOB_ID, len(history) + 1, kind, at, data, worker=worker))
        state = next_state(state, kind)
    return history


# --- outcomes ---------------------------------------------------------------------------------

RETRY_LATER: st.SearchStrategy[RetryLater] = st.builds(
    RetryLater, TEXT, st.none() | st.floats(-10.0, 4 * 3600.0), st.booleans(), FAILURE_TYPE,
    st.booleans())

DONE = st.builds(Done, st.none() | RUN_DETAILS, st.dictionaries(TEXT, TEXT, max_size=3), RUN_DATA)
IN_PROGRESS = st.builds(InProgress, st.none() | RUN_DETAILS, RUN_DATA,
                        st.none() | st.floats(-10.0, 3600.0))
FAILED = st.builds(Failed, FAILURE_TYPE, TEXT, st.none() | RUN_DETAILS)
ACTION_OUTCOME = st.one_of(DONE, IN_PROGRESS, FAILED, RETRY_LATER)
REPORT_OUTCOME = st.one_of(st.builds(Reported, st.none() | TEXT), st.builds(Rejected, TEXT),
                           RETRY_LATER, FAILED)
CANCELLED = st.builds(Cancelled, st.booleans(), TEXT)

ANY_OUTCOME: st.SearchStrategy[Outcome] = st.one_of(
    DONE, IN_PROGRESS, FAILED, RETRY_LATER, st.just(Acknowledged()), st.builds(Refused, TEXT),
    st.builds(Reported, st.none() | TEXT), st.builds(Rejected, TEXT), CANCELLED,
    st.builds(Expired, st.booleans()), st.builds(Deferred, TEXT, st.none() | OFFSET))
"""Every class in engine.outcomes, with random fields."""


def receivable(state: JobState, at: float) -> st.SearchStrategy[Outcome | None]:
    """What the scheduler can hand `decide` for a job in `state` (engine.effects, engine.scheduler):
    its effect's outcomes, the job's fetch of secrets (Rejected, RetryLater) and the retry the
    scheduler substitutes for an outcome with no rule (RetryLater)."""
    if state is JobState.ACQUIRED:
        return st.one_of(st.just(Acknowledged()), st.builds(Refused, TEXT), RETRY_LATER)
    if state is JobState.ACKNOWLEDGED:
        return st.none()
    if state is JobState.SUBMITTED:
        return st.one_of(ACTION_OUTCOME, st.builds(Rejected, TEXT), st.builds(
            Deferred, TEXT, st.none() | OFFSET.map(lambda o: at + o)))
    if state is JobState.RUNNING:
        return st.one_of(ACTION_OUTCOME, st.builds(Rejected, TEXT))
    if state in (JobState.HANDING_ON, JobState.REPORTING_SUCCESS, JobState.REPORTING_FAILURE):
        return REPORT_OUTCOME
    if state is JobState.AWAITING_CONTINUATION:
        return st.builds(Expired, st.booleans())
    if state in (JobState.TIMING_OUT, JobState.CANCELLING):
        # An action's cancel() returns Cancelled, an exception in it too; only the scheduler's
        # stand-in for an outcome with no rule is a RetryLater here, and it counts.
        return st.one_of(CANCELLED, st.builds(Rejected, TEXT),
                         RETRY_LATER.filter(lambda r: r.counted))
    raise AssertionError(f"{state.value} is final: nothing is run for it")


WORKING = sorted((s for s in JobState if s is not JobState.NEW and s not in FINAL),
                 key=lambda s: s.value)
"""Every state a job can be in with work left: where the scheduler calls `step`."""
