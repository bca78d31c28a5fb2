"""The worker's loops under store and poller failures: nothing lost, nothing run twice, exits
that say why.

The store is a real SQLite file; the failures are injected at its public methods (a database
that says "locked" or "refused" on cue), so each test knows exactly which call failed. The
chaos suite (tests/chaos) does the same with a file really locked and a disk really full.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from engine.errors import StoreFailure, StoreUnavailable
from engine.projection import Job
from engine.store import Change, EventStore, open_store
from engine.store.sql import ClaimRequest
from engine.worker import EXIT_PERMANENT, EXIT_THREAD_DIED, Settings, Worker
from tests.bench.standin import InProcessCodePipeline
from tests.engine.test_scheduler import BlockingAction, CountingAction

FAST = Settings(report_progress=False, poll_interval=0.05, poll_interval_min=0.01,
                max_in_flight=200, effect_threads=8, shutdown_grace=5.0)


class FlakyStore(EventStore):
    """A real store whose writes fail on cue: `fail(n)` makes the next n commits raise."""

    def __init__(self, store: EventStore) -> None:
        super().__init__(store.engine)
        self.failures_left = 0
        self.failed = 0
        self.every = 0
        """With every = n, each n-th commit fails as well (a database that hiccups now and then)."""
        self.commits = 0
        self.error: Callable[[], Exception] = lambda: StoreUnavailable(
            "the state database refused a write (database is locked)")
        self.lock = threading.Lock()

    def fail(self, times: int, error: Callable[[], Exception] | None = None) -> None:
        with self.lock:
            self.failures_left = times
            if error is not None:
                self.error = error

    def _maybe_fail(self) -> None:
        with self.lock:
            self.commits += 1
            if self.every and self.commits % self.every == 0:
                self.failed += 1
                raise self.error()
            if self.failures_left <= 0:
                return
            self.failures_left -= 1
            self.failed += 1
        raise self.error()

    def commit(self, changes: Sequence[Change], claim: ClaimRequest | None = None) -> list[Job]:
        self._maybe_fail()
        return super().commit(changes, claim)


def flaky(tmp_path: Path) -> FlakyStore:
    return FlakyStore(open_store(f"sqlite:///{tmp_path / 'state.db'}", synchronous="OFF"))


def test_rounds_whose_commit_fails_lose_no_outcome_and_run_no_effect_twice(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    store = flaky(tmp_path)
    codepipeline = InProcessCodePipeline(150)
    action = CountingAction()
    worker = Worker(store, codepipeline, {"instant": action}, FAST)
    store.every = 3  # intake's and the scheduler's commits alike, at any point of the work
    with caplog.at_level(logging.WARNING):
        assert worker.run(until_idle=True) == 0
    assert store.failed >= 5, "the test never made a commit fail"
    assert len(codepipeline.results) == 150
    assert set(codepipeline.results.values()) == {"PutJobSuccessResult"}
    assert {key: n for key, n in action.calls.items() if n != 1} == {}
    assert store.count_active() == 0
    said = [r.getMessage() for r in caplog.records if "state database" in r.getMessage()]
    assert said and len(said) <= 2 * store.failed  # once per episode, not per retry
    assert any("works again" in line for line in said)


def test_a_permanent_store_error_stops_the_worker_with_one_line_and_exit_2(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    store = flaky(tmp_path)
    worker = Worker(store, InProcessCodePipeline(5), {"instant": CountingAction()}, FAST)
    store.fail(1000, lambda: StoreFailure("password authentication failed for user worker",
                                          fix="check the credentials in --db"))
    with caplog.at_level(logging.ERROR):
        assert worker.run(until_idle=True) == EXIT_PERMANENT
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "password authentication failed" in errors[0].getMessage()
    assert errors[0].exc_info is None  # one line, no traceback


class FailingIntakeStore(FlakyStore):
    """Only the poller's intake writes fail (the scheduler's commits carry a claim)."""

    def commit(self, changes: Sequence[Change], claim: ClaimRequest | None = None) -> list[Job]:
        if claim is None and any(c.new for c in changes):
            self._maybe_fail()
        return EventStore.commit(self, changes, claim)


def test_a_failing_intake_is_retried_with_backoff_and_loses_no_polled_job(
    tmp_path: Path,
) -> None:
    store = FailingIntakeStore(open_store(f"sqlite:///{tmp_path / 'state.db'}",
                                          synchronous="OFF"))
    codepipeline = InProcessCodePipeline(0)
    settings = Settings(report_progress=False, poll_interval=0.5, poll_interval_min=0.01,
                        effect_threads=4)
    worker = Worker(store, codepipeline, {"instant": CountingAction()}, settings)
    store.fail(10**6)
    codepipeline.add(300)
    runner = threading.Thread(target=worker.run, daemon=True)
    runner.start()
    try:
        # Ten failed attempts wait 0.01 + 0.02 + 0.04 ... s between them: over a second on any
        # machine, where the loop without backoff made hundreds of polls a second.
        began = time.monotonic()
        deadline = began + 30
        while store.failed < 10 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert store.failed >= 10 and time.monotonic() - began >= 1.0
        assert codepipeline.calls["PollForJobs"] == 1  # the batch is kept, not polled again
        store.fail(0)
        while len(codepipeline.results) < 300 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(codepipeline.results) == 300
        assert set(codepipeline.results.values()) == {"PutJobSuccessResult"}
    finally:
        worker.stop()
        runner.join(30)


class ExitingCodePipeline(InProcessCodePipeline):
    """A poll that raises SystemExit: the one thing that ends a thread's loop for good."""

    def poll(self, type_id: Any, max_batch: int, query: Any = None) -> list[dict[str, Any]]:
        raise SystemExit("the poller is gone")


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_dead_poller_thread_stops_the_worker_with_exit_3(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'state.db'}", synchronous="OFF")
    worker = Worker(store, ExitingCodePipeline(0), {"instant": CountingAction()}, FAST)
    with caplog.at_level(logging.ERROR):
        assert worker.run() == EXIT_THREAD_DIED
    assert any("poller thread died" in r.getMessage() for r in caplog.records)


