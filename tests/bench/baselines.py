"""Baselines: the durable-execution libraries users know, measured on the disk cpworker runs on.

Each public function takes a scratch directory and sizes, does ONE measurement on a fresh
database file of its own (a new directory made inside ``tmp``, removed afterwards) and returns
a plain float; the runner repeats and takes medians, so the numbers can be reported as ratios
to cpworker's, measured in the same process run on the same disk.

- ``dbos_workflows_per_second``: DBOS on a SQLite system database, workflows of 4 no-op steps,
  run one after another from the calling thread. DBOS is a process-global singleton; it is
  launched and destroyed around each measurement (``DBOS.destroy()``), which works repeatedly
  in one process, so no subprocess is needed.
- ``eventsourcing_appends_per_second``: the eventsourcing library's SQLite persistence, events
  appended through ``Application.save``, several per save or one at a time.
- ``eventsourcing_rebuild_ms``: one reconstruction of an aggregate from its stored events
  (no snapshots, no aggregate cache).
- ``sqlalchemy_single_row_transactions_per_second``: raw SQLAlchemy Core, one INSERT per
  transaction, SQLite in WAL mode with ``synchronous`` NORMAL or FULL.

The libraries are imported inside the functions, so this module imports (and the SQLAlchemy
baseline runs) without DBOS or eventsourcing installed. Libraries keep their own defaults
(journal mode, ``synchronous``, pools); only what is needed to point them at a SQLite file in
``tmp`` is set.

``python -m tests.bench.baselines`` prints each with moderate sizes, median of 3.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

if TYPE_CHECKING:
    from eventsourcing.application import Application
    from eventsourcing.domain import Aggregate

__all__ = [
    "DbosRun",
    "dbos_run",
    "dbos_workflows_per_second",
    "eventsourcing_appends_per_second",
    "eventsourcing_rebuild_ms",
    "sqlalchemy_single_row_transactions_per_second",
]

DBOS_WARMUP_WORKFLOWS = 5
"""Workflows run after launch and before the clock starts (first-call costs: statement
compilation, connection checkout, the pool filling)."""

EVENTSOURCING_WARMUP_SAVES = 5
"""Aggregates created and saved before the clock starts."""

EVENTSOURCING_REBUILD_CHUNK = 100
"""Events per ``app.save`` while storing the aggregate that is then rebuilt."""

SQLALCHEMY_WARMUP_ROWS = 10
"""Single-row transactions committed before the clock starts."""

SQLITE_SYNCHRONOUS = {"OFF": 0, "NORMAL": 1, "FULL": 2, "EXTRA": 3}


@contextmanager
def _fresh_dir(tmp: Path, prefix: str) -> Iterator[Path]:
    """A new, empty directory inside ``tmp`` for one measurement; removed afterwards."""
    tmp.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=tmp))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _positive(name: str, value: int) -> None:
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")


# --- DBOS -----------------------------------------------------------------------------------

_dbos_workflow: Callable[[], None] | None = None


def _dbos_workflow_fn() -> Callable[[], None]:
    """The benchmark workflow, registered with DBOS once per process.

    DBOS keeps registrations in a process-global registry that survives ``DBOS.destroy()``
    (without ``destroy_registry``), and a second registration under the same name is refused,
    so the functions are defined on first use and reused by every later launch.
    """
    global _dbos_workflow
    if _dbos_workflow is None:
        from dbos import DBOS

        @DBOS.step()
        def step_1() -> None:
            pass

        @DBOS.step()
        def step_2() -> None:
            pass

        @DBOS.step()
        def step_3() -> None:
            pass

        @DBOS.step()
        def step_4() -> None:
            pass

        @DBOS.workflow()
        def four_noop_steps() -> None:
            step_1()
            step_2()
            step_3()
            step_4()

        _dbos_workflow = four_noop_steps
    return _dbos_workflow


@dataclass(frozen=True)
class DbosRun:
    """One timed DBOS loop: its rate and the process CPU time it cost per workflow."""

    workflows_per_second: float
    cpu_ms_per_workflow: float


def dbos_run(tmp: Path, workflows: int) -> DbosRun:
    """``dbos_workflows_per_second``, also reporting process CPU per workflow (all threads,
    DBOS's background threads included)."""
    _positive("workflows", workflows)
    import dbos._dbos as dbos_internals
    from dbos import DBOS

    workflow = _dbos_workflow_fn()
    if getattr(dbos_internals, "_dbos_global_instance", None) is not None:
        # DBOS(config=...) would hand back that instance and silently ignore our config.
        raise RuntimeError("a DBOS instance already exists in this process; destroy it first")
    with _fresh_dir(tmp, "dbos-") as workdir:
        DBOS(config={
            "name": "cpworker-bench-baseline",
            "system_database_url": f"sqlite:///{workdir / 'dbos.sqlite'}",
            # Quiet, not faster: DBOS logs nothing per workflow at INFO, only launch/shutdown.
            "log_level": "WARNING",
        })
        try:
            DBOS.launch()
            for _ in range(DBOS_WARMUP_WORKFLOWS):
                workflow()
            cpu0 = time.process_time()
            t0 = time.perf_counter()
            for _ in range(workflows):
                workflow()
            elapsed = time.perf_counter() - t0
            cpu = time.process_time() - cpu0
        finally:
            DBOS.destroy()
    return DbosRun(workflows / elapsed, cpu * 1000.0 / workflows)


def dbos_workflows_per_second(tmp: Path, workflows: int) -> float:
    """DBOS workflows of 4 no-op steps per second, on a SQLite system database in ``tmp``.

    Launches DBOS (its defaults: SQLite's rollback journal, ``synchronous`` FULL, IMMEDIATE
    transactions, 10 commits per workflow: start, then check + record for each step, then the
    result), runs ``DBOS_WARMUP_WORKFLOWS`` untimed, then times ``workflows`` run one after
    another from this thread (calling a ``@DBOS.workflow()`` runs it in the caller's thread),
    and destroys DBOS. Safe to call repeatedly in one process.
    """
    return dbos_run(tmp, workflows).workflows_per_second


# --- eventsourcing --------------------------------------------------------------------------


@dataclass(frozen=True)
class _EventsourcingKit:
    """The application and aggregate classes, defined once per process (eventsourcing caches
    every class under its topic and refuses a second class for the same topic)."""

    new_app: Callable[[Path], Application[UUID]]
    new_counter: Callable[[], Aggregate]
    trigger: Callable[[Aggregate], None]


_eventsourcing_kit: _EventsourcingKit | None = None


def _eventsourcing() -> _EventsourcingKit:
    global _eventsourcing_kit
    if _eventsourcing_kit is None:
        from eventsourcing.application import Application
        from eventsourcing.domain import Aggregate, event
        from eventsourcing.utils import Environment, EnvType

        class Counter(Aggregate):
            def __init__(self) -> None:
                self.count = 0

            @event("Triggered")
            def trigger(self) -> None:
                self.count += 1

        class BenchApp(Application[UUID]):
            name = "CpworkerBenchBaseline"

            def construct_env(self, name: str, env: EnvType | None = None) -> Environment:
                # Only what we pass: no os.environ (the base class merges it in), so a stray
                # PERSISTENCE_MODULE, cache or snapshot setting cannot change what is measured.
                return Environment(name, dict(env or {}))

        def new_app(db_file: Path) -> Application[UUID]:
            app = BenchApp(env={
                "PERSISTENCE_MODULE": "eventsourcing.sqlite",
                "SQLITE_DBNAME": str(db_file),
                "IS_SNAPSHOTTING_ENABLED": "n",
                "AGGREGATE_CACHE_MAXSIZE": "",  # empty: no aggregate cache (the default)
            })
            if app.snapshots is not None or app.repository.cache is not None:
                app.close()
                raise RuntimeError("eventsourcing baseline must run without snapshots or cache")
            return app

        def trigger(agg: Aggregate) -> None:
            if not isinstance(agg, Counter):
                raise TypeError(f"not a benchmark counter: {agg!r}")
            agg.trigger()

        _eventsourcing_kit = _EventsourcingKit(new_app, Counter, trigger)
    return _eventsourcing_kit


def eventsourcing_appends_per_second(
    tmp: Path, aggregates: int, events_per_save: int, *, events_per_aggregate: int | None = None
) -> float:
    """Events per second appended by eventsourcing's SQLite persistence through ``app.save``.

    For each of ``aggregates`` new aggregates: create it (its first event), trigger events up to
    ``events_per_save`` and save, repeatedly until it has ``events_per_aggregate`` events (by
    default ``events_per_save``: one save per aggregate). With ``events_per_save=1`` every event
    is saved on its own (create+save, then trigger+save for each further event). Returns total
    events / elapsed seconds, after ``EVENTSOURCING_WARMUP_SAVES`` untimed aggregates. The
    library's own settings are kept (WAL, SQLite's default ``synchronous``); fresh file per call.
    """
    _positive("aggregates", aggregates)
    _positive("events_per_save", events_per_save)
    per_aggregate = events_per_save if events_per_aggregate is None else events_per_aggregate
    _positive("events_per_aggregate", per_aggregate)
    kit = _eventsourcing()
    with _fresh_dir(tmp, "eventsourcing-") as workdir:
        app = kit.new_app(workdir / "events.sqlite")
        try:
            for _ in range(EVENTSOURCING_WARMUP_SAVES):
                app.save(kit.new_counter())
            t0 = time.perf_counter()
            for _ in range(aggregates):
                agg = kit.new_counter()
                pending = 1
                for _ in range(per_aggregate - 1):
                    if pending == events_per_save:
                        app.save(agg)
                        pending = 0
                    kit.trigger(agg)
                    pending += 1
                app.save(agg)
            elapsed = time.perf_counter() - t0
        finally:
            app.close()
    return aggregates * per_aggregate / elapsed


def eventsourcing_rebuild_ms(tmp: Path, events: int) -> float:
    """Milliseconds for one ``app.repository.get(id)`` of an aggregate with ``events`` events.

    The aggregate is stored first (saved every ``EVENTSOURCING_REBUILD_CHUNK`` events), one
    untimed ``get`` warms the connection and statement cache, then one ``get`` is timed:
    a full replay of the log, no snapshots, no aggregate cache. Fresh file per call.
    """
    _positive("events", events)
    kit = _eventsourcing()
    with _fresh_dir(tmp, "eventsourcing-") as workdir:
        app = kit.new_app(workdir / "events.sqlite")
        try:
            agg = kit.new_counter()
            for n in range(1, events):
                if n % EVENTSOURCING_REBUILD_CHUNK == 0:
                    app.save(agg)
                kit.trigger(agg)
            app.save(agg)
            app.repository.get(agg.id)
            t0 = time.perf_counter()
            rebuilt: Aggregate = app.repository.get(agg.id)
            elapsed = time.perf_counter() - t0
            if rebuilt.version != events:
                raise RuntimeError(f"rebuilt version {rebuilt.version}, expected {events}")
        finally:
            app.close()
    return elapsed * 1000.0


# --- SQLAlchemy -----------------------------------------------------------------------------


def sqlalchemy_single_row_transactions_per_second(
    tmp: Path, rows: int, synchronous: str
) -> float:
    """Single-row INSERT transactions per second, raw SQLAlchemy 2 Core on a SQLite file.

    WAL mode and ``PRAGMA synchronous=<synchronous>`` (NORMAL or FULL; OFF/EXTRA accepted) are
    set on every new connection; the table is ``(id INTEGER PRIMARY KEY, payload TEXT)``; each
    of ``rows`` transactions is ``with engine.begin() as conn: conn.execute(insert, row)``,
    after ``SQLALCHEMY_WARMUP_ROWS`` untimed ones. Fresh file per call; the engine is disposed.
    """
    _positive("rows", rows)
    level = synchronous.upper()
    if level not in SQLITE_SYNCHRONOUS:
        raise ValueError(f"synchronous must be one of {sorted(SQLITE_SYNCHRONOUS)}: {synchronous}")
    import sqlalchemy as sa

    table = sa.Table(
        "rows", sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("payload", sa.Text, nullable=False),
    )
    insert = table.insert()
    with _fresh_dir(tmp, "sqlalchemy-") as workdir:
        engine = sa.create_engine(f"sqlite:///{workdir / 'rows.sqlite'}")

        def on_connect(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute(f"PRAGMA synchronous={level}")
            finally:
                cursor.close()

        sa.event.listen(engine, "connect", on_connect)
        try:
            table.metadata.create_all(engine)
            with engine.connect() as conn:
                mode = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
                sync = conn.exec_driver_sql("PRAGMA synchronous").scalar()
            if str(mode).lower() != "wal" or sync != SQLITE_SYNCHRONOUS[level]:
                raise RuntimeError(f"SQLite settings not applied: journal_mode={mode}, "
                                   f"synchronous={sync}")
            for n in range(SQLALCHEMY_WARMUP_ROWS):
                with engine.begin() as conn:
                    conn.execute(insert, {"payload": f"warm-up {n:08d}"})
            t0 = time.perf_counter()
            for n in range(rows):
                with engine.begin() as conn:
                    conn.execute(insert, {"payload": f"payload {n:08d}"})
            elapsed = time.perf_counter() - t0
        finally:
            engine.dispose()
    return rows / elapsed


# --- python -m tests.bench.baselines --------------------------------------------------------


def _median_of(runs: int, measure: Callable[[], float]) -> tuple[float, list[float]]:
    values = [measure() for _ in range(runs)]
    return statistics.median(values), values


def main(runs: int = 3) -> None:
    """Print each baseline with moderate sizes, median of ``runs``, next to the issue's figures.
    """
    with tempfile.TemporaryDirectory(prefix="cpworker-baselines-") as scratch:
        tmp = Path(scratch)

        def show(label: str, unit: str, reference: str, measure: Callable[[], float]) -> None:
            median, values = _median_of(runs, measure)
            spread = ", ".join(f"{v:,.1f}" for v in values)
            print(f"{label:<48} {median:>10,.1f} {unit:<12} [{spread}]  (issue: {reference})",
                  flush=True)

        dbos_runs = [dbos_run(tmp, 500) for _ in range(runs)]
        rates = [r.workflows_per_second for r in dbos_runs]
        cpus = [r.cpu_ms_per_workflow for r in dbos_runs]
        print(f"{'DBOS, 500 workflows x 4 no-op steps':<48} {statistics.median(rates):>10,.1f} "
              f"{'workflows/s':<12} [{', '.join(f'{v:,.1f}' for v in rates)}]  (issue: 129)")
        print(f"{'  process CPU per workflow':<48} {statistics.median(cpus):>10,.1f} "
              f"{'ms':<12} [{', '.join(f'{v:,.1f}' for v in cpus)}]  (issue: about 6)",
              flush=True)
        show("eventsourcing, 2000 aggregates x 5 per save", "events/s", "16.5k",
             lambda: eventsourcing_appends_per_second(tmp, 2000, 5))
        show("eventsourcing, 2000 aggregates x 1 per save", "events/s", "5.5k",
             lambda: eventsourcing_appends_per_second(tmp, 2000, 1))
        show("eventsourcing, 400 aggregates x 5 one at a time", "events/s", "5.5k",
             lambda: eventsourcing_appends_per_second(tmp, 400, 1, events_per_aggregate=5))
        show("eventsourcing, rebuild a 1000-event aggregate", "ms", "14",
             lambda: eventsourcing_rebuild_ms(tmp, 1000))
        show("SQLAlchemy, 3000 single-row tx, WAL NORMAL", "tx/s", "12.5k",
             lambda: sqlalchemy_single_row_transactions_per_second(tmp, 3000, "NORMAL"))
        show("SQLAlchemy, 3000 single-row tx, WAL FULL", "tx/s", "5.1k",
             lambda: sqlalchemy_single_row_transactions_per_second(tmp, 3000, "FULL"))


if __name__ == "__main__":
    main()
