"""One worker process of the PostgreSQL scale-out benchmark (tests/bench/pg_bench.py).

    python -m tests.bench.pg_children ours URL KIND FIRST COUNT LEDGER LIFETIME
    python -m tests.bench.pg_children dbos URL KIND FIRST COUNT LEDGER LIFETIME CONCURRENCY POLL

KIND is `instant` (calls return at once), `io` (each call waits PAUSE seconds, as a real
action waits on its service) or `io8` (the same, 8 effect threads per worker process). The
process gets everything ready (imports, the store or DBOS
launched, the jobs of its slice FIRST .. FIRST+COUNT-1 in hand), prints `ready` and waits for a
line on stdin: the parent starts every process together that way, so start-up is not measured.

- `ours`: a cpworker Worker on the shared PostgreSQL store, fed by an in-process stand-in of
  CodePipeline that holds this process's slice of job ids; `run(until_idle=True)`, which ends
  once nothing is owed in the SHARED jobs table, whoever's it is.
- `dbos`: DBOS on the shared system database; this process enqueues its slice on the shared
  queue and runs whatever its queue thread dequeues, until the parent writes a second line
  (it sees every workflow reported in the ledgers).

A process never outlives LIFETIME seconds: the parent kills its processes when a run fails,
and this bounds one whose parent was itself killed.

Either way every submit and every report is appended to LEDGER, one line each (`S job-0000042`,
`R job-0000042`), with O_APPEND: the parent counts duplicate effects from these lines, not from
what the process says about itself. The last line on stdout is JSON: CPU seconds of this
process from the go line to the end of the work, and the perf_counter of its last report
(CLOCK_MONOTONIC, which every process on the machine shares).
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import threading
import time
from typing import Any

PAUSE = 0.05
"""Seconds each call of the `io` action waits (submit and check: 2 x PAUSE per job)."""

DBOS_QUEUE = "bench"


class Ledger:
    """Append-only lines, one os.write each on an O_APPEND descriptor: nothing buffered in the
    process, so what was done is on file even if the process dies right after."""

    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._lock = threading.Lock()
        self.last_report = 0.0

    def submitted(self, job_id: str) -> None:
        os.write(self._fd, f"S {job_id}\n".encode())

    def reported(self, job_id: str) -> None:
        os.write(self._fd, f"R {job_id}\n".encode())
        now = time.perf_counter()
        with self._lock:
            self.last_report = max(self.last_report, now)

    def close(self) -> None:
        os.close(self._fd)


IO8_THREADS = 8
"""Effect threads of a worker process (and workflows of a DBOS one) for the io8 kind."""


def threads_of(kind: str) -> int:
    """Calls one process has in the air: the default effect threads, or io8's fewer."""
    from engine import defaults

    return IO8_THREADS if kind == "io8" else defaults.EFFECT_THREADS


def job_ids(first: int, count: int) -> list[str]:
    return [f"job-{n:07d}" for n in range(first, first + count)]


def _go() -> None:
    print("ready", flush=True)
    if not sys.stdin.readline():
        raise SystemExit("the benchmark went away before the start")


def ours(url: str, kind: str, first: int, count: int, ledger: Ledger) -> dict[str, Any]:
    from engine import JobContext
    from engine.outcomes import ActionOutcome, Reported
    from engine.store import open_store
    from engine.worker import Settings, Worker
    from tests.bench.standin import InProcessCodePipeline, InstantAction

    pause = PAUSE if kind in ("io", "io8") else 0.0

    class LedgerAction(InstantAction):
        """InstantAction whose calls take `pause` (a service's answer) and whose submits are
        recorded, so a submit performed twice shows in the ledger."""

        def submit(self, job: JobContext) -> ActionOutcome:
            if pause:
                time.sleep(pause)
            ledger.submitted(job.job_id)
            return super().submit(job)

        def check(self, job: JobContext) -> ActionOutcome:
            if pause:
                time.sleep(pause)
            return super().check(job)

    class SliceCodePipeline(InProcessCodePipeline):
        """The stand-in, holding this process's slice of the job ids; reports go to the
        ledger."""

        def __init__(self) -> None:
            super().__init__(0)
            self._queue.extend(job_ids(first, count))

        def _result(self, job_id: str, outcome: str) -> Reported:
            ledger.reported(job_id)
            return super()._result(job_id, outcome)

    store = open_store(url)
    worker = Worker(store, SliceCodePipeline(), {"instant": LedgerAction()},
                    Settings(report_progress=False, effect_threads=threads_of(kind)))
    _go()
    cpu = time.process_time()
    code = worker.run(until_idle=True)
    cpu = time.process_time() - cpu
    store.close()
    return {"code": code, "cpu": cpu, "last_report": ledger.last_report}


