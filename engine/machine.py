"""The job machine, declared once, as data.

One CodePipeline job is one machine. Every state change is an event in the log; the table below
says which event may move which state where, and it is the only place a transition is written.
One `transitions` Machine is built from it at import, and everything else is read from that
Machine: the hot path's lookup (compiled once from its events, so a step stays one dictionary
look-up and no Machine object is created per job), the replay check (one model, reset per job,
moved with the Machine's own triggers) and the diagrams.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

from transitions import Machine, MachineError


class JobState(str, Enum):
    NEW = "new"
    """Before the first event; never stored."""
    ACQUIRED = "acquired"
    """Polled and recorded with its nonce; not yet acknowledged."""
    ACKNOWLEDGED = "acknowledged"
    """CodePipeline confirmed this worker owns the job."""
    SUBMITTED = "submitted"
    """The intent to start the external run is durable; the submission may not have landed."""
    RUNNING = "running"
    """The external run exists; its id is durable; it is checked at intervals."""
    HANDING_ON = "handing_on"
    """Progress must be reported with a continuation token (the console link while it runs)."""
    AWAITING_CONTINUATION = "awaiting_continuation"
    """Progress reported; CodePipeline owes a continuation job for this execution."""
    REPORTING_SUCCESS = "reporting_success"
    REPORTING_FAILURE = "reporting_failure"
    TIMING_OUT = "timing_out"
    """The job must end in a failure while its external run goes on (the action's time budget
    is spent, or CodePipeline refused every form of a progress report): cancel the run, then
    report the failure."""
    CANCELLING = "cancelling"
    """Nobody wants the run any more: cancel it, then stop."""
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    HANDED_ON = "handed_on"
    """A continuation job of the same execution took over."""
    ABANDONED = "abandoned"
    """CodePipeline no longer wants a result (stopped, timed out, the job gone), or it refused
    even the shortest failure report, or its job timeout passed while it could not be reached."""
    LOST = "lost"
    """Another worker holds the job, or CodePipeline withdrew it before acknowledgement. Final,
    unless CodePipeline hands the job to this worker again (redispatched)."""


class Effect(str, Enum):
    """What the scheduler does for a machine when it is due; one per non-final state."""

    ACKNOWLEDGE = "acknowledge"
    SUBMIT = "submit"
    CHECK = "check"
    REPORT_PROGRESS = "report_progress"
    REPORT_SUCCESS = "report_success"
    REPORT_FAILURE = "report_failure"
    CANCEL = "cancel"
    EXPIRE = "expire"
    """A timer only: no I/O."""
    DECIDE = "decide"
    """No I/O: the next event follows from the state alone (acknowledged -> submit or resume)."""


S = JobState

TRANSITIONS: list[tuple[str, list[JobState] | JobState, JobState | None]] = [
    # trigger (= event type)   sources                                 dest (None: stay)
    ("acquired", S.NEW, S.ACQUIRED),
    ("redispatched", S.ACQUIRED, None),
    ("redispatched", S.LOST, S.ACQUIRED),
    ("acknowledged", S.ACQUIRED, S.ACKNOWLEDGED),
    ("job_lost", S.ACQUIRED, S.LOST),
    ("submit_intended", S.ACKNOWLEDGED, S.SUBMITTED),
    ("submit_deferred", S.SUBMITTED, None),
    ("submit_armed", S.SUBMITTED, None),
    ("continuation_resumed", S.ACKNOWLEDGED, S.RUNNING),
    ("run_started", S.SUBMITTED, S.RUNNING),
    ("checked", S.RUNNING, None),
    ("progress_changed", S.RUNNING, S.HANDING_ON),
    ("continuation_reported", S.HANDING_ON, S.AWAITING_CONTINUATION),
    ("continuation_joined", [S.HANDING_ON, S.AWAITING_CONTINUATION], S.HANDED_ON),
    ("continuation_postponed", S.AWAITING_CONTINUATION, None),
    ("continuation_missing", S.AWAITING_CONTINUATION, S.CANCELLING),
    ("run_succeeded", [S.SUBMITTED, S.RUNNING], S.REPORTING_SUCCESS),
    ("run_failed", [S.ACKNOWLEDGED, S.SUBMITTED, S.RUNNING], S.REPORTING_FAILURE),
    ("run_timed_out", S.RUNNING, S.TIMING_OUT),
    ("result_reported", S.REPORTING_SUCCESS, S.SUCCEEDED),
    ("result_reported", S.REPORTING_FAILURE, S.FAILED),
    # A report CodePipeline refuses as it is (ValidationException...) is sent again with less
    # in it; what it can no longer say as a success, it says as a failure.
    ("report_degraded", [S.HANDING_ON, S.REPORTING_SUCCESS, S.REPORTING_FAILURE], None),
    ("success_undeliverable", S.REPORTING_SUCCESS, S.REPORTING_FAILURE),
    ("progress_undeliverable", S.HANDING_ON, S.TIMING_OUT),
    ("job_rejected", S.HANDING_ON, S.CANCELLING),
    # CodePipeline no longer wants a result, or no longer knows the job (GetJobDetails answered
    # JobNotFoundException): without the job's secrets nothing more can be done for it.
    ("job_rejected", [S.SUBMITTED, S.RUNNING, S.REPORTING_SUCCESS, S.REPORTING_FAILURE,
                      S.TIMING_OUT, S.CANCELLING], S.ABANDONED),
    # CodePipeline said the action execution ended without this worker (an EventBridge event
    # through the events queue: stopped and abandoned, canceled, failed): nothing started is
    # abandoned at once, a run going on is cancelled now rather than at the next refused report.
    ("execution_stopped", [S.ACQUIRED, S.ACKNOWLEDGED], S.ABANDONED),
    ("execution_stopped", [S.RUNNING, S.HANDING_ON, S.AWAITING_CONTINUATION], S.CANCELLING),
    ("run_cancelled", S.CANCELLING, S.ABANDONED),
    ("run_cancelled", S.TIMING_OUT, S.REPORTING_FAILURE),
    ("gave_up", [S.HANDING_ON, S.REPORTING_SUCCESS, S.REPORTING_FAILURE], S.ABANDONED),
    (
        "attempt_failed",
        [S.ACQUIRED, S.SUBMITTED, S.RUNNING, S.HANDING_ON, S.REPORTING_SUCCESS,
         S.REPORTING_FAILURE, S.TIMING_OUT, S.CANCELLING],
        None,
    ),
]
"""Every legal move. An event whose type is not a trigger here, or that is not legal from the
current state, is rejected: in replay it is reported, at run time it is a bug."""

EFFECTS: dict[JobState, Effect] = {
    S.ACQUIRED: Effect.ACKNOWLEDGE,
    S.ACKNOWLEDGED: Effect.DECIDE,
    S.SUBMITTED: Effect.SUBMIT,
    S.RUNNING: Effect.CHECK,
    S.HANDING_ON: Effect.REPORT_PROGRESS,
    S.AWAITING_CONTINUATION: Effect.EXPIRE,
    S.REPORTING_SUCCESS: Effect.REPORT_SUCCESS,
    S.REPORTING_FAILURE: Effect.REPORT_FAILURE,
    S.TIMING_OUT: Effect.CANCEL,
    S.CANCELLING: Effect.CANCEL,
}

FINAL: frozenset[JobState] = frozenset(
    {S.SUCCEEDED, S.FAILED, S.HANDED_ON, S.ABANDONED, S.LOST}
)

class _Folding:
    """The one model the Machine moves: a replay resets it per job (no Machine per job)."""

    state: JobState


_MODEL = _Folding()
MACHINE = Machine(
    model=_MODEL,
    states=JobState,
    transitions=[{"trigger": trigger, "source": sources, "dest": dest}
                 for trigger, sources, dest in TRANSITIONS],
    initial=JobState.NEW,
    auto_transitions=False,
    ignore_invalid_triggers=False,
)
"""The machine, built once from TRANSITIONS; read by the lookup, replay and the diagrams."""

_REPLAYING = threading.Lock()
"""The model is shared: one replay at a time moves it."""


def _moves() -> list[tuple[str, JobState, JobState | None]]:
    """Every (trigger, source, dest) the Machine accepts, in its own order (dest None: stay).

    Read from `MACHINE.events[...].transitions`, not from TRANSITIONS, so what the engine runs
    on, what replay accepts and what the diagram shows are one and the same definition.
    """
    moves = []
    for trigger, event in MACHINE.events.items():
        for source, transitions in event.transitions.items():
            for transition in transitions:
                dest = None if transition.dest is None else JobState[transition.dest]
                moves.append((trigger, JobState[source], dest))
    return moves


EVENT_TYPES: frozenset[str] = frozenset(MACHINE.events)


def _lookup() -> dict[tuple[JobState, str], JobState]:
    table: dict[tuple[JobState, str], JobState] = {}
    for trigger, source, dest in _moves():
        key = (source, trigger)
        if key in table:
            raise AssertionError(f"two transitions for {trigger!r} from {source.value!r}")
        table[key] = source if dest is None else dest
    return table


_NEXT = _lookup()
"""(state, event type) -> next state: the Machine's transitions compiled for the hot path."""


