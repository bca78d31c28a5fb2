"""An offline testing kit for action authors (and for cpworker's own tests).

Everything runs on this machine, with real HTTP on 127.0.0.1: the CodePipeline emulator plays
AWS, a temporary SQLite file plays the state database, a FakeClock skips the waiting. Use it as a
pytest plugin (`pytest_plugins = ["engine.testing"]`) or directly:

    def test_my_action_passes(tmp_path):
        with ActionHarness(MyAction(), tmp_path) as harness:
            execution = harness.start({"Project": "demo", "Token": "secret"})
            assert harness.run(execution).state is JobState.SUCCEEDED
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from engine.action import Action
from engine.clock import FakeClock
from engine.codepipeline import CodePipeline, make_client
from engine.emulator import CodePipelineEmulator, EmulatorServer, TravisEmulator
from engine.machine import JobState
from engine.projection import Event, Job
from engine.store import EventStore, open_store
from engine.worker import Settings, Worker

if TYPE_CHECKING:
    from mypy_boto3_codepipeline import CodePipelineClient

__all__ = ["ActionHarness", "JobState", "codepipeline_client"]

TEST_SETTINGS = Settings(
    check_interval=10.0, poll_interval=5.0, poll_interval_min=1.0, backoff_initial=1.0,
    backoff_max=30.0, max_attempts=4, continuation_timeout=300.0, shutdown_grace=5.0,
    effect_threads=4,
)
"""Intervals that mean something on a fake clock; nothing here sleeps for real."""


def codepipeline_client(url: str) -> CodePipelineClient:
    """A boto3 client for an emulator, with dummy credentials and no hidden retries."""
    return make_client(url, "us-east-1", credentials=("testing", "testing"))


class ActionHarness:
    """Runs one action's jobs through the real engine against the emulator, on a fake clock.

    `run()` drives the worker step by step (poll, effects, group commit) and moves the clock to
    the next due time between steps, so a job that would take an hour of checks takes
    milliseconds and is deterministic.
    """

    def __init__(
        self,
        action: Action,
        directory: Path,
        *,
        settings: Settings = TEST_SETTINGS,
        clock: FakeClock | None = None,
        continuation_delay: float = 0.0,
        register: bool = True,
        emulator_options: Mapping[str, Any] | None = None,
    ) -> None:
        """`emulator_options`: more CodePipelineEmulator settings (length_unit,
        job_retention, max_batch_size...), to test an action against another reading of the
        service."""
        self.action = action
        self.clock = clock or FakeClock()
        self.emulator = CodePipelineEmulator(clock=self.clock,
                                             continuation_delay=continuation_delay,
                                             **dict(emulator_options or {}))
        self.server = EmulatorServer(self.emulator).start()
        self.client = codepipeline_client(self.server.url)
        if register:
            self.client.create_custom_action_type(**action.definition().document)
        self.store: EventStore = open_store(f"sqlite:///{directory / 'state.db'}")
        self.worker = Worker(self.store, CodePipeline(self.client), {action.name: action},
                             replace(settings), self.clock)
        self.worker.store.release_dead_leases()

    def start(self, configuration: Mapping[str, str], **kwargs: Any) -> str:
        """A new pipeline execution reaching the action; returns its actionExecutionId."""
        type_id = str(self.action.definition().type_id)
        kwargs.setdefault("action", self.action.definition().type_id.provider)
        started = self.emulator.start_execution(type_id, configuration, **kwargs)
        return started["actionExecutionId"]

    def step(self) -> bool:
        """One poll, one scheduler round, and the commit of every effect it started.

        Returns whether anything happened, so run() moves the clock only when nothing can.
        """
        found = self.worker.poll_now()
        started = self.worker.scheduler.run_round()
        deadline = time.monotonic() + 30
        while self.worker.scheduler.running and time.monotonic() < deadline:
            time.sleep(0.001)
        finished = self.worker.scheduler.run_round(claim=False)
        return bool(found or started.committed or started.started or finished.committed)

    def run(self, execution_id: str, max_steps: int = 500) -> Job:
        """Drive until the execution's newest job is final; returns that job."""
        for _ in range(max_steps):
            progressed = self.step()
            jobs = self.store.by_execution(execution_id)
            if jobs and all(j.final for j in jobs) and not self._continuation_owed(execution_id):
                return jobs[-1]
            if progressed:
                continue  # a continuation job may be waiting to be polled: no time passes yet
            due = self.store.earliest_due(self.clock.now())
            if due is None or due > self.clock.now():
                self.clock.advance(max(0.001, (due or self.clock.now() + 1.0) - self.clock.now()))
        raise AssertionError(f"execution {execution_id} did not finish in {max_steps} steps: "
                             f"{[(j.job_id, j.state.value) for j in self.jobs(execution_id)]}")

    def _continuation_owed(self, execution_id: str) -> bool:
        return any(j.state is JobState.AWAITING_CONTINUATION
                   for j in self.store.by_execution(execution_id))

    def jobs(self, execution_id: str) -> list[Job]:
        return self.store.by_execution(execution_id)

    def history(self, execution_id: str) -> list[Event]:
        """Every event of the execution's jobs, in order."""
        return [e for j in self.jobs(execution_id) for e in self.store.history(j.job_id)]

    def event_types(self, execution_id: str) -> list[str]:
        return [e.type for e in self.history(execution_id)]

    def results(self, execution_id: str) -> list[dict[str, Any]]:
        """What CodePipeline received for the execution: every result call, in order."""
        calls = []
        for job in self.emulator.jobs():
            if job["actionExecutionId"] == execution_id:
                calls.extend(job["results"])
        return calls

    def close(self) -> None:
        self.worker.scheduler.close()
        self.action.close()
        self.server.stop()
        self.store.close()

    def __enter__(self) -> ActionHarness:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- pytest fixtures ----------------------------------------------------------------------------


@pytest.fixture
def fake_clock() -> FakeClock:
    """A clock that moves only when told to."""
    return FakeClock()


@pytest.fixture
def tmp_store(tmp_path: Path) -> Iterator[EventStore]:
    """A migrated event store in a temporary SQLite file."""
    store = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    yield store
    store.close()


@pytest.fixture
def codepipeline_emulator() -> Iterator[tuple[CodePipelineEmulator, EmulatorServer]]:
    """The CodePipeline emulator on a free loopback port, on the real clock (for subprocesses)."""
    emulator = CodePipelineEmulator(continuation_delay=0.2, ack_timeout=5.0)
    with EmulatorServer(emulator) as server:
        yield emulator, server


@pytest.fixture
def travis_emulator() -> Iterator[tuple[TravisEmulator, EmulatorServer]]:
    """The Travis CI emulator on a free loopback port, on the real clock."""
    emulator = TravisEmulator(build_delay=0.2)
    with EmulatorServer(emulator) as server:
        yield emulator, server
