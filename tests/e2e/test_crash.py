"""The crash test: kill a real `cpworker run` with SIGKILL anywhere, restart it, and nothing is
done twice and nothing is left undone.

A crash point (CPWORKER_CRASH_AT) kills the process at an exact step: before an effect, between
an effect and the commit of its outcome (the effect landed, the log does not know), or between
a commit and the next effect. The restart runs without it. At the end, whatever was killed:
each execution ended as its Outcome says, the ledger started exactly one run per execution,
CodePipeline accepted at most one result per job and exactly one final result per execution,
and every history replays.
"""

from __future__ import annotations

import random
import signal
import sqlite3
from collections.abc import Callable
from contextlib import closing
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from engine.machine import JobState
from engine.projection import Job
from tests.e2e.conftest import E2E, Expect, WorkerProcess, wait_until

pytestmark = pytest.mark.slow

PATIENT = ("--continuation-timeout", "20")
"""Longer than the emulator's 5 s acknowledgement timeout. A process killed between PollForJobs
and the commit of what it polled leaves a continuation job that only the ack timeout brings back;
with 5 s the first job could give the execution up just before, and rightly fail it."""


def _pairs(e2e: E2E) -> list[tuple[Job, dict[str, Any]]]:
    """Each job the worker recorded, with CodePipeline's view of it."""
    emulator = {j["id"]: j for e in e2e.executions for j in e2e.emulator_jobs(e)}
    with e2e.store() as store:
        return [(job, emulator[job.job_id]) for job in store.list_jobs()]


def _submitted(e2e: E2E) -> set[str]:
    return {line[0] for line in e2e.submissions()}


def _in_state(state: JobState, cp: Callable[[dict[str, Any]], bool]
              ) -> Callable[[E2E], bool]:
    return lambda e2e: any(job.state is state and cp(seen) for job, seen in _pairs(e2e))


def _accepted(seen: dict[str, Any]) -> bool:
    return any(r["accepted"] for r in seen["results"])


def _no_results(seen: dict[str, Any]) -> bool:
    return not seen["results"]


def _check_not_recorded(e2e: E2E) -> bool:
    """The ledger counted a check the running job's history does not have."""
    for execution in e2e.executions:
        last = e2e.worker_jobs(execution)[-1]
        if last.state is JobState.RUNNING and (
            e2e.run_file(execution)["checks"] > e2e.event_types(last.job_id).count("checked")
        ):
            return True
    return False


LEFT_BEHIND: dict[str, Callable[[E2E], bool]] = {
    "before:acknowledge": _in_state(JobState.ACQUIRED, lambda s: s["status"] == "Dispatched"),
    "after:acknowledge": _in_state(JobState.ACQUIRED, lambda s: s["status"] == "InProgress"),
    "before:submit": lambda e2e: any(
        job.state is JobState.SUBMITTED and job.execution_id not in _submitted(e2e)
        for job, _ in _pairs(e2e)),
    "after:submit": lambda e2e: any(
        job.state is JobState.SUBMITTED and job.execution_id in _submitted(e2e)
        for job, _ in _pairs(e2e)),
    "before:report_progress": _in_state(JobState.HANDING_ON, _no_results),
    "after:report_progress": _in_state(JobState.HANDING_ON, _accepted),
    "after:check": _check_not_recorded,
    "before:report_success": _in_state(JobState.REPORTING_SUCCESS, _no_results),
    "after:report_success": _in_state(JobState.REPORTING_SUCCESS, _accepted),
    "after:report_failure": _in_state(JobState.REPORTING_FAILURE, _accepted),
}
"""What the log and CodePipeline look like right after the kill: proof it hit the window it
names (e.g. after:submit: the ledger started the run, the log still says only `submitted`)."""

POINTS = [
    "before:acknowledge", "after:acknowledge", "after:acknowledge@3",
    "before:submit", "after:submit",
    "before:report_progress", "after:report_progress",
    "after:check",
    "before:report_success", "after:report_success", "after:report_failure",
    "after_commit@2", "after_commit@3", "after_commit@5",
]
"""after:acknowledge@3 is a continuation job's acknowledgement; after_commit@n the n-th group
commit that wrote events (2: around the submissions, 3: the progress reports, 5: the checks).
after_commit@1 is left out: it leaves the log as before:submit does."""


