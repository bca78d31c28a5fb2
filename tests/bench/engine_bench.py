"""cpworker's side of the benchmarks: each function does ONE measurement and returns floats.

The runner (tests/bench/__main__.py) repeats them beside the baselines of tests/bench/baselines.py
and prints medians and ratios. Nothing here asserts a speed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from engine.clock import FakeClock
from engine.codepipeline import CodePipeline
from engine.devtools.emulator import CodePipelineEmulator, EmulatorServer
from engine.devtools.testing import codepipeline_client
from engine.intake import Intake
from engine.poller import Poller
from engine.projection import Event, Job, fold, project
from engine.secrets import SecretVault
from engine.store import Change, open_store
from engine.worker import Settings, Worker
from tests.bench.standin import InProcessCodePipeline, InstantAction

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def fresh_dir(tmp: Path, prefix: str) -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix=prefix, dir=tmp))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


# --- 1. end-to-end throughput ---------------------------------------------------------------------


def end_to_end(tmp: Path, jobs: int) -> tuple[float, float]:
    """`jobs` jobs through every state (acquired ... succeeded) with the default settings and
    durability, an instant action and an in-process CodePipeline stand-in (no HTTP): the run's
    wall seconds and its process CPU seconds (every thread)."""
    with fresh_dir(tmp, "e2e-") as directory:
        store = open_store(f"sqlite:///{directory / 'state.db'}")
        codepipeline = InProcessCodePipeline(jobs)
        # Progress reports off: the stand-in creates no continuation jobs.
        worker = Worker(store, codepipeline, {"instant": InstantAction()},
                        Settings(report_progress=False))
        started, cpu = time.perf_counter(), time.process_time()
        worker.run(until_idle=True)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        store.close()
        if len(codepipeline.results) != jobs:
            raise AssertionError(f"{len(codepipeline.results)} of {jobs} jobs were reported")
        return elapsed, cpu


def jobs_per_second(tmp: Path, jobs: int) -> float:
    """End-to-end jobs per second (end_to_end)."""
    return jobs / end_to_end(tmp, jobs)[0]


# --- 2. durable appends ---------------------------------------------------------------------------

APPEND_EVENTS: list[tuple[str, dict[str, Any]]] = [
    ("acquired", {"nonce": "n", "action": "instant", "action_type": "Test/Custom/Instant/1",
                  "execution_id": "x", "pipeline": {"pipeline_name": "bench"}}),
    ("acknowledged", {}),
    ("submit_intended", {"worker": "bench"}),
    ("run_started", {"run": {"build": 1}, "details": {"external_id": "b-1"}, "due_at": 2.0}),
    ("checked", {"due_at": 3.0}),
]


def appends_per_second(tmp: Path, jobs: int, jobs_per_commit: int = 100) -> float:
    """Events/s through EventStore.commit: 5 events per job (a job's real first five), the
    projection row written with them, `jobs_per_commit` jobs per transaction (group commit),
    default durability."""
    with fresh_dir(tmp, "appends-") as directory:
        store = open_store(f"sqlite:///{directory / 'state.db'}")
        batches: list[list[Change]] = []
        for start in range(0, jobs, jobs_per_commit):
            batch = []
            for n in range(start, min(jobs, start + jobs_per_commit)):
                job: Job | None = None
                events = []
                for seq, (kind, data) in enumerate(APPEND_EVENTS, start=1):
                    event = Event(f"job-{n:07d}", seq, kind, 1_800_000_000.0 + seq, data,
                                  worker="bench")
                    job = project(job, event)
                    events.append(event)
                assert job is not None
                batch.append(Change(events, job, new=True))
            batches.append(batch)
        started = time.perf_counter()
        for batch in batches:
            store.commit(batch)
        elapsed = time.perf_counter() - started
        store.close()
        return jobs * len(APPEND_EVENTS) / elapsed


# --- 3. replay ------------------------------------------------------------------------------------


def long_history(events: int, job_id: str = "long-job") -> list[Event]:
    """A legal history of `events` events: a run checked again and again."""
    history = [Event(job_id, seq, kind, 1_800_000_000.0 + seq, data)
               for seq, (kind, data) in enumerate(APPEND_EVENTS[:4], start=1)]
    while len(history) < events:
        seq = len(history) + 1
        history.append(Event(job_id, seq, "checked", 1_800_000_000.0 + seq,
                             {"due_at": 1_800_000_100.0 + seq, "run": {"checks": seq}}))
    return history


def fold_ms(events: int) -> float:
    """One fold of an `events`-event history held in memory into the job's row."""
    history = long_history(events)
    started = time.perf_counter()
    job = fold(history)
    elapsed = time.perf_counter() - started
    assert job is not None and job.last_seq == events
    return elapsed * 1000


def load_and_fold_ms(tmp: Path, events: int) -> float:
    """Read an `events`-event history from the SQLite store, then fold it."""
    with fresh_dir(tmp, "fold-") as directory:
        store = open_store(f"sqlite:///{directory / 'state.db'}")
        history = long_history(events)
        row = fold(history)
        assert row is not None
        store.commit([Change(history, row, new=True)])
        store.history("long-job")  # first read: statement compilation, page cache
        started = time.perf_counter()
        job = fold(store.history("long-job"))
        elapsed = time.perf_counter() - started
        store.close()
        assert job is not None and job.last_seq == events
        return elapsed * 1000


# --- 4 and 5. many jobs in flight (in child processes) --------------------------------------------


def prepare_in_flight(path: Path, jobs: int) -> None:
    """A state database holding `jobs` jobs in flight (running, waiting on external runs), written
    through the store as the engine writes them; due far in the future until a child moves them."""
    store = open_store(f"sqlite:///{path}", synchronous="OFF")
    far = 1_900_000_000.0
    events_of: list[tuple[str, dict[str, Any]]] = [
        ("acquired", {"nonce": "n", "action": "instant", "action_type": "Test/Custom/Instant/1",
                      "pipeline": {"pipeline_name": "bench"}}),
        ("acknowledged", {}),
        ("submit_intended", {"worker": "bench"}),
        ("run_started", {"run": {"run": "r"}, "details": {"external_id": "r"}, "due_at": far}),
    ]
    for start in range(0, jobs, 1000):
        batch = []
        for n in range(start, min(jobs, start + 1000)):
            job: Job | None = None
            events = []
            for seq, (kind, data) in enumerate(events_of, start=1):
                if kind == "acquired":
                    data = {**data, "execution_id": f"x-job-{n:07d}"}
                event = Event(f"job-{n:07d}", seq, kind, 1_800_000_000.0, data, worker="bench")
                job = project(job, event)
                events.append(event)
            assert job is not None
            batch.append(Change(events, job, new=True))
        store.commit(batch)
    store.close()


def child(*args: str, timeout: float = 600, module: str = "tests.bench.children"
          ) -> dict[str, Any]:
    """Run a benchmark's child process (`python -m module args...`); its last line of output
    is its JSON result."""
    done = subprocess.run([sys.executable, "-m", module, *args],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    if done.returncode != 0:
        raise AssertionError(f"bench child {args[0]} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def scale(db: Path, jobs_due: int, rate: float) -> dict[str, Any]:
    """RSS and due-time lateness of a worker over a database of jobs in flight (a child)."""
    work = db.with_name(f"scale-{os.getpid()}-{time.monotonic_ns()}.db")
    shutil.copyfile(db, work)
    try:
        return child("scale", str(work), str(jobs_due), str(rate))
    finally:
        for leftover in work.parent.glob(work.name + "*"):
            leftover.unlink()


def resume_seconds(db: Path) -> float:
    """Seconds from starting a worker, after the previous one was killed with SIGKILL, to the
    first job it advances, over a copy of `db` whose jobs are all due."""
    work = db.with_name(f"resume-{os.getpid()}-{time.monotonic_ns()}.db")
    shutil.copyfile(db, work)
    try:
        with sqlite3.connect(work) as conn:
            conn.execute("UPDATE jobs SET next_due_at = 946684800.0 WHERE next_due_at IS NOT NULL")
        command = [sys.executable, "-m", "tests.bench.children", "work", str(work)]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        first = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        try:
            _wait_for_events_by(work, first.pid, timeout=120)
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(30)
        with sqlite3.connect(work) as conn:  # due again, whatever the first one had advanced
            conn.execute("UPDATE jobs SET next_due_at = 946684800.0 WHERE next_due_at IS NOT NULL")
        started = time.perf_counter()
        second = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        try:
            _wait_for_events_by(work, second.pid, timeout=120)
            return time.perf_counter() - started
        finally:
            second.send_signal(signal.SIGKILL)
            second.wait(30)
    finally:
        for leftover in work.parent.glob(work.name + "*"):
            leftover.unlink()


def _wait_for_events_by(db: Path, pid: int, timeout: float) -> None:
    deadline = time.perf_counter() + timeout
    pattern = f"%:{pid}:%"
    while time.perf_counter() < deadline:
        try:
            with sqlite3.connect(db, timeout=5) as conn:
                found = conn.execute("SELECT 1 FROM events WHERE worker LIKE ? LIMIT 1",
                                     (pattern,)).fetchone()
            if found:
                return
        except sqlite3.OperationalError:
            pass
        time.sleep(0.002)
    raise AssertionError(f"worker {pid} advanced no job within {timeout:g} s")


# --- 6. API economy -------------------------------------------------------------------------------


def api_economy(tmp: Path, jobs: int, idle_minutes: float = 60.0) -> dict[str, float]:
    """CodePipeline calls per job against the emulator over HTTP, and polls per minute when idle
    (the worker's own poller on a fake clock, so ten idle minutes take a second)."""
    with fresh_dir(tmp, "api-") as directory:
        emulator = CodePipelineEmulator(continuation_delay=0.1, ack_timeout=10.0)
        with EmulatorServer(emulator) as server:
            client = codepipeline_client(server.url)
            client.create_custom_action_type(**InstantAction.definition().document)
            for _ in range(jobs):
                emulator.start_execution("Test/Custom/Instant/1",
                                         {"Name": "bench", "Secret": "s3cr3t-value"},
                                         action="Instant")
            store = open_store(f"sqlite:///{directory / 'state.db'}")
            worker = Worker(store, CodePipeline(client), {"instant": InstantAction()},
                            Settings(report_progress=False, poll_interval_min=0.05))
            worker.run(until_idle=True)
            calls = emulator.call_counts()
            store.close()
            per_job = sum(calls.get(k, 0) for k in (
                "AcknowledgeJob", "GetJobDetails", "PutJobSuccessResult", "PutJobFailureResult",
            )) / jobs
            polls_per_job = calls.get("PollForJobs", 0) / jobs

            clock = FakeClock()
            idle_store = open_store(f"sqlite:///{directory / 'idle.db'}")
            poller = Poller(CodePipeline(client), {"instant": InstantAction()},
                            Intake(idle_store, SecretVault(), clock), clock,
                            capacity=lambda: 1000, on_jobs=lambda: None)
            before = emulator.call_counts().get("PollForJobs", 0)
            end = clock.now() + idle_minutes * 60
            while clock.now() < end:
                clock.advance(poller.next_interval(poller.poll_once()))
            polls = emulator.call_counts().get("PollForJobs", 0) - before
            idle_store.close()
    return {"calls_per_job": per_job, "polls_per_job": polls_per_job,
            "idle_polls_per_minute": polls / idle_minutes}