def dbos(url: str, kind: str, first: int, count: int, ledger: Ledger, concurrency: int,
         poll: float) -> dict[str, Any]:
    # Any: DBOS is in the bench extra only, and its decorators are untyped for mypy anyway.
    DBOS: Any = importlib.import_module("dbos").DBOS

    pause = PAUSE if kind in ("io", "io8") else 0.0

    # Four steps, as cpworker's four calls per job: acknowledge, submit, check, report.
    # (Registered by calling the decorators: mypy --strict refuses untyped decorator syntax.)
    def acknowledge(job_id: str) -> None:
        pass

    def submit(job_id: str) -> None:
        if pause:
            time.sleep(pause)
        ledger.submitted(job_id)

    def check(job_id: str) -> None:
        if pause:
            time.sleep(pause)

    def report(job_id: str) -> None:
        ledger.reported(job_id)

    steps = [DBOS.step()(fn) for fn in (acknowledge, submit, check, report)]

    def job(job_id: str) -> None:
        for step in steps:
            step(job_id)

    workflow = DBOS.workflow()(job)

    DBOS(config={
        "name": "cpworker-bench-pg",
        "system_database_url": url,
        "log_level": "WARNING",
        # Each process is its own executor: with the default ("local") for all of them, a
        # launch would recover the others' pending workflows as its own.
        "executor_id": f"bench-{os.getpid()}",
    })
    try:
        DBOS.launch()
        # Every process registers the same configuration; the queue thread picks it up.
        DBOS.register_queue(DBOS_QUEUE, worker_concurrency=concurrency,
                            polling_interval_sec=poll)
        _await_queue_thread()
        ids = job_ids(first, count)
        _go()
        cpu = time.process_time()
        for job_id in ids:
            DBOS.enqueue_workflow(DBOS_QUEUE, workflow, job_id)
        # Runs what the queue thread dequeues (any process's) until the parent says all is done.
        if not sys.stdin.readline():
            raise SystemExit("the benchmark went away before the end")
        cpu = time.process_time() - cpu
    finally:
        DBOS.destroy()
    return {"code": 0, "cpu": cpu, "last_report": ledger.last_report}


def _await_queue_thread(timeout: float = 30.0) -> None:
    """Until DBOS's queue manager has started the thread that dequeues our queue: it looks
    for new queues once a second, and a run started before would wait up to that second."""
    deadline = time.perf_counter() + timeout
    name = f"queue-worker-{DBOS_QUEUE}"
    while not any(thread.name == name for thread in threading.enumerate()):
        if time.perf_counter() > deadline:
            raise SystemExit(f"DBOS started no {name} thread within {timeout:g} s")
        time.sleep(0.01)


def main(argv: list[str]) -> None:
    mode, url, kind, first, count, path, lifetime = argv[:7]
    watchdog = threading.Timer(float(lifetime), os._exit, (3,))
    watchdog.daemon = True
    watchdog.start()
    if kind not in ("instant", "io", "io8"):
        raise SystemExit(f"unknown action kind {kind!r}")
    ledger = Ledger(path)
    try:
        if mode == "ours":
            result = ours(url, kind, int(first), int(count), ledger)
        elif mode == "dbos":
            result = dbos(url, kind, int(first), int(count), ledger, int(argv[7]),
                          float(argv[8]))
        else:
            raise SystemExit(f"unknown mode {mode!r}")
    finally:
        ledger.close()
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