class IllegalEvent(Exception):
    """An event the machine cannot accept in the state it is in."""

    def __init__(self, state: JobState, event_type: str, job_id: str | None = None) -> None:
        self.state = state
        self.event_type = event_type
        self.job_id = job_id
        where = f"job {job_id}: " if job_id else ""
        known = "" if event_type in EVENT_TYPES else " (an event type this version does not know)"
        super().__init__(
            f"{where}event {event_type!r}{known} is not allowed in state {state.value!r}; "
            f"allowed here: {', '.join(allowed_events(state)) or 'nothing (final state)'}"
        )


def next_state(state: JobState, event_type: str, job_id: str | None = None) -> JobState:
    """The state after `event_type`: the hot path's one dictionary look-up."""
    try:
        return _NEXT[(state, event_type)]
    except KeyError:
        raise IllegalEvent(state, event_type, job_id) from None


def allowed_events(state: JobState) -> list[str]:
    return sorted({trigger for (source, trigger) in _NEXT if source is state})


def effect_of(state: JobState) -> Effect | None:
    return EFFECTS.get(state)


def is_final(state: JobState) -> bool:
    return state in FINAL


@dataclass(frozen=True)
class ReplayResult:
    state: JobState
    accepted: int
    error: IllegalEvent | None


def replay(event_types: Iterable[str], job_id: str | None = None,
           start: JobState = JobState.NEW) -> ReplayResult:
    """Fold a recorded history through the Machine, with `transitions`' own trigger machinery.

    Replay is the check that the code of today still accepts the histories of yesterday, so it
    asks the Machine itself rather than the lookup compiled from it (tests/engine/test_machine.py
    keeps the two equal). One model, reset to `start` (`new`: a whole history) per call: no
    Machine per job.
    """
    with _REPLAYING:
        MACHINE.set_state(start, _MODEL)
        accepted = 0
        for event_type in event_types:
            before = _MODEL.state
            event = MACHINE.events.get(event_type)
            try:
                if event is None:
                    raise MachineError(f"unknown event type {event_type!r}")
                event.trigger(_MODEL)
            except MachineError:
                return ReplayResult(before, accepted, IllegalEvent(before, event_type, job_id))
            accepted += 1
        return ReplayResult(_MODEL.state, accepted, None)


