"""A minimal action whose external system is a directory, shared by every process that runs it.

Each run is a file named by the action execution id (the marker), so a resumed submission finds
its earlier run instead of starting another; every run actually started is one line in
`submissions.log`, which is how the crash tests count duplicates across killed processes.
"""

from __future__ import annotations

import fcntl
import json
import os
import uuid
from pathlib import Path
from typing import Any

from engine import Action, Cancelled, Done, Failed, FailureType, InProgress, JobContext, RunDetails
from engine.outcomes import ActionOutcome

EXPECTED_TOKEN_PREFIX = "ledger-secret-"


class LedgerAction(Action):
    name = "ledger"
    definition_package = "tests.actions"
    definition_file = "ledger.json"
    submit_grace = 0.0
    """A submission is one atomic write under a lock: it has landed or it never will."""

    def submit(self, job: JobContext) -> ActionOutcome:
        if not job.configuration["Token"].startswith(EXPECTED_TOKEN_PREFIX):
            return Failed(FailureType.PERMISSION_ERROR, "the ledger refused the token")
        ledger = Path(job.configuration["Ledger"])
        run_file = ledger / f"{job.execution_id}.json"
        with _locked(ledger):
            run = _earlier_run(ledger, job.execution_id) if job.resumed else None
            if run is None:
                run = {"run_id": f"run-{uuid.uuid4().hex[:12]}", "checks": 0, "cancelled": False}
                # The log line is the run's start, in one write: a killed worker leaves it whole.
                with open(ledger / "submissions.log", "a") as log:
                    log.write(f"{job.execution_id} {run['run_id']} {job.job_id}\n")
                _write(run_file, run)
        return InProgress(RunDetails(run["run_id"], "running", 0), {"run_id": run["run_id"]})

    def find(self, job: JobContext) -> ActionOutcome | None:
        """The run an earlier submit started, if its log line or file shows it."""
        ledger = Path(job.configuration["Ledger"])
        with _locked(ledger):
            run = _earlier_run(ledger, job.execution_id)
        if run is None:
            return None
        return InProgress(RunDetails(run["run_id"], "running", 0), {"run_id": run["run_id"]})

    def check(self, job: JobContext) -> ActionOutcome:
        ledger = Path(job.configuration["Ledger"])
        steps = int(job.configuration.get("Steps") or "2")
        with _locked(ledger):
            run_file = ledger / f"{job.execution_id}.json"
            run: dict[str, Any] = json.loads(run_file.read_text())
            run["checks"] += 1
            _write(run_file, run)
        details = RunDetails(run["run_id"], "running", min(99, 100 * run["checks"] // steps))
        if run["cancelled"]:
            return Failed(FailureType.JOB_FAILED, f"run {run['run_id']} was cancelled")
        if run["checks"] < steps:
            return InProgress(details)
        outcome = job.configuration["Outcome"]
        if outcome == "pass":
            return Done(RunDetails(run["run_id"], "passed", 100), {"RunId": run["run_id"]})
        if outcome == "fail":
            return Failed(FailureType.JOB_FAILED, f"run {run['run_id']} failed",
                          RunDetails(run["run_id"], "failed"))
        raise RuntimeError(f"the ledger broke while checking {run['run_id']}")

    def cancel(self, job: JobContext) -> Cancelled:
        ledger = Path(job.configuration["Ledger"])
        with _locked(ledger):
            run_file = ledger / f"{job.execution_id}.json"
            if not run_file.exists():
                return Cancelled(True, "no run to cancel")
            run = json.loads(run_file.read_text())
            run["cancelled"] = True
            _write(run_file, run)
        return Cancelled(True, f"run {run['run_id']} cancelled")


class OtherLedgerAction(LedgerAction):
    """The ledger under a second action type (Test/Custom/OtherLedger/1), for workers that run
    different action sets on one database."""

    name = "other-ledger"
    definition_file = "other_ledger.json"


class LateLedgerAction(LedgerAction):
    """The ledger as a service whose submissions land up to `submit_grace` after the call.

    submit() only queues a request (`requests/<execution>.<run>.json`, stamped with its time);
    the request becomes a run (its line in submissions.log, its run file) `lands_after` seconds
    later, whoever looks first, as a call still in flight when its worker died would. A worker
    that looks for an earlier submission before the grace is over finds nothing and queues a
    second request: two request files (and, later, two runs) for one execution.
    """

    name = "late-ledger"
    submit_grace = 25.0
    lands_after = 20.0
    """Below submit_grace, as the grace promises: by then a request has landed or never will."""

    def submit(self, job: JobContext) -> ActionOutcome:
        if not job.configuration["Token"].startswith(EXPECTED_TOKEN_PREFIX):
            return Failed(FailureType.PERMISSION_ERROR, "the ledger refused the token")
        ledger = Path(job.configuration["Ledger"])
        with _locked(ledger):
            land_due(ledger, job.clock.now(), self.lands_after)
            run = _earlier_run(ledger, job.execution_id) if job.resumed else None
            if run is None:
                run = {"run_id": f"run-{uuid.uuid4().hex[:12]}"}
                requests = ledger / "requests"
                requests.mkdir(exist_ok=True)
                _write(requests / f"{job.execution_id}.{run['run_id']}.json",
                       {"execution": job.execution_id, "run_id": run["run_id"],
                        "job": job.job_id, "at": job.clock.now()})
        return InProgress(RunDetails(run["run_id"], "queued", 0), {"run_id": run["run_id"]})

    def find(self, job: JobContext) -> ActionOutcome | None:
        """Only requests that have landed show: one still in flight is not found (yet)."""
        ledger = Path(job.configuration["Ledger"])
        with _locked(ledger):
            land_due(ledger, job.clock.now(), self.lands_after)
        return super().find(job)

    def check(self, job: JobContext) -> ActionOutcome:
        ledger = Path(job.configuration["Ledger"])
        with _locked(ledger):
            land_due(ledger, job.clock.now(), self.lands_after)
            landed = (ledger / f"{job.execution_id}.json").exists()
        if not landed:
            return InProgress(RunDetails(str(job.run.get("run_id", "")), "queued", 0))
        return super().check(job)


def requests_of(ledger: Path) -> list[dict[str, Any]]:
    """Every request LateLedgerAction queued, landed or not: one per submit call that reached
    the service, so two for one execution is a duplicate whether or not the second has landed."""
    folder = ledger / "requests"
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))] \
        if folder.exists() else []


