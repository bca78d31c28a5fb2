"""The one path from a decision to the log: decided events become stored events and a row.

Intake (a polled job, a redispatch, a continuation joining), the scheduler (an effect's outcome)
and decide itself (stepping through states that need no I/O) all hand their decided events to
`record`, which numbers them after the row's last `seq`, stamps them with the time and the
writing worker, and folds them into the row with the projection. So an event is numbered,
stamped and projected the same way whoever decided it (eventsourcing's `trigger_event` ->
`collect_events`). Pure: nothing is written here; the caller commits the result.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from engine.projection import Event, Job, NewEvent, project


@dataclass(frozen=True)
class Recorded:
    """Events ready to append and the row they lead to (what the store commits as a Change)."""

    events: tuple[Event, ...]
    job: Job
    new: bool
    """True when these are the job's first events (it has no row yet)."""


def record(job: Job | None, decided: Iterable[NewEvent], now: float, worker: str | None,
           job_id: str | None = None, took_over_from: str | None = None) -> Recorded:
    """Number `decided` after `job`'s last event, stamp them `now` by `worker`, fold them in.

    `job` None: the job's first events, under `job_id`. `took_over_from`: the worker whose
    lease on the job ran out before `worker` claimed it (it died or hung), said on the first
    event so that `inspect` tells a takeover from workers sharing jobs. Raises IllegalEvent
    (from the projection) when the machine cannot accept an event, and ValueError when there
    is no event or no job to record it for.
    """
    if job is None and job_id is None:
        raise ValueError("a job's first events need its job id")
    key = job.job_id if job is not None else str(job_id)
    seq = job.last_seq if job is not None else 0
    row = job
    stored: list[Event] = []
    for item in decided:
        seq += 1
        data = item.data
        if took_over_from is not None and not stored:
            data = {**data, "took_over_from": took_over_from}
        event = Event(key, seq, item.type, now, data, worker=worker)
        row = project(row, event)
        stored.append(event)
    if row is None:
        raise ValueError(f"job {key}: no events to record")
    return Recorded(tuple(stored), row, new=job is None)
