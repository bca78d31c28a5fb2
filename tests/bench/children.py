"""Benchmark work that must run in a process of its own (its memory, its start-up, its death).

    python -m tests.bench.children scale DB JOBS_DUE RATE   -> one JSON line
    python -m tests.bench.children work DB                  -> works until killed
    python -m tests.bench.children s3                       -> moto's server: its URL as one
                                                               JSON line, until stdin closes
    python -m tests.bench.children upload MODE URL BUCKET KMS_KEY PATH  -> one JSON line
"""

from __future__ import annotations

import gc
import json
import logging
import os
import resource
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


S3_LIFETIME = 3600.0
"""Seconds the S3 child lives at most, should its parent never close its stdin."""


def s3_server() -> None:
    """moto's server on 127.0.0.1, in a process of its own so that what S3 holds (a whole
    gigabyte when a multipart upload completes) never counts in the uploading process."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # not a line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    print(json.dumps({"url": f"http://{host}:{port}"}), flush=True)
    bound = threading.Timer(S3_LIFETIME, os._exit, (3,))
    bound.daemon = True
    bound.start()
    sys.stdin.read()  # the parent closes it (or dies)
    server.stop()


def reset_peak_rss() -> bool:
    """Make the kernel's peak RSS (VmHWM, and so ru_maxrss) the current RSS, so the peak read
    afterwards is the measured step's alone, not an earlier one's (Linux 4.0+)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def upload(mode: str, endpoint: str, bucket: str, kms_key: str, path: str) -> None:
    """One upload of `path` in this process, after a warm-up (imports, the client, a small
    upload of the same kind); prints the RSS just before it and the peak during it.

    Modes: `cpworker` (JobArtifacts.upload, archive=False), `cpworker-zip` (archive=True of
    the directory `path`), `boto3` (upload_file with boto3's default TransferConfig)."""
    source = Path(path)
    warm = source.with_name(source.name + ".warm")
    if mode == "cpworker-zip":
        warm.mkdir()
        (warm / "warm.bin").write_bytes(os.urandom(64 * 1024))
    else:
        warm.write_bytes(os.urandom(64 * 1024))
    put: Callable[[Path, str], Any]
    if mode == "boto3":
        import boto3

        client = boto3.session.Session().client(
            "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
            aws_secret_access_key="testing")
        extra = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": kms_key}

        def put(file: Path, name: str) -> Any:
            return client.upload_file(str(file), bucket, f"bench/{name}", ExtraArgs=extra)
    elif mode in ("cpworker", "cpworker-zip"):
        from engine.action import ArtifactCredentials
        from engine.artifacts import JobArtifacts, S3Settings
        from engine.clock import SystemClock

        artifacts = JobArtifacts(
            job_id="bench-upload", execution_id="bench-upload", inputs=(),
            outputs=tuple({"name": n, "bucket": bucket, "key": f"bench/{n}"}
                          for n in ("warm", "out")),
            encryption_key=kms_key, credentials=ArtifactCredentials("testing", "testing", "t"),
            renew=lambda: None, ledger=None, s3=S3Settings(endpoint, "us-east-1"),
            clock=SystemClock())

        def put(file: Path, name: str) -> Any:
            return artifacts.upload(name, file, archive=mode == "cpworker-zip")
    else:
        raise SystemExit(f"unknown upload mode {mode!r}")
    try:
        put(warm, "warm")
    finally:
        if warm.is_dir():
            (warm / "warm.bin").unlink()
            warm.rmdir()
        else:
            warm.unlink()
    gc.collect()
    before_kb = memory_kb("VmRSS")
    reset = reset_peak_rss()
    started = time.perf_counter()
    put(source, "out")
    seconds = time.perf_counter() - started
    # ru_maxrss (KiB on Linux) also holds the peak of the memory this process was spawned
    # from: subprocess starts children with vfork, and exec records the parent's peak RSS as
    # the child's. Once reset, VmHWM is this process's own peak since the reset.
    maxrss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak_kb = memory_kb("VmHWM") if reset else maxrss_kb
    print(json.dumps({"mode": mode, "rss_before_mb": before_kb / 1024,
                      "peak_mb": peak_kb / 1024, "growth_mb": (peak_kb - before_kb) / 1024,
                      "ru_maxrss_mb": maxrss_kb / 1024, "seconds": seconds,
                      "peak_reset": reset}))


if __name__ == "__main__":
    if sys.argv[1] == "scale":
        scale(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
    elif sys.argv[1] == "work":
        work(sys.argv[2])
    elif sys.argv[1] == "s3":
        s3_server()
    elif sys.argv[1] == "upload":
        upload(*sys.argv[2:7])
    else:
        raise SystemExit(__doc__)