def land_due(ledger: Path, now: float, delay: float) -> None:
    """Turn every request older than `delay` into a run, once (call with the ledger locked)."""
    log = ledger / "submissions.log"
    landed = {line.split()[1] for line in log.read_text().splitlines() if line.strip()} \
        if log.exists() else set()
    for request in requests_of(ledger):
        if request["run_id"] in landed or request["at"] + delay > now:
            continue
        with open(log, "a") as out:
            out.write(f"{request['execution']} {request['run_id']} {request['job']}\n")
        run_file = ledger / f"{request['execution']}.json"
        if not run_file.exists():
            _write(run_file, {"run_id": request["run_id"], "checks": 0, "cancelled": False})


def _earlier_run(ledger: Path, execution_id: str) -> dict[str, Any] | None:
    """The run an earlier submit started: its file, or its log line if it died before the file.

    The log line is the run's start, so a run found only by its line gets its file here (call
    with the ledger locked): whoever looks first, submit or find, completes the run, and a later
    check never meets a started run without a file (CI: find() returned such a run and every
    check after it raised FileNotFoundError).
    """
    run_file = ledger / f"{execution_id}.json"
    if run_file.exists():
        found: dict[str, Any] = json.loads(run_file.read_text())
        return found
    log = ledger / "submissions.log"
    for line in log.read_text().splitlines() if log.exists() else []:
        execution, run_id, _ = line.split()
        if execution == execution_id:
            started = {"run_id": run_id, "checks": 0, "cancelled": False}
            _write(run_file, started)
            return started
    return None


def _write(run_file: Path, run: dict[str, Any]) -> None:
    """Replace the run file atomically: a worker killed mid-write must not corrupt the ledger."""
    temporary = run_file.with_suffix(".tmp")
    temporary.write_text(json.dumps(run))
    os.replace(temporary, run_file)


class _locked:
    """An flock on the ledger, so several worker processes see one consistent external system."""

    def __init__(self, ledger: Path) -> None:
        self.path = ledger / ".lock"

    def __enter__(self) -> None:
        self.fd = os.open(self.path, os.O_CREAT | os.O_RDWR)
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
