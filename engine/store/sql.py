"""EventStore: events appended and the projection updated in one transaction (SQLite, PostgreSQL).

Durability: on SQLite the store uses WAL with `synchronous=FULL` by default. WAL alone survives a
killed process; FULL also survives a power cut, which matters here because the order "intent
recorded, then build submitted" must hold even if the machine loses power right after the submit.
Group commit makes the extra fsync cheap: one per batch of jobs, not one per event.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field, fields
from importlib.resources import files
from operator import attrgetter
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect, Engine, RowMapping
from sqlalchemy.exc import DBAPIError, IntegrityError

from engine.errors import (
    AmbiguousJob,
    ConcurrencyConflict,
    CpworkerError,
    StoreFailure,
    UnknownJob,
)
from engine.machine import JobState
from engine.projection import EVENT_SCHEMA_VERSION, Event, Job
from engine.store.errors import is_missing_table, translate
from engine.store.schema import UTCTime, events, jobs, uploads

REVISIONS = ("0001", "0002", "0003", "0004", "0005", "0006", "0007", "0008")
"""Every migration in engine/store/migrations, oldest first (a test keeps the two equal)."""
HEAD_REVISION = REVISIONS[-1]

RECENT_ROWS = 4096
"""Rows of unfinished jobs a store keeps of its last commits (engine.defaults.MAX_IN_FLIGHT
jobs, and more)."""

MIGRATION_LOCK_KEY = 0x6370776F726B6572
"""The PostgreSQL advisory lock migrations take: "cpworker" in ASCII, as a 64-bit key."""

_JOB_FIELDS = [f.name for f in fields(Job) if f.name in jobs.c]
"""Job's fields that are columns. A column Job does not have yet keeps its server default;
a test checks that no field of Job is missing from the table."""

PG_CONNECT_TIMEOUT = 10
"""Seconds to establish a PostgreSQL connection (libpq's connect_timeout)."""

_DB_NOW = sa.cast(sa.extract("epoch", sa.func.clock_timestamp()), UTCTime)
"""PostgreSQL's own clock, in the columns' unit. clock_timestamp, not now(): now() is the
start of the transaction, which may have waited for a lock."""


@dataclass(frozen=True)
class ClaimRequest:
    """What to lease: machines due by `now` (the caller's clock), at most `limit`, for `owner`.

    `skip`: jobs the caller already holds. `actions`: only jobs of these actions (None: every
    action); workers running different actions share one database.
    """

    now: float
    limit: int
    owner: str
    lease_for: float
    skip: Sequence[str] = ()
    actions: Sequence[str] | None = None
    holders: dict[str, str | None] | None = field(default=None, compare=False)
    """When given, filled with each claimed job's lease owner just before this claim (None:
    nobody held it, so nobody has claimed the job since its last event was committed, which is
    what tells a resuming worker that no call of the job can be in flight)."""


Claim = ClaimRequest
"""The former name."""


@dataclass(frozen=True)
class Change:
    """One job's new events and the row they lead to, for a group commit."""

    events: Sequence[Event]
    job: Job
    new: bool
    """True when the job has no row yet (its first event)."""


def _row_to_job(row: RowMapping) -> Job:
    values = {name: row[name] for name in _JOB_FIELDS}
    values["state"] = JobState(values["state"])
    values["pipeline"] = values["pipeline"] or {}
    values["run"] = values["run"] or {}
    return Job(**values)


def _job_to_row(job: Job) -> dict[str, Any]:
    row = {name: getattr(job, name) for name in _JOB_FIELDS}
    row["state"] = job.state.value
    row["pipeline"] = dict(job.pipeline)
    row["run"] = dict(job.run)
    row["details"] = None if job.details is None else dict(job.details)
    row["pending"] = None if job.pending is None else dict(job.pending)
    return row


def _row_to_event(row: RowMapping) -> Event:
    return Event(row["job_id"], row["seq"], row["type"], row["at"], row["data"], row["version"],
                 row["worker"])


def worker_id() -> str:
    """host:pid:random: unique per process; tells whether a lease's holder may still be alive."""
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"


def _holder_is_dead(owner: str) -> bool:
    """A lease taken by a process on this host that no longer exists can be taken over at once."""
    parts = owner.split(":")
    if len(parts) != 3 or parts[0] != socket.gethostname():
        return False
    try:
        pid = int(parts[1])
    except ValueError:
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class EventStore:
    """The log and its projection behind one SQLAlchemy engine.

    Every write is a transaction that appends events and updates their jobs' rows together, so the
    projection is never ahead of or behind the log.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self._writer: AbstractContextManager[Any] = (
            threading.Lock() if self.dialect == "sqlite" else nullcontext()
        )
        """SQLite has one writer at a time. Threads of this process queue on a lock instead
        of on SQLite's busy handler, which sleeps in steps of milliseconds."""
        self._insert_events = _Batch(events.insert(), engine.dialect, _EVENT_FIELDS)
        self._insert_jobs = _Batch(jobs.insert(), engine.dialect, _JOB_INSERT_FIELDS)
        self._update_jobs = _Batch(_UPDATE_JOB, engine.dialect, _JOB_UPDATE_FIELDS)
        self._rows = _RecentRows(RECENT_ROWS)
        """The rows this store committed last: a claim reads back only the rows it does not
        hold at the same last_seq (each job's first claim follows the intake's commit)."""
        self._shapes: dict[tuple[Any, ...], _Shaped] = {}
        """Statements compiled once per shape (_shaped): the claim's select and lease update, and
        count_active's count, which the poller asks for before every poll."""
        self.on_commit: Callable[[Sequence[Change], float], None] | None = None
        """Told of every commit that wrote (its changes, its seconds): the worker's metrics."""
        self._started = False
        """Whether the database was reached once: a file that cannot be opened at start is a
        wrong path (permanent), later it is a passing condition (a full volume, say)."""

    # --- schema ---------------------------------------------------------------------------------

    def migrate(self) -> None:
        """Bring the schema to the newest migration (alembic); a no-op when it is current.

        A current database is recognised with one query, without importing alembic or reading
        the migration scripts: that took a quarter of a restart's time to its first job.
        Workers starting together take turns: on PostgreSQL an advisory lock held until the
        migration commits (two concurrent CREATE TABLEs made one fail on a duplicate key), on
        SQLite the write lock BEGIN IMMEDIATE takes. Whoever comes second reads the revision
        again under the lock and finds nothing left to do.
        """
        current = self.revision()
        if current == HEAD_REVISION:
            return
        _known(current)
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(files("engine.store") / "migrations"))
        with self._begin() as conn:
            if self.dialect == "postgresql":
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(MIGRATION_LOCK_KEY)))
            current = _revision_in(conn)
            if current == HEAD_REVISION:
                return
            _known(current)
            config.attributes["connection"] = conn
            command.upgrade(config, "head")

    def revision(self) -> str | None:
        """The schema revision the database is at (None: a database never migrated)."""
        try:
            with self.engine.connect().execution_options(cpworker_read=True) as conn:
                value = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
        except DBAPIError as error:
            if is_missing_table(error):
                return None
            raise translate(error, started=self._started) from error
        self._started = True
        return None if value is None else str(value)

    # --- writing --------------------------------------------------------------------------------

    def commit(self, changes: Sequence[Change], claim: ClaimRequest | None = None) -> list[Job]:
        """Append all events and update all rows in ONE transaction (group commit).

        With `claim`, the same transaction then leases the next due machines and returns them:
        one transaction (one fsync) per scheduler round instead of two.
        A duplicate (job_id, seq) means another writer got there first: the whole batch is rolled
        back and ConcurrencyConflict raised; `commit_each` isolates the loser. Any other failure
        (StoreUnavailable, StoreFailure) also leaves nothing of the batch written.
        """
        if not changes:
            return self._claim_alone(claim) if claim is not None else []
        # Every writer takes its locks in job-id order. Two batches that share jobs in different
        # orders would otherwise deadlock on PostgreSQL (each holding a key the other needs)
        # instead of one of them failing on the duplicate (job_id, seq) as a conflict.
        changes = sorted(changes, key=lambda c: c.job.job_id)
        new_events = [e for change in changes for e in change.events]
        inserts = [c.job for c in changes if c.new]
        updates = [c.job for c in changes if not c.new]
        began = time.perf_counter()
        try:
            with self._begin() as conn:
                if new_events:
                    self._insert_events.run(conn, new_events)
                if inserts:
                    self._insert_jobs.run(conn, inserts)
                if updates:
                    self._update_jobs.run(conn, updates)
                claimed = [] if claim is None else \
                    self._claim(conn, claim, known=self._rows.known(changes))
            self._rows.remember(changes)
            if self.on_commit is not None:
                self.on_commit(changes, time.perf_counter() - began)
            return claimed
        except IntegrityError as error:
            ids = sorted({c.job.job_id for c in changes})
            raise ConcurrencyConflict(
                f"another writer appended to one of {len(ids)} job(s) first ({ids[:3]}...)",
                fix="reload the job and decide again; nothing of this batch was written",
            ) from error

    def commit_each(self, changes: Sequence[Change]) -> list[Change]:
        """Commit one by one; returns the changes that lost a race (and were not written)."""
        lost: list[Change] = []
        for change in changes:
            try:
                self.commit([change])
            except ConcurrencyConflict:
                lost.append(change)
        return lost

    # --- scheduling -----------------------------------------------------------------------------

    def claim_due(
        self, now: float, limit: int, owner: str, lease_for: float, skip: Iterable[str] = (),
        actions: Sequence[str] | None = None,
    ) -> list[Job]:
        """Lease up to `limit` machines due by `now`, earliest first, that nobody else holds
        (of `actions` only, when given)."""
        return self._claim_alone(ClaimRequest(now, limit, owner, lease_for, tuple(skip),
                                              None if actions is None else tuple(actions)))

    def _claim_alone(self, request: ClaimRequest) -> list[Job]:
        if request.limit <= 0:
            return []
        with self._begin() as conn:
            return self._claim(conn, request)

    def _claim(self, conn: Connection, request: ClaimRequest,
               known: Mapping[str, Job] | None = None) -> list[Job]:
        if request.limit <= 0:
            return []
        actions = None if request.actions is None else list(request.actions)
        if actions == []:
            return []  # a worker of no action claims nothing
        skip = list(request.skip)
        select = self._shaped(("claim", None if actions is None else len(actions), len(skip)),
                              lambda: self._claim_statement(actions, skip))
        values: dict[str, Any] = {"now": request.now, "owner": request.owner,
                                  "lease_now": request.now, "limit": request.limit}
        values.update((f"a{n}", action) for n, action in enumerate(actions or ()))
        values.update((f"s{n}", job_id) for n, job_id in enumerate(skip))
        rows = select.run(conn, values).all()
        if not rows:
            return []
        if request.holders is not None:
            request.holders.update({job_id: owner for job_id, _, owner in rows})
        due = [(job_id, seq) for job_id, seq, _ in rows]
        ids = [job_id for job_id, _ in due]
        lease = self._shaped(("lease", len(ids)), lambda: self._lease_statement(len(ids)))
        values = {"owner": request.owner, "lease_for": request.lease_for,
                  "expires": request.now + request.lease_for}
        values.update((f"j{n}", job_id) for n, job_id in enumerate(ids))
        lease.run(conn, values)
        # Most machines due now are the ones this transaction just wrote: their rows are at
        # hand (same last_seq), so only the others are read back and decoded.
        found = {job_id: job for job_id, seq in due
                 if (job := (known or {}).get(job_id)) is not None and job.last_seq == seq}
        missing = [job_id for job_id in ids if job_id not in found]
        if missing:
            for row in conn.execute(sa.select(jobs).where(jobs.c.job_id.in_(missing))).mappings():
                found[row["job_id"]] = _row_to_job(row)
        return [found[job_id] for job_id in ids if job_id in found]

    def _shaped(self, key: tuple[Any, ...], build: Callable[[], Any]) -> _Shaped:
        """The statement of this shape, compiled once (a claim's shape: how many actions and
        skipped jobs it names). Building and compiling the claim's select and lease update
        took most of a claim's time, every scheduler round."""
        shaped = self._shapes.get(key)
        if shaped is None:
            if len(self._shapes) >= SHAPES:
                self._shapes.clear()  # shapes seldom vary: a worker's actions are fixed
            shaped = self._shapes[key] = _Shaped(build(), self.engine.dialect)
        return shaped

    def _claim_statement(self, actions: list[str] | None, skip: list[str]) -> Any:
        """The claim's select, its values named: now, owner, lease_now, limit, a0.., s0.."""
        lease_now = _DB_NOW if self.dialect == "postgresql" else sa.bindparam("lease_now")
        query = (  # each value a named parameter: see _Shaped
            sa.select(jobs.c.job_id, jobs.c.last_seq, jobs.c.lease_owner)
            # Unfinished jobs only, said outright: the due indexes are partial (schema.py).
            .where(jobs.c.next_due_at.is_not(None))
            .where(jobs.c.next_due_at <= sa.bindparam("now"))
            .where(sa.or_(
                jobs.c.lease_owner.is_(None),
                jobs.c.lease_owner == sa.bindparam("owner"),
                jobs.c.lease_expires_at < lease_now,
            ))
            .order_by(jobs.c.next_due_at)
            .limit(sa.bindparam("limit", type_=sa.Integer()))
        )
        if actions is not None:
            query = query.where(jobs.c.action.in_(
                [sa.bindparam(f"a{n}") for n in range(len(actions))]))
        if skip:
            query = query.where(jobs.c.job_id.not_in(
                [sa.bindparam(f"s{n}") for n in range(len(skip))]))
        if self.dialect == "postgresql":
            query = query.with_for_update(skip_locked=True)
        return query

    def _lease_statement(self, count: int) -> Any:
        """The claim's lease update of `count` jobs: owner, j0.., and expires (SQLite: the
        caller's clock) or lease_for (PostgreSQL: from the server's clock)."""
        expires = (_DB_NOW + sa.bindparam("lease_for", type_=sa.Float())
                   if self.dialect == "postgresql"
                   else sa.bindparam("expires", type_=jobs.c.lease_expires_at.type))
        return (jobs.update()
                .where(jobs.c.job_id.in_([sa.bindparam(f"j{n}") for n in range(count)]))
                .values(lease_owner=sa.bindparam("owner", type_=jobs.c.lease_owner.type),
                        lease_expires_at=expires))

    def renew(self, job_ids: Iterable[str], owner: str, lease_for: float,
              now: float | None = None) -> int:
        """Extend the leases `owner` still holds on these jobs to `lease_for` from now.

        Returns how many it holds: fewer than asked means another worker took some over after
        their leases ran out. `now` is the caller's clock, used on SQLite only (default: the
        wall clock); PostgreSQL measures leases on its own clock.
        """
        ids = sorted(set(job_ids))
        if not ids:
            return 0
        lease_now = self._lease_now(time.time() if now is None else now)
        with self._begin() as conn:
            result = conn.execute(
                jobs.update().where(jobs.c.job_id.in_(ids)).where(jobs.c.lease_owner == owner)
                .values(lease_expires_at=lease_now + lease_for)
            )
        return int(result.rowcount or 0)

    def earliest_due(self, now: float, actions: Sequence[str] | None = None) -> float | None:
        """When the next unleased machine (of `actions`) falls due; None: nothing waits."""
        query = (
            sa.select(sa.func.min(jobs.c.next_due_at))
            .where(jobs.c.next_due_at.is_not(None))
            .where(sa.or_(jobs.c.lease_owner.is_(None),
                          jobs.c.lease_expires_at < self._lease_now(now)))
        )
        if actions is not None:
            query = query.where(jobs.c.action.in_(list(actions)))
        with self._read() as conn:
            value = conn.execute(query).scalar()
        return None if value is None else float(value)

    def _lease_now(self, now: float) -> Any:
        """The instant leases are measured from: PostgreSQL's clock, or `now` on SQLite.

        Workers sharing a PostgreSQL run on hosts whose clocks differ: measured on each one's
        own clock, a lease could look expired to a worker whose clock runs ahead while its
        holder is still working. SQLite is one host, and tests drive it with a fake clock.
        """
        return _DB_NOW if self.dialect == "postgresql" else now

    def release_dead_leases(self) -> int:
        """Free leases whose holder died on this host (a kill -9), so resume starts at once.

        The lease is expired, not cleared: its owner stays on the row, so whoever claims the
        job next knows that a worker held it, and may have had a call in flight."""
        with self._read() as conn:
            owners = conn.execute(
                sa.select(jobs.c.lease_owner).where(jobs.c.lease_owner.is_not(None)).distinct()
            ).scalars().all()
        dead = [o for o in owners if o and _holder_is_dead(o)]
        if not dead:
            return 0
        with self._begin() as conn:
            result = conn.execute(
                jobs.update().where(jobs.c.lease_owner.in_(dead))
                .where(sa.or_(jobs.c.lease_expires_at.is_(None), jobs.c.lease_expires_at > 0.0))
                .values(lease_expires_at=0.0)
            )
        return int(result.rowcount or 0)

    def release(self, job_ids: Iterable[str], owner: str) -> None:
        """Give back `owner`'s leases on these jobs, so a peer need not wait for them to expire."""
        ids = list(job_ids)
        if not ids:
            return
        with self._begin() as conn:
            conn.execute(
                jobs.update().where(jobs.c.job_id.in_(ids)).where(jobs.c.lease_owner == owner)
                .values(lease_owner=None, lease_expires_at=None)
            )

    # --- reading --------------------------------------------------------------------------------

    def get(self, job_id: str) -> Job | None:
        with self._read() as conn:
            row = conn.execute(sa.select(jobs).where(jobs.c.job_id == job_id)).mappings().first()
        return None if row is None else _row_to_job(row)

    def get_many(self, job_ids: Iterable[str]) -> dict[str, Job]:
        ids = list(job_ids)
        if not ids:
            return {}
        with self._read() as conn:
            rows = conn.execute(_JOBS_BY_ID, {"ids": ids}).mappings().all()
        return {r["job_id"]: _row_to_job(r) for r in rows}

    def resolve(self, prefix: str) -> Job:
        """The job whose id is `prefix` or starts with it; errors say what matched."""
        exact = self.get(prefix)
        if exact is not None:
            return exact
        pattern = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        with self._read() as conn:
            rows = conn.execute(
                sa.select(jobs).where(jobs.c.job_id.like(pattern, escape="\\")).limit(6)
            ).mappings().all()
        if not rows:
            raise UnknownJob(f"no job id starts with {prefix!r}",
                             fix="list the jobs with `cpworker jobs`")
        if len(rows) > 1:
            shown = ", ".join(r["job_id"] for r in rows[:5])
            raise AmbiguousJob(f"{prefix!r} matches several jobs ({shown})",
                               fix="give more characters of the job id")
        return _row_to_job(rows[0])

    def history(self, job_id: str) -> list[Event]:
        with self._read() as conn:
            rows = conn.execute(
                sa.select(events).where(events.c.job_id == job_id).order_by(events.c.seq)
            ).mappings().all()
        return [_row_to_event(r)
                for r in rows]

    def histories(self, job_ids: Sequence[str] | None = None) -> Iterator[list[Event]]:
        """Every job's history, one job at a time, in job-id order (for replay --all)."""
        query = sa.select(events).order_by(events.c.job_id, events.c.seq)
        if job_ids is not None:
            query = query.where(events.c.job_id.in_(list(job_ids)))
        current: list[Event] = []
        with self._read() as conn:
            # A server-side cursor on PostgreSQL: replay --all over a large log must not hold
            # every event in memory at once.
            for r in conn.execution_options(stream_results=True).execute(query).mappings():
                event = _row_to_event(r)
                if current and current[0].job_id != event.job_id:
                    yield current
                    current = []
                current.append(event)
        if current:
            yield current

    def list_jobs(self, state: str | None = None, limit: int | None = None) -> list[Job]:
        query = sa.select(jobs).order_by(jobs.c.created_at, jobs.c.job_id)
        if state is not None:
            query = query.where(jobs.c.state == state)
        if limit is not None:
            query = query.limit(limit)
        with self._read() as conn:
            return [_row_to_job(r) for r in conn.execute(query).mappings()]

    def unfinished_in_pipeline_execution(self, pipeline_execution_id: str) -> list[Job]:
        """Jobs not final whose recorded pipeline context names this pipeline execution: what
        an action execution event (engine.events) may be about. Rare (one per stopped
        execution), so a scan of the unfinished rows' JSON is cheap enough."""
        query = (sa.select(jobs).where(jobs.c.next_due_at.is_not(None))
                 .where(jobs.c.pipeline["pipeline_execution_id"].as_string()
                        == pipeline_execution_id)
                 .order_by(jobs.c.created_at, jobs.c.job_id))
        with self._read() as conn:
            return [_row_to_job(r) for r in conn.execute(query).mappings()]

    def record_upload(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """Record an uploaded artifact (a row of `uploads`) unless one is recorded for its
        execution and artifact already; returns the row that stands (the first one wins)."""
        try:
            with self._begin() as conn:
                conn.execute(uploads.insert().values(**row))
        except IntegrityError:
            pass  # recorded before (a retry, another worker): the first record stands
        found = self.uploads(str(row["execution_id"]), str(row["artifact"]))
        if not found:
            raise CpworkerError(f"the upload of {row['artifact']} for execution "
                               f"{row['execution_id']} was neither recorded nor found")
        return found[0]

    def uploads(self, execution_id: str, artifact: str | None = None) -> list[dict[str, Any]]:
        """The artifacts recorded as uploaded for an action execution, by name."""
        query = sa.select(uploads).where(uploads.c.execution_id == execution_id)
        if artifact is not None:
            query = query.where(uploads.c.artifact == artifact)
        with self._read() as conn:
            rows = conn.execute(query.order_by(uploads.c.artifact)).mappings().all()
        return [dict(r) for r in rows]

    def by_execution(self, execution_id: str) -> list[Job]:
        with self._read() as conn:
            rows = conn.execute(
                sa.select(jobs).where(jobs.c.execution_id == execution_id)
                .order_by(jobs.c.created_at, jobs.c.job_id)
            ).mappings().all()
        return [_row_to_job(r) for r in rows]

    def count_active(self, actions: Sequence[str] | None = None) -> int:
        """Jobs (of `actions`; None: all) not in a final state: what is still owed to CodePipeline.

        Counted through the next_due_at index: every working state has a due time and every
        final state has none (engine.projection.project), so the poller's capacity check stays
        cheap with a hundred thousand finished jobs in the table; with `actions`, through the
        (action, next_due_at) index.
        """
        names = None if actions is None else list(actions)
        if names == []:
            return 0  # no action, nothing of its owed

        def build() -> Any:
            query = (sa.select(sa.func.count()).select_from(jobs)
                     .where(jobs.c.next_due_at.is_not(None)))
            if names is not None:
                query = query.where(jobs.c.action.in_(
                    [sa.bindparam(f"a{n}") for n in range(len(names))]))
            return query

        counting = self._shaped(("count_active", None if names is None else len(names)), build)
        with self._read() as conn:
            value = counting.run(conn, {f"a{n}": name for n, name in
                                        enumerate(names or ())}).scalar()
        return int(value or 0)

    def count_by_state(self, actions: Sequence[str] | None = None) -> dict[str, int]:
        """Jobs per state (of `actions`; None: all): the metrics' view of the projection."""
        query = sa.select(jobs.c.state, sa.func.count()).group_by(jobs.c.state)
        if actions is not None:
            query = query.where(jobs.c.action.in_(list(actions)))
        with self._read() as conn:
            return {str(state): int(count) for state, count in conn.execute(query)}

    def count_leased(self, owner: str) -> int:
        """Jobs `owner` holds a lease on (expired or not: it has not let them go)."""
        query = sa.select(sa.func.count()).select_from(jobs).where(jobs.c.lease_owner == owner)
        with self._read() as conn:
            return int(conn.execute(query).scalar() or 0)

    def replace_projection(self, rebuilt: Sequence[Job]) -> None:
        """Overwrite projection rows with rows rebuilt from the log (leases are kept)."""
        with self._begin() as conn:
            for job in rebuilt:
                row = _job_to_row(job)
                row.pop("job_id")
                conn.execute(jobs.update().where(jobs.c.job_id == job.job_id).values(**row))

    # --- transactions ---------------------------------------------------------------------------

    @contextmanager
    def _begin(self) -> Iterator[Connection]:
        """A write transaction; its driver errors become StoreUnavailable or StoreFailure."""
        try:
            with self._writer, self.engine.begin() as conn:
                yield conn
        except IntegrityError:
            raise  # a duplicate key: the caller knows the jobs and makes a ConcurrencyConflict
        except (DBAPIError, sa.exc.TimeoutError) as error:
            raise translate(error, started=self._started) from error
        self._started = True

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        """A read; its driver errors become StoreUnavailable or StoreFailure, as writes' do."""
        try:
            with self.engine.connect().execution_options(cpworker_read=True) as conn:
                yield conn
        except (DBAPIError, sa.exc.TimeoutError) as error:
            raise translate(error, started=self._started) from error
        self._started = True

    def close(self) -> None:
        self.engine.dispose()


_FIXED_FIELDS = frozenset({"job_id", "action", "action_type", "execution_id", "created_at",
                           "pipeline", "continues", "continuation_token", "problem"})
"""Set by a job's first event and never changed by a later one (engine.projection._apply)."""
_CHANGING_FIELDS = [name for name in _JOB_FIELDS if name not in _FIXED_FIELDS]

_UPDATE_JOB = (
    jobs.update()
    .where(jobs.c.job_id == sa.bindparam("b_job_id"))
    .values({name: sa.bindparam(f"b_{name}") for name in _CHANGING_FIELDS})
    .values(lease_owner=None, lease_expires_at=None)
)
"""Each step rewrites only what a step can change: not the pipeline context, the largest part."""
"""A committed step ends the lease: the row is due again by next_due_at, for whoever claims it."""


_JOBS_BY_ID = sa.select(jobs).where(jobs.c.job_id.in_(sa.bindparam("ids", expanding=True)))
"""Built once: the intake reads the rows of every polled batch (are they new?), and building
the query, one bound parameter per id, cost more than running it."""


class _Batch:
    """One statement executed for many objects (executemany) with the least work per row.

    SQLAlchemy compiles the statement once for the dialect (so the SQL is the same it would
    send) and supplies each column type's own bind processor; what is skipped is Core's
    per-row parameter machinery, which cost more than SQLite's own work on the hot path
    (group commits of the scheduler). Same SQL, same conversions, on every dialect. Each bind
    is read straight from the object (an Event, a Job) by its getter in `fields`: one call per
    column, no row dictionary built in between; a bind without a getter keeps the
    statement's own value.
    """

    def __init__(self, statement: Any, dialect: Dialect,
                 fields: Mapping[str, Callable[[Any], Any]]) -> None:
        compiled = statement.compile(dialect=dialect)
        self.sql = str(compiled)
        self.names = list(compiled.positiontup) if compiled.positional else list(compiled.binds)
        self.positional = bool(compiled.positional)
        self.steps: list[Callable[[Any], Any]] = []
        """Per bind, in the statement's order: the object's value, through its processor."""
        for name in self.names:
            bind = compiled.binds[name]
            self.steps.append(_step(fields.get(name), _bind_processor(bind.type, dialect),
                                    bind.value))

    def run(self, conn: Connection, items: Iterable[Any]) -> None:
        steps = self.steps
        if self.positional:
            params: list[Any] = [tuple([step(item) for step in steps]) for item in items]
        else:
            names = self.names
            params = [dict(zip(names, [step(item) for step in steps], strict=True))
                      for item in items]
        conn.exec_driver_sql(self.sql, params)


def _step(get: Callable[[Any], Any] | None, processor: Callable[[Any], Any] | None,
          fixed: Any) -> Callable[[Any], Any]:
    if get is None:
        value = fixed if processor is None else processor(fixed)
        return lambda _item: value
    if processor is None:
        return get
    return lambda item: processor(get(item))


_encode_json = json.JSONEncoder().encode
"""json.dumps with its defaults, which is what SQLAlchemy's JSON type serializes with unless
the engine is given another serializer: the same encoder, called without dumps' checks."""


def _json_text(value: Any) -> str:
    return "null" if value is None else _encode_json(value)


def _bind_processor(kind: Any, dialect: Dialect) -> Callable[[Any], Any] | None:
    """The type's own bind processor; for SQLite's JSON columns (text, json.dumps, a Python
    None as JSON null) the same conversion without its three calls per value."""
    impl = kind.dialect_impl(dialect)
    if (dialect.name == "sqlite" and isinstance(impl, sa.JSON) and not impl.none_as_null
            and getattr(dialect, "_json_serializer", None) is None
            and impl._str_impl.bind_processor(dialect) is None):
        return _json_text
    processor: Callable[[Any], Any] | None = impl.bind_processor(dialect)
    return processor


def _mapping(get: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A JSON column's value as a dict (a Mapping a row holds may be any mapping)."""
    return lambda item: None if (value := get(item)) is None else dict(value)


_EVENT_FIELDS: dict[str, Callable[[Any], Any]] = {
    name: attrgetter(name) for name in ("job_id", "seq", "type", "at", "version", "worker")}
_EVENT_FIELDS["data"] = _mapping(attrgetter("data"))

_JOB_INSERT_FIELDS: dict[str, Callable[[Any], Any]] = {
    name: attrgetter(name) for name in _JOB_FIELDS}
_JOB_INSERT_FIELDS["state"] = lambda job: job.state.value
for _name in ("pipeline", "run", "details", "pending"):
    _JOB_INSERT_FIELDS[_name] = _mapping(attrgetter(_name))

_JOB_UPDATE_FIELDS: dict[str, Callable[[Any], Any]] = {
    f"b_{name}": _JOB_INSERT_FIELDS[name] for name in [*_CHANGING_FIELDS, "job_id"]}


class _RecentRows:
    """The last `size` rows committed through one store, by job id; thread-safe.

    A row is the fold of its job's events up to its last_seq, so a row held here at the
    last_seq a claim reads is the row in the table (leases are not part of a row): the claim
    need not read and decode it again. Any other writer (another worker, `rebuild`) moves
    last_seq or writes the same fold, so a stale row is never taken for a current one.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._rows: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, changes: Sequence[Change]) -> None:
        with self._lock:
            rows = self._rows
            for change in changes:
                if change.job.final:
                    # Never claimed again: not kept. Kept, a finished job's row (its pipeline
                    # context with it) stayed until 4,096 newer ones pushed it out, and the
                    # worker's RSS grew for as long as the cache took to fill (10 MB in ten
                    # minutes of the steady benchmark).
                    rows.pop(change.job.job_id, None)
                    continue
                rows[change.job.job_id] = change.job
                rows.move_to_end(change.job.job_id)
            while len(rows) > self.size:
                rows.popitem(last=False)

    def known(self, changes: Sequence[Change]) -> Mapping[str, Job]:
        """The rows held, with this transaction's own `changes` over them. A view, not a copy
        (copying thousands of rows for each claim cost more than it saved): a look-up while
        another thread commits sees the row before or after, and either is checked against
        the last_seq the claim read."""
        return _Known({c.job.job_id: c.job for c in changes}, self._rows)


class _Known(Mapping[str, Job]):
    """Rows by job id: a transaction's own first, then those held (read without the lock:
    one dictionary look-up at a time, each atomic, so a row evicted meanwhile is just
    missing, and read back by the claim)."""

    def __init__(self, own: dict[str, Job], held: Mapping[str, Job]) -> None:
        self._own = own
        self._held = held

    def __getitem__(self, job_id: str) -> Job:
        job = self._own.get(job_id)
        if job is None:
            job = self._held.get(job_id)
        if job is None:
            raise KeyError(job_id)
        return job

    def __iter__(self) -> Iterator[str]:
        return iter({**self._held, **self._own})

    def __len__(self) -> int:
        return len({**self._held, **self._own})

    def __bool__(self) -> bool:
        return True


SHAPES = 512
"""Compiled statement shapes a store keeps (engine.store.sql.EventStore._shaped)."""


class _Shaped:
    """A statement compiled once whose values are named bind parameters, run with values
    given by name on each call: the SQL and the values (through their types' bind processors)
    that SQLAlchemy would send for it, without building, caching and compiling it again."""

    def __init__(self, statement: Any, dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        self.sql = str(compiled)
        processors = compiled._bind_processors
        self._order: tuple[str, ...] | None = (
            tuple(compiled.positiontup or ()) if compiled.positional else None)
        self._names = tuple(compiled.binds)
        self._processors = {name: processors[name] for name in self._names
                            if name in processors}
        self._fixed = {name: value for name, value in compiled.params.items()
                       if value is not None}
        """Values the statement carries itself (an OFFSET 0, say), used unless given."""

    def run(self, conn: Connection, values: Mapping[str, Any]) -> Any:
        processors, fixed = self._processors, self._fixed

        def value(name: str) -> Any:
            given = values[name] if name in values else fixed[name]
            processor = processors.get(name)
            return given if processor is None else processor(given)

        if self._order is not None:
            return conn.exec_driver_sql(self.sql, tuple(value(n) for n in self._order))
        return conn.exec_driver_sql(self.sql, {n: value(n) for n in self._names})


def _revision_in(conn: Connection) -> str | None:
    """The revision, read inside a transaction (on PostgreSQL a failed query would end it)."""
    if not sa.inspect(conn).has_table("alembic_version"):
        return None
    value = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
    return None if value is None else str(value)


def _known(revision: str | None) -> None:
    """Refuse a database migrated by a newer cpworker: this code would misread its tables."""
    if revision is not None and revision not in REVISIONS:
        raise StoreFailure(
            f"the state database is at schema {revision}, newer than this cpworker "
            f"({HEAD_REVISION})",
            fix="upgrade cpworker, or point --db at another database",
        )


__all__ = ["EVENT_SCHEMA_VERSION", "HEAD_REVISION", "MIGRATION_LOCK_KEY", "REVISIONS", "Change",
           "Claim", "ClaimRequest", "EventStore", "worker_id"]
