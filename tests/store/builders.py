"""How the store tests build events, jobs and changes: the way intake and the scheduler do."""

from __future__ import annotations

import time

import sqlalchemy as sa

from engine.machine import JobState
from engine.outcomes import JSON
from engine.projection import Event, Job, NewEvent, project
from engine.store import Change, EventStore
from engine.store.schema import jobs

T0 = 1_767_225_600.0
"""2026-01-01T00:00:00Z. Offsets from it are whole or binary fractions, so they compare exactly."""

LEASE = 60.0

SUCCESS = [
    NewEvent("acknowledged"),
    NewEvent("submit_intended", {"worker": "host:1:abcdef"}),
    NewEvent("run_started", {"run": {"build": 7}, "due_at": 0.0,
                             "details": {"external_id": "build-7", "summary": "queued"}}),
    NewEvent("checked", {"run": {"progress": 0.5}, "due_at": 0.0}),
    NewEvent("run_succeeded", {"details": {"external_id": "build-7", "summary": "passed"},
                               "report": {"output_variables": {"RunId": "build-7"}}}),
    NewEvent("result_reported"),
]
"""A whole successful life after `acquired`; a due_at of 0.0 is replaced by `at + 10`."""

LOST = [NewEvent("job_lost", {"reason": "another worker acknowledged it"})]

RETRYING = [
    NewEvent("acknowledged"),
    NewEvent("submit_intended", {"worker": "host:2:abcdef"}),
    NewEvent("attempt_failed", {"attempt": 2, "due_at": 0.0, "reason": "HTTP 503"}),
]

HANDED_ON = [
    NewEvent("acknowledged"),
    NewEvent("submit_intended", {"worker": "host:3:abcdef"}),
    NewEvent("run_started", {"run": {"build": 9}, "details": {"external_id": "build-9"}}),
    NewEvent("progress_changed", {"report": {"details": {"external_id": "build-9"}},
                                  "details": {"external_id": "build-9", "summary": "running"}}),
    NewEvent("continuation_reported", {"due_at": 0.0}),
    NewEvent("continuation_joined", {"by": "job-next"}),
]

FINAL_STATES = {JobState.SUCCEEDED, JobState.LOST, JobState.HANDED_ON}


def acquired_event(job_id: str, at: float, execution_id: str = "exec-1",
                   **extra: JSON) -> Event:
    data: dict[str, JSON] = {
        "action": "ledger", "action_type": "Custom/Test/1", "execution_id": execution_id,
        "nonce": f"nonce-{job_id}", "pipeline": {"name": "demo", "stage": "Build"},
    }
    data.update(extra)
    return Event(job_id, 1, "acquired", at, data)


def first(job_id: str, at: float = T0, execution_id: str = "exec-1", **extra: JSON) -> Change:
    """A job's first change: the `acquired` event and the new row (intake's Change)."""
    event = acquired_event(job_id, at, execution_id, **extra)
    return Change([event], project(None, event), new=True)


def then(job: Job, at: float, *steps: NewEvent) -> Change:
    """The next events of `job`, numbered on from its last_seq (the scheduler's Change)."""
    stored: list[Event] = []
    current = job
    for step in steps:
        data = {k: (at + 10 if k == "due_at" else v) for k, v in step.data.items()}
        event = Event(job.job_id, current.last_seq + 1, step.type, at, data)
        current = project(current, event)
        stored.append(event)
    return Change(stored, current, new=False)


def write(store: EventStore, job_id: str, at: float = T0, *steps: NewEvent,
          execution_id: str = "exec-1", action: str = "ledger") -> Job:
    """Record a job (of `action`) and, one commit per step, its later events; returns its row."""
    change = first(job_id, at, execution_id, action=action)
    store.commit([change])
    job = change.job
    for i, step in enumerate(steps, start=1):
        change = then(job, at + i, step)
        store.commit([change])
        job = change.job
    return job


def lease_of(store: EventStore, job_id: str) -> tuple[str | None, float | None]:
    with store.engine.connect() as conn:
        row = conn.execute(
            sa.select(jobs.c.lease_owner, jobs.c.lease_expires_at).where(jobs.c.job_id == job_id)
        ).one()
    return row[0], row[1]


def types(history: list[Event]) -> list[str]:
    return [e.type for e in history]


def ids(found: list[Job]) -> list[str]:
    return [j.job_id for j in found]


def assert_leased(store: EventStore, job_id: str, owner: str, now: float,
                  lease_for: float = LEASE) -> None:
    """Leased to `owner` until `lease_for` from now: the caller's `now` on SQLite, the
    database's clock on PostgreSQL (the same host's clock here, so close to this process's)."""
    held_by, expires = lease_of(store, job_id)
    assert held_by == owner
    assert expires is not None
    if store.dialect == "postgresql":
        assert time.time() - 10 < expires - lease_for <= time.time() + 1
    else:
        assert expires == now + lease_for


def past(seconds: float) -> float:
    """Sleep until `seconds` of real time have passed; returns the wall clock then."""
    time.sleep(seconds)
    return time.time()
