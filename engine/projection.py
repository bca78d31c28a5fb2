"""The jobs projection: a job's current row, folded from its events.

`project` is pure and is the only code that turns events into a row, both when the scheduler
appends (the row is updated in the same transaction) and when the projection is rebuilt from the
log, so the two cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.machine import EFFECTS, FINAL, IllegalEvent, JobState, next_state
from engine.outcomes import JSON

EVENT_SCHEMA_VERSION = 1
"""Bumped when the shape of event data changes; old events keep the version they were written in."""


@dataclass(frozen=True)
class NewEvent:
    """An event the machine decided on, not yet stored."""

    type: str
    data: Mapping[str, JSON] = field(default_factory=dict)


@dataclass(frozen=True)
class Event:
    """An event as stored: `seq` counts from 1 per job; `at` is UTC epoch seconds."""

    job_id: str
    seq: int
    type: str
    at: float
    data: Mapping[str, JSON]
    version: int = EVENT_SCHEMA_VERSION
    worker: str | None = None
    """The worker process that wrote it (host:pid:random); None for events written elsewhere."""


@dataclass(frozen=True)
class Job:
    """One row of the jobs projection: everything the engine needs to take the next step."""

    job_id: str
    state: JobState
    action: str
    action_type: str
    execution_id: str
    created_at: float
    updated_at: float
    last_seq: int
    next_due_at: float | None
    pipeline: Mapping[str, JSON] = field(default_factory=dict)
    """Pipeline context (names and ids, never configuration secrets)."""
    nonce: str | None = None
    external_id: str | None = None
    run: Mapping[str, JSON] = field(default_factory=dict)
    """The action's durable data about its external run (request id, build id...)."""
    details: Mapping[str, JSON] | None = None
    """The RunDetails last sent to, or to be sent to, CodePipeline."""
    pending: Mapping[str, JSON] | None = None
    """What the next report says (result, failure, progress), fixed before it is sent."""
    continues: str | None = None
    """The job this one continues (same action execution)."""
    continued_by: str | None = None
    continuation_token: str | None = None
    problem: str | None = None
    """Why the job data cannot be worked (a malformed job), if so."""
    attempt: int = 0
    run_started_at: float | None = None
    reason: str | None = None
    """The last reason recorded (why it failed, was lost, abandoned...)."""
    intent_by: str | None = None
    """The worker that last opened a call window for the submission (the intent, a re-arm, a
    retry): any other worker must wait out that window and look before it leaps."""
    armed_until: float | None = None
    """The submission may start a call until then (intent_by's window). Recorded in the log, so
    the latest moment an earlier holder's call can land (armed_until + the action's grace) is
    known to every worker, however often they restart."""
    intended_at: float | None = None
    """When the submission was first intended: where an action's lookup of earlier attempts
    can stop reading back."""
    armings: int = 0
    """Call windows opened for the submission: more than one means calls may have gone out
    before, so the action looks for its earlier work first (JobContext.resumed)."""

    @property
    def final(self) -> bool:
        return self.state in FINAL


def _merge(base: Mapping[str, JSON], extra: Any) -> Mapping[str, JSON]:
    if not extra:
        return base
    merged = dict(base)
    merged.update(extra)
    return merged


def _first(event: Event) -> dict[str, Any]:
    """The row's values from a job's first event."""
    data = event.data
    return {
        "job_id": event.job_id,
        "state": next_state(JobState.NEW, event.type, event.job_id),
        "action": str(data.get("action", "")),
        "action_type": str(data.get("action_type", "")),
        "execution_id": str(data.get("execution_id", "")),
        "created_at": event.at,
        "updated_at": event.at,
        "last_seq": event.seq,
        "next_due_at": event.at,
        "pipeline": data.get("pipeline") or {},
        "nonce": data.get("nonce"),
        "external_id": _external_id(data.get("details")),
        "run": data.get("run") or {},
        "details": data.get("details"),
        "pending": None,
        "continues": data.get("continues"),
        "continued_by": None,
        "continuation_token": data.get("continuation_token"),
        "problem": data.get("problem"),
        "attempt": 0,
        "run_started_at": data.get("run_started_at"),
        "reason": None,
        "intent_by": None,
        "armed_until": None,
        "armings": 0,
        "intended_at": None,
    }