@pytest.mark.parametrize("point", POINTS)
def test_killed_at_a_crash_point_the_restart_finishes_without_duplicates(
    e2e: E2E, point: str
) -> None:
    e2e.start("pass")
    e2e.start("fail")

    crashed = e2e.crash(point, *PATIENT)

    with e2e.store() as store:
        assert store.count_active(), "the kill came after the worker had finished everything"
    left_behind = LEFT_BEHIND.get(point.partition("@")[0])
    if left_behind is not None:
        assert left_behind(e2e), [(j.state.value, s["status"], s["results"])
                                  for j, s in _pairs(e2e)]
    restarted = e2e.finish(*PATIENT)[0]
    e2e.assert_ended_right()
    took_over = (f"~~ worker {restarted.worker_id} took over from {crashed.worker_id}, whose "
                 "lease ran out")
    continued = f"-- continued by worker {restarted.worker_id} (after {crashed.worker_id}:"
    with e2e.store() as store:
        jobs = store.list_jobs()
    shown = [e2e.cli("inspect", job.job_id).stdout for job in jobs]
    # A job leased at the kill reads as taken over when the restart claims it first; one
    # whose next event came another way (a continuation job joining it, through intake) or
    # that was not leased reads as continued: either way after the crashed worker.
    assert any(took_over in text or continued in text for text in shown), shown


def test_killed_after_cancelling_a_run_out_of_time_it_still_fails_the_job_once(e2e: E2E) -> None:
    execution = e2e.start("pass", steps=100_000)
    timed_out = replace(execution, expect=Expect("Failed", "JobFailed", JobState.FAILED, True))
    e2e.executions[:] = [timed_out]
    budget = ("--time-budget", "1.5", *PATIENT)

    e2e.crash("after:cancel", *budget)

    assert e2e.run_file(execution)["cancelled"] is True
    assert [j.state for j in e2e.worker_jobs(execution)][-1] is JobState.TIMING_OUT
    e2e.finish(*budget)
    e2e.assert_ended_right()
    failure = e2e.emulator_execution(execution)["failureDetails"]
    assert "time budget of 1.5 s ran out; the external run was cancelled" in failure["message"]


def events_recorded(db: Path) -> int:
    """Events in the state database as another process sees them (0 before it exists)."""
    try:
        with closing(sqlite3.connect(db, timeout=10)) as conn:
            return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])
    except sqlite3.OperationalError:  # no file or no table yet: the first worker migrates
        return 0


def _until_recorded(e2e: E2E, worker: WorkerProcess, target: int) -> None:
    """Until the log holds `target` events, or the worker ended by itself."""
    wait_until(f"event {target} to be recorded, or the worker's end",
               lambda: events_recorded(e2e.db_path) >= target or worker.process.poll() is not None,
               timeout=30.0)


def test_random_sigkills_never_duplicate_a_run_or_a_result(e2e: E2E) -> None:
    """Each worker is killed once it has recorded a seeded number of events (1 to 12), read from
    the state database: the moment depends on the work done, not on how fast this machine is."""
    rng = random.Random(20261128)
    for outcome in ("pass", "pass", "fail", "error"):
        e2e.start(outcome, steps=12)
    kills = 0
    for _ in range(12):
        if kills == 6 or not e2e.unfinished():
            break
        before = events_recorded(e2e.db_path)
        target = before + rng.randint(1, 12)
        worker = e2e.spawn(*PATIENT)
        _until_recorded(e2e, worker, target)
        if worker.process.poll() is None and e2e.unfinished():
            worker.kill()
            assert worker.returncode == -signal.SIGKILL
            # The kill's window: after the chosen event, before the executions were done.
            assert events_recorded(e2e.db_path) >= target
            with e2e.store() as store:
                assert store.count_active(), "the kill came after the worker had finished"
            kills += 1
        else:
            assert worker.wait() == 0, worker.stderr[-4000:]
    assert kills == 6, f"only {kills} kill(s) landed before the jobs finished"

    e2e.finish(*PATIENT)

    e2e.assert_ended_right()
