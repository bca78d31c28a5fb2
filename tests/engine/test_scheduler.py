"""The scheduler at volume: every effect runs once per step, and every job ends."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from pathlib import Path

from engine.action import JobContext
from engine.outcomes import ActionOutcome
from engine.store import open_store
from engine.worker import Settings, Worker
from tests.bench.standin import InProcessCodePipeline, InstantAction


class CountingAction(InstantAction):
    """InstantAction that counts how often each job's submit and check run, and takes a few
    milliseconds like a network call, so effects finish at any point of a scheduler round."""

    def __init__(self) -> None:
        self.calls: Counter[tuple[str, str]] = Counter()
        self.lock = threading.Lock()
        self.latency = random.Random(7)

    def _call(self, job: JobContext, name: str) -> None:
        with self.lock:
            self.calls[(job.job_id, name)] += 1
            pause = self.latency.uniform(0.0, 0.004)
        time.sleep(pause)

    def submit(self, job: JobContext) -> ActionOutcome:
        self._call(job, "submit")
        return super().submit(job)

    def check(self, job: JobContext) -> ActionOutcome:
        self._call(job, "check")
        return super().check(job)


def test_no_effect_runs_twice_while_its_outcome_waits_to_be_committed(tmp_path: Path) -> None:
    """A job stays in flight from its claim until its outcome is committed; had it left
    earlier, a round could claim its stale row and run the effect again. Effects here end at
    any moment of a round, as network calls do."""
    jobs = 600
    codepipeline = InProcessCodePipeline(jobs)
    action = CountingAction()
    store = open_store(f"sqlite:///{tmp_path / 'state.db'}", synchronous="FULL")
    worker = Worker(store, codepipeline, {"instant": action},
                    Settings(report_progress=False, poll_interval=0.05, poll_interval_min=0.01,
                             max_in_flight=500, effect_threads=16))
    assert worker.run(until_idle=True) == 0
    assert len(codepipeline.results) == jobs
    assert codepipeline.calls["AcknowledgeJob"] == jobs
    assert set(codepipeline.results.values()) == {"PutJobSuccessResult"}
    repeated = {key: n for key, n in action.calls.items() if n != 1}
    assert repeated == {}
    assert len(action.calls) == 2 * jobs
    assert store.count_active() == 0


class BlockingAction(InstantAction):
    """Submits block until released: one effect runs while the others wait in the queue."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()
        """Set once a submission runs: the pool thread has taken it off the queue."""

    def submit(self, job: JobContext) -> ActionOutcome:
        self.entered.set()
        self.release.wait(10)
        return super().submit(job)


def test_closing_gives_back_the_leases_of_effects_that_never_started(tmp_path: Path) -> None:
    action = BlockingAction()
    store = open_store(f"sqlite:///{tmp_path / 'state.db'}", synchronous="OFF")
    worker = Worker(store, InProcessCodePipeline(4), {"instant": action},
                    Settings(report_progress=False, effect_threads=1, claim_depth=4))
    assert worker.poll_now() == 4
    for _ in range(3):  # acknowledge all four (one pool thread), then start their submissions
        worker.scheduler.run_round()
        deadline = time.monotonic() + 10
        while worker.scheduler.running and not action.release.is_set():
            if time.monotonic() > deadline or all(
                j.state.value == "submitted" for j in store.list_jobs()):
                break
            time.sleep(0.01)
    assert {j.state.value for j in store.list_jobs()} == {"submitted"}
    assert worker.scheduler.running == 4  # one submit runs (blocked), three are queued
    assert action.entered.wait(10)  # the running one started: closing cannot cancel it
    worker.scheduler.close()
    with store.engine.connect() as conn:
        owners = [row[0] for row in conn.exec_driver_sql("SELECT lease_owner FROM jobs")]
    assert sorted(o is None for o in owners) == [False, True, True, True]
    action.release.set()
    store.close()


def test_a_job_whose_holder_stopped_renewing_is_recorded_as_taken_over(tmp_path: Path) -> None:
    """A live worker clears its lease with every step and renews it while it works: a lease
    still held by another worker when this one claims the job means that worker died or hung,
    and the first event this worker records says so (inspect shows a takeover, not sharing)."""
    store = open_store(f"sqlite:///{tmp_path / 'state.db'}", synchronous="OFF")
    first = Worker(store, InProcessCodePipeline(2), {"instant": InstantAction()},
                   Settings(report_progress=False))
    assert first.poll_now() == 2
    ids = sorted(j.job_id for j in store.list_jobs())
    # The first worker claims one job and is gone (its lease is left, already run out).
    claimed = store.claim_due(time.time(), 1, first.owner, lease_for=-1.0)
    assert [j.job_id for j in claimed] == [ids[0]] or [j.job_id for j in claimed] == [ids[1]]
    taken = claimed[0].job_id
    second = Worker(store, first.effects.codepipeline, {"instant": InstantAction()},
                    Settings(report_progress=False))
    for _ in range(3):
        second.scheduler.run_round()
        second.scheduler.drain(5.0)
    notes = {job_id: [e.data.get("took_over_from") for e in store.history(job_id)]
             for job_id in ids}
    assert notes[taken][1] == first.owner  # the first event after the claim
    assert [n for n in notes[taken] if n] == [first.owner]
    other = next(i for i in ids if i != taken)
    assert not any(notes[other])
    store.close()