def _apply(values: dict[str, Any], event: Event) -> None:
    """Move a row's values (a dict, changed in place) past one event: the fold's inner step."""
    data = event.data
    state = next_state(values["state"], event.type, event.job_id)
    values["state"] = state
    values["updated_at"] = event.at
    values["last_seq"] = event.seq
    values["attempt"] = int(data.get("attempt", 0)) if event.type == "attempt_failed" else 0
    if data:
        if "nonce" in data:
            values["nonce"] = data["nonce"]
        if "run" in data:
            values["run"] = _merge(values["run"], data["run"])
        details = data.get("details")
        if details:
            values["details"] = details
            external = _external_id(details)
            if external:
                values["external_id"] = external
        if "report" in data:
            values["pending"] = data["report"]
        if "reason" in data:
            values["reason"] = data["reason"]
        if "by" in data:
            values["continued_by"] = data["by"]
        if "continuation_deadline" in data:  # continuation_postponed: the wait's first end
            values["pending"] = {**(values["pending"] or {}),
                                 "continuation_deadline": data["continuation_deadline"]}
    if "armed_until" in data:  # submit_intended, submit_armed, a submit's attempt_failed
        values["intent_by"] = data.get("worker")
        values["armed_until"] = float(data["armed_until"])
        values["armings"] = values.get("armings", 0) + 1
    elif event.type == "submit_intended":  # written before call windows existed
        values["intent_by"] = data.get("worker")
        values["armings"] = values.get("armings", 0) + 1
    if event.type == "submit_intended" and values.get("intended_at") is None:
        values["intended_at"] = event.at
    if event.type == "run_started":
        values["run_started_at"] = event.at
    if state in FINAL:
        values["next_due_at"] = None
    elif "due_at" in data:
        values["next_due_at"] = float(data["due_at"])
    elif state in EFFECTS:
        values["next_due_at"] = event.at


def project(job: Job | None, event: Event) -> Job:
    """The row after `event`; raises IllegalEvent when the machine cannot accept it."""
    if job is None:
        return Job(**_first(event))
    values = dict(job.__dict__)
    _apply(values, event)
    return _moved(values)


def _moved(values: dict[str, Any]) -> Job:
    """A Job of a row's values moved past an event: every field, as `_apply` leaves them.

    Filled in directly, not through the frozen dataclass's __init__, which sets each of its
    28 fields through object.__setattr__: the projection runs for every event on the hot path,
    and that __init__ cost more than `_apply` itself. `_apply` only changes fields that exist
    (a test folds every event type both ways and compares).
    """
    job = object.__new__(Job)
    job.__dict__.update(values)
    return job


def fold_checked(events: Iterable[Event]) -> tuple[Job | None, int, IllegalEvent | None]:
    """fold(), stopping at the first event the lookup refuses: (row so far, accepted, the
    refusal or None). `cpworker replay` asks the Machine itself (engine.machine.replay); this
    is the projection's own account, which must agree with it."""
    values: dict[str, Any] | None = None
    accepted = 0
    for event in events:
        try:
            if values is None:
                values = _first(event)
            else:
                _apply(values, event)
        except IllegalEvent as refusal:
            return (None if values is None else Job(**values)), accepted, refusal
        accepted += 1
    return (None if values is None else Job(**values)), accepted, None


def fold(events: Iterable[Event]) -> Job | None:
    """Rebuild a job's row from its whole history: one dict moved through every event, one Job."""
    values: dict[str, Any] | None = None
    for event in events:
        if values is None:
            values = _first(event)
        else:
            _apply(values, event)
    return None if values is None else Job(**values)


def _external_id(details: Any) -> str | None:
    if isinstance(details, Mapping):
        value = details.get("external_id")
        return None if value is None else str(value)
    return None
