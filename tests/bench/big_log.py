"""Issue 14.4, a big log stays fast: claims, resume, disk and prune with a million finished jobs.

Two state databases with the same jobs in flight (written through the store, as
engine_bench.prepare_in_flight writes them); the big one also holds `finished` finished jobs
of about seven events each. A finished job is a clone of one real job, run through the worker
with the in-process stand-in: its events and its row as the engine wrote them, with a new id
and new times, written with sqlite3's executemany in large transactions (the engine would
take hours for a million jobs; the bytes are the same). The rows compare the big log with the
empty one: the claim's p99, the resume after a kill -9, then the disk a finished job takes and
the speed of the real prune.

    python -m tests.bench.big_log claim SAMPLES LIMIT DB...  -> one JSON line
    python -m tests.bench.big_log prune DB BEFORE SECONDS    -> one JSON line
    python -m tests.bench.big_log delete DB JOBS BATCH       -> one JSON line

Each measurement runs in a child process of its own, so the parent's memory and caches
(it built the databases) do not count. Nothing here asserts a speed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine import InProgress, JobContext, RunDetails
from engine.outcomes import ActionOutcome
from engine.store import open_store
from engine.store.sql import ClaimRequest
from engine.worker import Settings, Worker
from tests.bench import engine_bench
from tests.bench.engine_bench import ROOT, prepare_in_flight
from tests.bench.standin import InProcessCodePipeline, InstantAction
from tests.bench.table import Row


@dataclass(frozen=True)
class Sizes:
    finished: int
    in_flight: int
    runs: int
    claim_samples: int
    prune_seconds: float


FULL = Sizes(finished=1_000_000, in_flight=100_000, runs=3, claim_samples=1000,
             prune_seconds=30.0)
SMOKE = Sizes(finished=2000, in_flight=300, runs=1, claim_samples=50, prune_seconds=2.0)

IN_FLIGHT_AT = 1_800_000_000.0
"""When prepare_in_flight's jobs were written; the finished ones ended in the 90 days before."""
FINISHED_SPAN = 90 * 86400.0
PRUNE_NOW = IN_FLIGHT_AT
PRUNE_OLDER_THAN = 30 * 86400.0
"""prune's --finished-before: two thirds of the finished jobs are old enough."""
PAST = 946684800.0
"""2000-01-01: a due time every job has reached."""
CLONED_WORKER = "bench-host:1:cloned"
"""The `worker` of cloned events: pid 1, never a benchmark child's."""


# --- the template: one real job ---------------------------------------------------------------


class CheckedOnceAction(InstantAction):
    """Submits, finds the run still going at its first check, done at the second: the seven
    events of a short job (acquired ... checked, run_succeeded, result_reported)."""

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def check(self, job: JobContext) -> ActionOutcome:
        if job.job_id in self.seen:
            return super().check(job)
        self.seen.add(job.job_id)
        return InProgress(RunDetails(f"run-{job.job_id}", "running", 50), check_in=0.0)


@dataclass(frozen=True)
class Template:
    """One finished job as the engine stored it, ready to be cloned by text substitution."""

    job_id: str
    events: list[tuple[Any, ...]]
    """Rows of `events` in column order, with {id} and {t<k>} placeholders in the JSON."""
    event_columns: list[str]
    job: tuple[Any, ...]
    job_columns: list[str]
    times: list[float]
    """The instants that appear in the texts, as offsets from the job's creation."""
    created_at: float


_INSTANT = re.compile(r"\d{10}\.\d+")


