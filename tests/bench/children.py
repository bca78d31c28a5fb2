"""Benchmark work that must run in a process of its own (its memory, its start-up, its death).

    python -m tests.bench.children scale DB JOBS_DUE RATE   -> one JSON line
    python -m tests.bench.children work DB                  -> works until killed
"""

from __future__ import annotations

import json
import statistics
import sys
import threading
import time
from pathlib import Path

from engine import InProgress, JobContext, RunDetails
from engine.outcomes import ActionOutcome
from engine.store import open_store
from engine.worker import Settings, Worker
from tests.bench.standin import InProcessCodePipeline, InstantAction


class WaitingAction(InstantAction):
    """Each check finds the external run still going and looks again a day later."""

    def __init__(self) -> None:
        self.checked: dict[str, float] = {}

    def check(self, job: JobContext) -> ActionOutcome:
        self.checked.setdefault(job.job_id, time.time())
        return InProgress(RunDetails(f"run-{job.job_id}", "running"), check_in=86400.0)


def memory_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def timer_lateness(count: int, rate: float) -> list[float]:
    """The baseline: how late a bare Python timer loop wakes on this machine, same rate."""
    wake = threading.Event()
    start = time.time() + 0.05
    late = []
    for n in range(count):
        target = start + n / rate
        wake.wait(max(0.0, target - time.time()))
        late.append(time.time() - target)
    return late


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98] if len(values) >= 2 else values[0]


def scale(db: str, jobs_due: int, rate: float) -> None:
    store = open_store(f"sqlite:///{db}")
    before_kb = memory_kb("VmRSS")
    baseline = timer_lateness(min(jobs_due, int(rate * 2)), rate)
    start = time.time() + 1.0
    due = {f"job-{n:07d}": start + n / rate for n in range(jobs_due)}
    with store.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE jobs SET next_due_at = ? WHERE job_id = ?",
                             [(at, job_id) for job_id, at in due.items()])
    action = WaitingAction()
    worker = Worker(store, InProcessCodePipeline(0), {"instant": action},
                    Settings(report_progress=False))
    runner = threading.Thread(target=worker.run, daemon=True)
    runner.start()
    deadline = start + jobs_due / rate + 60
    while len(action.checked) < jobs_due and time.time() < deadline:
        time.sleep(0.05)
    worker.stop()
    runner.join(30)
    late = [action.checked[j] - at for j, at in due.items() if j in action.checked]
    print(json.dumps({
        "in_flight": store.count_active(), "checked": len(late), "jobs_due": jobs_due,
        "rss_mb": memory_kb("VmHWM") / 1024, "baseline_rss_mb": before_kb / 1024,
        "p99_ms": p99(late) * 1000, "baseline_p99_ms": p99(baseline) * 1000,
    }))


def work(db: str) -> None:
    store = open_store(f"sqlite:///{db}")
    Worker(store, InProcessCodePipeline(0), {"instant": WaitingAction()},
           Settings(report_progress=False)).run()


if __name__ == "__main__":
    if sys.argv[1] == "scale":
        scale(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
    elif sys.argv[1] == "work":
        work(sys.argv[2])
    else:
        raise SystemExit(__doc__)