def mermaid() -> str:
    """The Machine drawn as a Mermaid state diagram, from its own events.

    Drawn here rather than with `transitions.extensions.diagrams` (0.9.3, graph_engine
    "mermaid"): that one titles the chart, names states by their Enum member (`ACQUIRED`, not
    the stored `acquired`), draws `new` as a state, styles the model's current state and has no
    final-state arrows, so its chart would neither match the log's words nor stay the same from
    run to run.
    """
    lines = ["stateDiagram-v2"]
    for trigger, source, dest in _moves():
        start = "[*]" if source is JobState.NEW else source.value
        lines.append(f"    {start} --> {(dest or source).value}: {trigger}")
    for state in JobState:
        if state in FINAL:
            lines.append(f"    {state.value} --> [*]")
    return "\n".join(lines) + "\n"


def text_diagram() -> str:
    """The Machine's transitions as aligned text, for a terminal: one row per trigger and
    destination, its sources listed."""
    grouped: dict[tuple[str, JobState | None], list[JobState]] = {}
    for trigger, source, dest in _moves():
        grouped.setdefault((trigger, dest), []).append(source)
    rows = []
    for (trigger, dest), sources in grouped.items():
        names = ", ".join(s.value for s in sources)
        if len(names) > 40:
            names = f"any of {len(sources)} working states"
        rows.append((names, trigger, "(same)" if dest is None else dest.value))
    width = [max(len(r[i]) for r in rows) for i in range(2)]
    out = [f"{'from':<{width[0]}}  {'event':<{width[1]}}  to"]
    out += [f"{a:<{width[0]}}  {b:<{width[1]}}  {c}" for a, b, c in rows]
    effects = ", ".join(f"{s.value}: {e.value}" for s, e in EFFECTS.items())
    out.append("")
    out.append(f"effect when due: {effects}")
    out.append(f"final: {', '.join(sorted(s.value for s in FINAL))}")
    return "\n".join(out) + "\n"
