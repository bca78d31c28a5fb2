"""Issue 12's events acceptance with the Travis action: CodePipeline's action events, published
by the emulator to an SQS queue on moto and read by a running worker, pick a job up and cancel a
stopped execution's build without waiting for any of the worker's timers.

The worker runs for real (its loops on their threads, HTTP to both emulators and to SQS), on a
clock whose time stands still: waiting blocks in real time and moves no fake time. Every timer
of the worker (a 600 s poll interval, 600 s checks, an hour between progress reports) is then
out of reach, so whatever happens is the events' doing, and the fake time it took is the
latency: zero, well inside the issue's one second (pick-up) and two seconds (cancel).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from actions.travis import TravisAction
from actions.travis.emulator import TravisEmulator
from engine.clock import FakeClock
from engine.codepipeline import CodePipeline
from engine.devtools.emulator import CodePipelineEmulator, EmulatorServer
from engine.devtools.emulator._cp_events import LocalSqs
from engine.devtools.testing import codepipeline_client
from engine.machine import JobState
from engine.projection import Job
from engine.store import open_store
from engine.worker import Settings, Worker
from tests.e2e.conftest import wait_until
from tests.travis.conftest import READ_ONLY, SLUG, TOKEN, Wire, configuration, quick_client


class StillClock(FakeClock):
    """Fake time that moves only when a test advances it; waiting blocks for real instead."""

    def wait(self, event: threading.Event, timeout: float) -> bool:
        return event.wait(timeout)  # the worker's 600 s waits end only when it is woken

    def sleep(self, seconds: float) -> None:
        time.sleep(min(seconds, 0.05))


@pytest.fixture
def clock() -> FakeClock:
    return StillClock()


@pytest.fixture
def travis(clock: FakeClock) -> TravisEmulator:
    emulator = TravisEmulator(clock=clock, seed=11)
    emulator.add_repository(SLUG, token=TOKEN, read_only_tokens=[READ_ONLY])
    return emulator



class Running:
    def __init__(self, clock: FakeClock, directory: Path, url: str) -> None:
        self.sqs = LocalSqs().start()
        self.queue = self.sqs.create_queue(f"cpworker-events-{uuid.uuid4().hex[:8]}")
        self.emulator = CodePipelineEmulator(clock=clock, events_queue_url=self.queue)
        self.server = EmulatorServer(self.emulator).start()
        client = codepipeline_client(self.server.url)
        self.action = TravisAction(quick_client())
        client.create_custom_action_type(**self.action.definition().document)
        self.store = open_store(f"sqlite:///{directory / 'state.db'}")
        settings = Settings(poll_interval=600.0, poll_interval_min=600.0, check_interval=600.0,
                            progress_interval=3600.0, effect_threads=4, shutdown_grace=5.0,
                            health_stale=1800.0, events_queue=self.queue)
        self.worker = Worker(self.store, CodePipeline(client), {"travis": self.action},
                             settings, clock, sqs=self.sqs.client())
        self.thread = threading.Thread(target=self.worker.run, daemon=True)

    def polls(self) -> int:
        return self.emulator.call_counts().get("PollForJobs", 0)

    def close(self) -> None:
        self.worker.stop()
        self.thread.join(15)
        self.server.stop()
        self.emulator.close()
        self.store.close()


@pytest.fixture
def running(clock: FakeClock, tmp_path: Path, url: str, wire: Wire,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[Running]:
    monkeypatch.setenv("CPWORKER_TRAVIS_API_URL", url)
    kit = Running(clock, tmp_path, url)
    kit.thread.start()
    try:
        yield kit
    finally:
        kit.close()


def test_an_idle_worker_picks_a_job_up_and_cancels_a_stopped_run_on_the_events_alone(
        running: Running, clock: FakeClock, travis: TravisEmulator, wire: Wire) -> None:
    wait_until("the worker's first poll, after which it idles", lambda: running.polls() >= 1)
    assert running.worker.events is not None and running.worker.events.running  # started first
    polls_before = running.polls()
    travis.set_schedule(SLUG, start_after=1, finish_after=100_000)

    started_at = clock.now()
    execution = running.emulator.start_execution(str(running.action.definition().type_id),
                                                 configuration(), action="Travis")

    def jobs() -> list[Job]:
        return running.store.by_execution(execution["actionExecutionId"])

    wait_until("the job acknowledged", lambda: any(
        e.type == "acknowledged" for j in jobs() for e in running.store.history(j.job_id)))
    acknowledged = next(e for j in jobs() for e in running.store.history(j.job_id)
                        if e.type == "acknowledged")
    assert acknowledged.at - started_at <= 1.0
    assert running.polls() - polls_before <= 1 + 3  # the woken poll and its quick follow-ups

    # Submitted: the request is pending, so no link to report yet (the default progress mode
    # hands on once the build is known); its next check is due 30 fake seconds later.
    wait_until("the Travis request made", lambda: bool(travis.requests(SLUG))
               and jobs()[0].state is JobState.RUNNING)
    clock.advance(10)  # Travis turns the request into a running build; no worker timer is due
    assert not wire.calls("POST", "/cancel")

    stopped_at = clock.now()
    running.emulator.stop_execution(execution["pipelineExecutionId"], abandon=True,
                                    reason="superseded")
    wait_until("the build's cancel sent", lambda: bool(wire.calls("POST", "/cancel")))
    assert clock.now() - stopped_at <= 2.0
    wait_until("the job over", lambda: jobs()[0].state is JobState.ABANDONED)
    types = [e.type for e in running.store.history(jobs()[0].job_id)]
    assert "execution_stopped" in types and types[-1] == "run_cancelled"
    assert len(wire.calls("POST", "/cancel")) == 1
    (build,) = travis.builds(SLUG)
    assert build["id"] == int(wire.calls("POST", "/cancel")[0].path.split("/")[2])