def real_job(tmp: Path) -> Template:
    """Run one job through the worker (in-process stand-in) and keep what it wrote."""
    directory = Path(tempfile.mkdtemp(prefix="big-log-template-", dir=tmp))
    try:
        store = open_store(f"sqlite:///{directory / 'state.db'}")
        codepipeline = InProcessCodePipeline(1)
        Worker(store, codepipeline, {"instant": CheckedOnceAction()},
               Settings(report_progress=False)).run(until_idle=True)
        store.close()
        with sqlite3.connect(directory / "state.db") as conn:
            conn.row_factory = sqlite3.Row
            job = conn.execute("SELECT * FROM jobs").fetchone()
            events = conn.execute("SELECT * FROM events ORDER BY seq").fetchall()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    if job is None or job["state"] != "succeeded":
        raise AssertionError(f"the template job did not succeed: {job and dict(job)}")
    created = float(job["created_at"])
    times: list[float] = []

    def placeholders(text: Any) -> Any:
        if not isinstance(text, str):
            return text
        text = text.replace("{", "{{").replace("}", "}}").replace(job["job_id"], "{id}")

        def instant(found: re.Match[str]) -> str:
            times.append(float(found.group(0)) - created)
            return f"{{t{len(times) - 1}}}"
        return _INSTANT.sub(instant, text)

    event_rows = [tuple(placeholders(value) for value in row) for row in events]
    job_row = tuple(placeholders(value) for value in job)
    return Template(job["job_id"], event_rows, list(events[0].keys()), job_row,
                    list(job.keys()), times, created)


def finished_id(n: int, finished: int, in_flight: int) -> str:
    """36 characters like a CodePipeline job id, sorting among the jobs in flight (job-NNNNNNN)
    as random ids would: their rows share pages, as they do in a real log."""
    slot = n * max(in_flight, 1) // max(finished, 1)
    return f"job-{slot:07d}-{n:024x}"


