"""Upkeep of the store: removing whole finished executions, and rewriting projection rows.

Both run beside live workers, so both decide inside the transaction that writes: the jobs to
remove are chosen again under the writer's lock (and, on PostgreSQL, with their rows locked),
and a rewritten row replaces only the row it was rebuilt for (same last_seq), never one a
worker has moved on since.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from engine.machine import FINAL
from engine.projection import Job
from engine.store.schema import events, jobs, uploads

if TYPE_CHECKING:
    from engine.store.sql import EventStore

_FINAL = sorted(state.value for state in FINAL)


@dataclass(frozen=True)
class Removed:
    """What one prune batch removed (or, dry, would remove)."""

    executions: int = 0
    jobs: int = 0
    events: int = 0

    def __add__(self, other: Removed) -> Removed:
        return Removed(self.executions + other.executions, self.jobs + other.jobs,
                       self.events + other.events)


def _finished_executions(before: float) -> sa.Select[tuple[str]]:
    """Executions whose every job is final and whose last event is older than `before`."""
    working = sa.func.sum(sa.case((jobs.c.state.in_(_FINAL), 0), else_=1))
    return (
        sa.select(jobs.c.execution_id)
        .group_by(jobs.c.execution_id)
        .having(sa.and_(sa.func.max(jobs.c.updated_at) < before, working == 0))
    )


SCAN_PER_EXECUTION = 4
"""Finished jobs read per execution still wanted, per page of the oldest-first scan."""


def _oldest_finished(conn: Connection, before: float, limit: int) -> list[str]:
    """Up to `limit` executions whose every job is final and older than `before`, those whose
    oldest finished job is oldest first.

    Read through the finished jobs' partial index (migration 0008), a page at a time from the
    oldest, each page's executions then checked whole through the execution_id index: what a
    batch reads is bounded by the batch, not by the log. Grouping all of jobs by execution, as
    before, read a million rows for every 200 executions removed. An execution with a job
    still working (a long run's handed-on jobs sit among the oldest) is stepped over, and the
    scan goes on past it.
    """
    chosen: list[str] = []
    seen: set[str] = set()
    after: tuple[float, str] | None = None
    page = max(limit, 1) * SCAN_PER_EXECUTION
    while len(chosen) < limit:
        query = (sa.select(jobs.c.updated_at, jobs.c.job_id, jobs.c.execution_id)
                 .where(jobs.c.next_due_at.is_(None), jobs.c.updated_at < before)
                 .order_by(jobs.c.updated_at, jobs.c.job_id).limit(page))
        if after is not None:
            query = query.where(sa.or_(
                jobs.c.updated_at > after[0],
                sa.and_(jobs.c.updated_at == after[0], jobs.c.job_id > after[1])))
        rows = conn.execute(query).all()
        fresh = []
        for _, _, execution_id in rows:
            if execution_id not in seen:
                seen.add(execution_id)
                fresh.append(execution_id)
        if fresh:
            whole = {row[0] for row in conn.execute(
                _finished_executions(before).where(jobs.c.execution_id.in_(fresh)))}
            chosen += [e for e in fresh if e in whole][:limit - len(chosen)]
        if len(rows) < page:
            break
        after = (rows[-1][0], rows[-1][1])
    return chosen


def prune_batch(store: EventStore, before: float, limit: int) -> Removed:
    """Remove up to `limit` finished executions (their events and rows), oldest first.

    One short transaction per batch, so workers sharing the database wait for the writer's
    lock for a moment at a time, never for the whole prune.
    """
    with store._begin() as conn:
        chosen = _oldest_finished(conn, before, limit)
        if not chosen:
            return Removed()
        if conn.dialect.name == "postgresql":
            # Lock the rows, then look again: a job revived in between (a redispatch of a
            # lost job) is no longer final and keeps its execution.
            conn.execute(sa.select(jobs.c.job_id).where(jobs.c.execution_id.in_(chosen))
                         .with_for_update())
            chosen = [str(row[0]) for row in conn.execute(
                _finished_executions(before).where(jobs.c.execution_id.in_(chosen)))]
        job_ids = [row[0] for row in conn.execute(
            sa.select(jobs.c.job_id).where(jobs.c.execution_id.in_(chosen)))]
        gone = conn.execute(events.delete().where(events.c.job_id.in_(job_ids))).rowcount
        conn.execute(jobs.delete().where(jobs.c.job_id.in_(job_ids)))
        conn.execute(uploads.delete().where(uploads.c.execution_id.in_(chosen)))
    return Removed(len(chosen), len(job_ids), int(gone or 0))


def prunable(store: EventStore, before: float) -> Removed:
    """What prune would remove now: counted, nothing changed."""
    finished = _finished_executions(before).subquery()
    chosen = sa.select(jobs.c.job_id).where(jobs.c.execution_id.in_(sa.select(finished)))
    with store._read() as conn:
        executions = conn.execute(sa.select(sa.func.count()).select_from(finished)).scalar()
        job_count = conn.execute(sa.select(sa.func.count()).select_from(chosen.subquery())
                                 ).scalar()
        event_count = conn.execute(sa.select(sa.func.count()).select_from(events)
                                   .where(events.c.job_id.in_(chosen))).scalar()
    return Removed(int(executions or 0), int(job_count or 0), int(event_count or 0))


def rewrite_rows(store: EventStore, rebuilt: Sequence[tuple[Job, int | None]]) -> list[str]:
    """Write rows rebuilt from the log, each with the last_seq its stored row had when it was
    read (None: it had no row). Returns the ids left alone because a worker appended to them
    since (the log or the row moved on). The lease columns of existing rows are kept."""
    from engine.store.sql import _job_to_row

    moved: list[str] = []
    with store._begin() as conn:
        for job, seen_seq in rebuilt:
            row = _job_to_row(job)
            job_id = row.pop("job_id")
            logged = conn.execute(sa.select(sa.func.max(events.c.seq))
                                  .where(events.c.job_id == job_id)).scalar()
            if logged != job.last_seq:
                moved.append(job_id)
                continue
            if seen_seq is None:
                if _row_exists(conn, job_id):
                    moved.append(job_id)
                else:
                    conn.execute(jobs.insert().values(job_id=job_id, **row))
                continue
            changed = conn.execute(
                jobs.update().where(jobs.c.job_id == job_id)
                .where(jobs.c.last_seq == seen_seq).values(**row)).rowcount
            if not changed:
                moved.append(job_id)
    return moved


def drop_rows_without_events(store: EventStore, job_ids: Sequence[str]) -> int:
    """Delete projection rows that have no event at all: the log, the truth, knows no such job."""
    if not job_ids:
        return 0
    without = ~sa.exists().where(events.c.job_id == jobs.c.job_id)
    with store._begin() as conn:
        gone = conn.execute(jobs.delete().where(jobs.c.job_id.in_(list(job_ids)))
                            .where(without)).rowcount
    return int(gone or 0)


def rows_without_events(store: EventStore) -> list[str]:
    without = ~sa.exists().where(events.c.job_id == jobs.c.job_id)
    with store._read() as conn:
        return [row[0] for row in conn.execute(
            sa.select(jobs.c.job_id).where(without).order_by(jobs.c.job_id))]


def _row_exists(conn: Connection, job_id: str) -> bool:
    return conn.execute(sa.select(jobs.c.job_id).where(jobs.c.job_id == job_id)).first() is not None