def test_leases_of_jobs_waiting_in_flight_are_renewed_so_no_peer_takes_them(
    tmp_path: Path,
) -> None:
    """A submit that takes longer than the lease: without renewal a second worker would claim
    the job and run the effect a second time."""
    action = BlockingAction()
    store = open_store(f"sqlite:///{tmp_path / 'state.db'}", synchronous="OFF")
    settings = Settings(report_progress=False, effect_threads=1, claim_depth=2, lease=0.5,
                        poll_interval=0.05, poll_interval_min=0.01)
    worker = Worker(store, InProcessCodePipeline(2), {"instant": action}, settings)
    runner = threading.Thread(target=worker.run, daemon=True)
    runner.start()
    try:
        deadline = time.monotonic() + 20
        while worker.scheduler.running < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert worker.scheduler.running == 2  # one submit blocked, one queued behind it
        start = time.monotonic()
        while time.monotonic() - start < 2.0:  # four leases long
            taken = store.claim_due(time.time() + 0.1, 10, "peer:1:x", 60.0)
            assert taken == [], [j.job_id for j in taken]
            time.sleep(0.1)
    finally:
        action.release.set()
        worker.stop()
        runner.join(30)


def test_claims_count_and_due_times_see_only_this_workers_actions(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'state.db'}", synchronous="OFF")
    mine = Worker(store, InProcessCodePipeline(3), {"instant": CountingAction()}, FAST)
    assert mine.poll_now() == 3
    other = Worker(store, InProcessCodePipeline(0), {"other": CountingAction()}, FAST)
    assert other.free_capacity() == FAST.max_in_flight
    assert other.scheduler.run_round().started == 0
    assert store.count_active(["other"]) == 0 and store.count_active(["instant"]) == 3