def add_finished(db: Path, template: Template, finished: int, in_flight: int,
                 say: Callable[[str], None], batch: int = 50_000) -> None:
    """Write `finished` clones of the template, oldest first, in transactions of `batch` jobs."""
    event_columns = template.event_columns
    at = event_columns.index("at")
    worker = event_columns.index("worker")
    job_columns = template.job_columns
    time_columns = [job_columns.index(c) for c in
                    ("created_at", "updated_at", "run_started_at", "armed_until", "intended_at")
                    if c in job_columns]
    job_offsets = {k: float(template.job[k]) - template.created_at for k in time_columns
                   if template.job[k] is not None}
    event_offsets = [float(row[at]) - template.created_at for row in template.events]
    insert_events = (f"INSERT INTO events ({', '.join(event_columns)}) "
                     f"VALUES ({', '.join('?' for _ in event_columns)})")
    insert_jobs = (f"INSERT INTO jobs ({', '.join(job_columns)}) "
                   f"VALUES ({', '.join('?' for _ in job_columns)})")
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("PRAGMA cache_size = -262144")
    try:
        for start in range(0, finished, batch):
            event_rows: list[tuple[Any, ...]] = []
            job_rows: list[tuple[Any, ...]] = []
            for n in range(start, min(finished, start + batch)):
                job_id = finished_id(n, finished, in_flight)
                created = IN_FLIGHT_AT - FINISHED_SPAN - 86400.0 + n * FINISHED_SPAN / finished
                values = {"id": job_id, **{f"t{k}": repr(created + offset)
                                           for k, offset in enumerate(template.times)}}
                for row, offset in zip(template.events, event_offsets, strict=True):
                    cloned = [v.format(**values) if isinstance(v, str) else v for v in row]
                    cloned[at] = created + offset
                    cloned[worker] = CLONED_WORKER
                    event_rows.append(tuple(cloned))
                job = [v.format(**values) if isinstance(v, str) else v for v in template.job]
                for k, offset in job_offsets.items():
                    job[k] = created + offset
                job_rows.append(tuple(job))
            conn.execute("BEGIN")
            conn.executemany(insert_events, event_rows)
            conn.executemany(insert_jobs, job_rows)
            conn.execute("COMMIT")
            if (start // batch) % 5 == 4:
                say(f"  {start + len(job_rows):,} finished jobs written")
    finally:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()


def checkpointed_size(db: Path) -> int:
    """The file's size once the WAL is folded into it and truncated (no VACUUM)."""
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return db.stat().st_size


def json_bytes(template: Template) -> int:
    """The baseline for the disk: the job's events and its row as JSON lines, nothing else."""
    values = {"id": finished_id(0, 1, 1), **{f"t{k}": repr(IN_FLIGHT_AT + offset)
                                              for k, offset in enumerate(template.times)}}

    def line(columns: list[str], row: tuple[Any, ...]) -> int:
        record = {}
        for name, value in zip(columns, row, strict=True):
            if isinstance(value, str):
                value = value.format(**values)
                if value.startswith(("{", "[")):
                    value = json.loads(value)
            record[name] = value
        return len(json.dumps(record, separators=(",", ":")).encode()) + 1

    return (sum(line(template.event_columns, row) for row in template.events)
            + line(template.job_columns, template.job))


# --- child processes --------------------------------------------------------------------------


def child(*args: str, timeout: float = 1800) -> dict[str, Any]:
    return engine_bench.child(*args, timeout=timeout, module="tests.bench.big_log")


def claim_child(samples: int, limit: int, *dbs: str) -> None:
    """Time the scheduler's claim (EventStore.commit with no changes and a ClaimRequest, as
    Scheduler.run_round makes it) `samples` times on each database while every job in flight
    is due, one claim on each in turn: a burst of load on the shared machine (the p99 is its
    tenth worst claim) then falls on every database alike.

    After each timed claim the claimed jobs are moved, untimed, behind the others, still due
    and with no lease, as if their check had been committed: the next claim finds the same
    number of due jobs at the front of the index, round after round."""
    stores = [open_store(f"sqlite:///{db}") for db in dbs]
    for store in stores:
        with store.engine.begin() as conn:
            conn.exec_driver_sql(
                "UPDATE jobs SET next_due_at = ? + (rowid % 100000), lease_owner = NULL, "
                "lease_expires_at = NULL WHERE next_due_at IS NOT NULL", (PAST,))
    behind = PAST + 100_000.0
    owner = "bench-host:2:claims"
    seconds: list[list[float]] = [[] for _ in stores]
    for n in range(samples + 20):  # the first 20 warm the statements and the page cache
        for store, taken in zip(stores, seconds, strict=True):
            request = ClaimRequest(time.time(), limit, owner, 300.0, (), ["instant"], {})
            started = time.perf_counter()
            claimed = store.commit([], claim=request)
            elapsed = time.perf_counter() - started
            if len(claimed) != limit:
                raise AssertionError(f"claim {n} found {len(claimed)} due jobs, not {limit}")
            if n >= 20:
                taken.append(elapsed)
            with store.engine.begin() as conn:
                conn.exec_driver_sql(
                    "UPDATE jobs SET next_due_at = ?, lease_owner = NULL, "
                    "lease_expires_at = NULL WHERE job_id = ?",
                    [(behind + k, job.job_id) for k, job in enumerate(claimed)])
        behind += limit
    for store in stores:
        store.close()
    found = {}
    for db, taken in zip(dbs, seconds, strict=True):
        ms = sorted(s * 1000 for s in taken)
        p99 = statistics.quantiles(ms, n=100, method="inclusive")[98]
        found[db] = {"samples": len(ms), "p99_ms": p99, "p50_ms": statistics.median(ms),
                     "max_ms": ms[-1]}
    print(json.dumps(found))


def prune_child(db: str, before: float, budget: float) -> None:
    """engine.maintenance.prune's loop (prune_batch, 200 executions a batch, its default) for
    at most `budget` seconds: a whole prune of a million jobs takes longer than a benchmark."""
    from engine.store.upkeep import Removed, prune_batch

    store = open_store(f"sqlite:///{db}")
    total, batches = Removed(), 0
    started = time.perf_counter()
    while time.perf_counter() - started < budget:
        removed = prune_batch(store, before, 200)
        if not removed.executions:
            break
        total, batches = total + removed, batches + 1
    elapsed = time.perf_counter() - started
    store.close()
    print(json.dumps({"jobs": total.jobs, "events": total.events, "batches": batches,
                      "seconds": elapsed, "jobs_per_second": total.jobs / elapsed}))


def delete_child(db: str, jobs: int, batch: int) -> None:
    """The baseline: the oldest `jobs` finished jobs' events and rows removed by key, `batch`
    jobs per transaction, with nothing to choose (the ids are known in advance)."""
    store = open_store(f"sqlite:///{db}")
    with store.engine.connect() as reading:
        ids = [row[0] for row in reading.exec_driver_sql(
            "SELECT job_id FROM jobs WHERE next_due_at IS NULL ORDER BY updated_at LIMIT ?",
            (jobs,))]
    store.close()
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA synchronous = FULL")  # the store's durability
    started = time.perf_counter()
    for start in range(0, len(ids), batch):
        chunk = ids[start:start + batch]
        marks = ", ".join("?" for _ in chunk)
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(f"DELETE FROM events WHERE job_id IN ({marks})", chunk)
        conn.execute(f"DELETE FROM jobs WHERE job_id IN ({marks})", chunk)
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    print(json.dumps({"jobs": len(ids), "seconds": elapsed,
                      "jobs_per_second": len(ids) / elapsed if elapsed else 0.0}))


# --- measurements from the parent -------------------------------------------------------------


@contextmanager
def copy_of(db: Path, prefix: str) -> Iterator[Path]:
    work = db.with_name(f"{prefix}-{os.getpid()}-{time.monotonic_ns()}.db")
    shutil.copyfile(db, work)
    try:
        yield work
    finally:
        for leftover in work.parent.glob(work.name + "*"):
            leftover.unlink()


def claims(samples: int, limit: int, *dbs: Path) -> dict[str, Any]:
    """The claim child's figures by database, on the databases themselves: it makes every job
    in flight due again first, and leaves no lease behind (no copy of a 3 GB file needed)."""
    return child("claim", str(samples), str(limit), *map(str, dbs))


def alternately(runs: int, measure: Callable[[Path], float], empty: Path,
                big: Path) -> tuple[float, float]:
    """Medians of `runs` measurements of each database, taken in turn (empty, big, empty...),
    so that a burst of load on the shared machine falls on both alike."""
    on_empty, on_big = [], []
    for _ in range(runs):
        on_empty.append(measure(empty))
        on_big.append(measure(big))
    return statistics.median(on_empty), statistics.median(on_big)


def resume_seconds(db: Path) -> float:
    """engine_bench.resume_seconds, but seeing the first advanced job through the due index.

    engine_bench looks for the new worker's first event with `worker LIKE '%:pid:%'`, a scan
    of every event: seconds over seven million, which the measurement would include. Here the
    first advanced job is the first whose next_due_at moved past the instant every job was
    made due at (the child's action checks again a day later), found through the partial
    index in a moment whatever the log holds. Otherwise the same: a worker started, killed
    with SIGKILL once it advanced a job, every job due again, a worker started and timed to
    its first advanced job."""
    with copy_of(db, "resume") as work:
        due_again = "UPDATE jobs SET next_due_at = ? WHERE next_due_at IS NOT NULL"
        with sqlite3.connect(work) as conn:
            conn.execute(due_again, (PAST,))
        command = [sys.executable, "-m", "tests.bench.children", "work", str(work)]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        first = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        try:
            _wait_for_an_advanced_job(work, timeout=300)
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(30)
        with sqlite3.connect(work) as conn:
            conn.execute(due_again, (PAST,))
        started = time.perf_counter()
        second = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        try:
            _wait_for_an_advanced_job(work, timeout=300)
            return time.perf_counter() - started
        finally:
            second.send_signal(signal.SIGKILL)
            second.wait(30)


def _wait_for_an_advanced_job(db: Path, timeout: float) -> None:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        try:
            with sqlite3.connect(db, timeout=5) as conn:
                found = conn.execute("SELECT 1 FROM jobs WHERE next_due_at > ? LIMIT 1",
                                     (PAST + 1,)).fetchone()
            if found:
                return
        except sqlite3.OperationalError:
            pass
        time.sleep(0.002)
    raise AssertionError(f"no job was advanced within {timeout:g} s")


def rows(smoke: bool, tmp: Path, say: Callable[[str], None]) -> list[Row]:
    """The big-log rows: claim p99 and resume against the same jobs in flight with an empty
    log, the disk a finished job takes, and prune's speed against plain deletes."""
    sizes = SMOKE if smoke else FULL
    directory = Path(tempfile.mkdtemp(prefix="big-log-", dir=tmp))
    try:
        return _rows(sizes, directory, say)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@dataclass(frozen=True)
class Built:
    empty: Path
    """The jobs in flight alone."""
    big: Path
    """The same, and the finished jobs."""
    template: Template
    seconds: float


def build(sizes: Sizes, directory: Path, say: Callable[[str], None]) -> Built:
    """The two databases, in `directory`."""
    empty, big = directory / "empty.db", directory / "big.db"
    say(f"big log: {sizes.in_flight:,} jobs in flight, then {sizes.finished:,} finished ...")
    started = time.perf_counter()
    prepare_in_flight(empty, sizes.in_flight)
    checkpointed_size(empty)
    say(f"  {sizes.in_flight:,} jobs in flight written in {time.perf_counter() - started:.0f} s")
    shutil.copyfile(empty, big)
    template = real_job(directory)
    add_finished(big, template, sizes.finished, sizes.in_flight, say)
    return Built(empty, big, template, time.perf_counter() - started)


def _rows(sizes: Sizes, directory: Path, say: Callable[[str], None]) -> list[Row]:
    built = build(sizes, directory, say)
    return measure(sizes, built, say)


def measure(sizes: Sizes, built: Built, say: Callable[[str], None]) -> list[Row]:
    n = sizes.runs
    empty, big, template = built.empty, built.big, built.template
    empty_bytes, big_bytes = checkpointed_size(empty), checkpointed_size(big)
    events = sizes.finished * len(template.events)
    say(f"  built in {built.seconds:.0f} s: {big_bytes / 1e6:,.0f} MB, "
        f"{empty_bytes / 1e6:,.0f} MB of it the jobs in flight")
    limit = Settings().effect_threads * Settings().claim_depth
    shape = f"{sizes.in_flight:,} in flight"
    log = f"{sizes.finished:,} finished jobs ({events:,} events)"

    say("big log: claim p99 ...")

    p99s: dict[Path, list[float]] = {empty: [], big: []}
    for _ in range(n):
        found = claims(sizes.claim_samples, limit, empty, big)
        for db, figures in p99s.items():
            got = found[str(db)]
            figures.append(float(got["p99_ms"]))
            say(f"  {db.stem}: p99 {got['p99_ms']:.2f} ms, p50 {got['p50_ms']:.2f} ms, "
                f"max {got['max_ms']:.2f} ms")
    claim_empty, claim_big = statistics.median(p99s[empty]), statistics.median(p99s[big])
    claim = Row(f"big log: claim p99 ({limit} jobs, {sizes.claim_samples:,} claims), {shape} "
                f"+ {log}", claim_big, "ms", f"the same, {shape}, no finished jobs",
                claim_empty, False, "<= 1.2x the empty log")
    claim.met = claim_big <= 1.2 * claim_empty

    say("big log: resume ...")

    def resume(db: Path) -> float:
        seconds = resume_seconds(db)
        say(f"  {db.stem}: {seconds:.3f} s")
        return seconds

    resume_empty, resume_big = alternately(n, resume, empty, big)
    restart = Row(f"big log: resume, kill -9, restart, first advanced job, {shape} + {log}",
                 resume_big, "s", f"the same, {shape}, no finished jobs", resume_empty, False,
                 "<= 1.2x the empty log")
    restart.met = resume_big <= 1.2 * resume_empty

    per_job = (big_bytes - empty_bytes) / sizes.finished
    disk = Row("big log: bytes on disk per finished job (file after a WAL checkpoint, no "
               "VACUUM)", per_job, "B", "its events and row as JSON lines",
               float(json_bytes(template)), False)

    say("big log: prune ...")
    with copy_of(big, "prune") as work:
        pruned = child("prune", str(work), str(PRUNE_NOW - PRUNE_OLDER_THAN),
                       str(sizes.prune_seconds))
    say(f"  prune removed {pruned['jobs']:,} jobs ({pruned['events']:,} events) in "
        f"{pruned['batches']} batches, {pruned['seconds']:.1f} s")
    with copy_of(big, "delete") as work:
        deleted = child("delete", str(work), str(max(1, int(pruned["jobs"]))), "200")
    prune = Row(f"big log: prune, finished jobs removed per second ({pruned['jobs']:,} "
                f"in {sizes.prune_seconds:g} s at most, batches of 200)",
                float(pruned["jobs_per_second"]), "jobs/s",
                "plain DELETE of the same jobs by id, 200 per transaction",
                float(deleted["jobs_per_second"]), True)
    return [claim, restart, disk, prune]


if __name__ == "__main__":
    if sys.argv[1] == "claim":
        claim_child(int(sys.argv[2]), int(sys.argv[3]), *sys.argv[4:])
    elif sys.argv[1] == "prune":
        prune_child(sys.argv[2], float(sys.argv[3]), float(sys.argv[4]))
    elif sys.argv[1] == "delete":
        delete_child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        raise SystemExit(__doc__)
