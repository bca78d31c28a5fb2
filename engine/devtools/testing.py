"""An offline testing kit for action authors (and for cpworker's own tests).

Everything runs on this machine, with real HTTP on 127.0.0.1: the CodePipeline emulator plays
AWS, a temporary SQLite file plays the state database, a FakeClock skips the waiting. This module
needs no pytest; its fixtures are in the pytest plugin engine.devtools.fixtures
(`pytest_plugins = ["engine.devtools.fixtures"]`). Used directly:

    def test_my_action_passes(tmp_path):
        with ActionHarness(MyAction(), tmp_path) as harness:
            execution = harness.start({"Project": "demo", "Token": "secret"})
            assert harness.run(execution).state is JobState.SUCCEEDED
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.action import Action
from engine.clock import FakeClock
from engine.codepipeline import CodePipeline, make_client
from engine.devtools.emulator import (
    DEFAULT_HOST,
    App,
    CodePipelineEmulator,
    EmulatorServer,
    Request,
    Response,
)
from engine.machine import JobState
from engine.projection import Event, Job
from engine.store import EventStore, open_store
from engine.worker import Settings, Worker

if TYPE_CHECKING:
    from mypy_boto3_codepipeline import CodePipelineClient

__all__ = ["TEST_SETTINGS", "ActionHarness", "JobState", "SharedServer", "codepipeline_client"]

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
        # The emulator serves the jobs' artifacts on its own port (S3, path-style).
        self.worker = Worker(self.store, CodePipeline(self.client), {action.name: action},
                             replace(settings, s3_endpoint_url=settings.s3_endpoint_url
                                     or self.server.url), self.clock)
        self.worker.store.release_dead_leases()

    def start(self, configuration: Mapping[str, str], **kwargs: Any) -> str:
        """A new pipeline execution reaching the action; returns its actionExecutionId."""
        type_id = str(self.action.definition().type_id)
        kwargs.setdefault("action", self.action.definition().type_id.provider)
        started = self.emulator.start_execution(type_id, configuration, **kwargs)
        return started["actionExecutionId"]

    def step(self, poll: bool = True) -> bool:
        """One poll (unless `poll` is False: a caller keeping the poller's own cadence), one
        scheduler round, and the commit of every effect it started.

        Returns whether anything happened, so run() moves the clock only when nothing can.
        """
        found = self.worker.poll_now() if poll else 0
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
                # The job that ended the execution: jobs created at one fake moment sort by id,
                # so the newest is not always last; every other job handed on.
                return next((j for j in reversed(jobs) if j.state is not JobState.HANDED_ON),
                            jobs[-1])
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
        self.emulator.close()  # its artifact store's S3, if a test used artifacts
        self.store.close()

    def __enter__(self) -> ActionHarness:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- one server for a whole test session ------------------------------------------------------


class SharedServer:
    """One loopback server for a whole test session, serving whichever app a test plugs in.

    Stopping an EmulatorServer waits out serve_forever's half-second poll, which per test would
    dominate a suite's run time; so each test plugs its own emulator into this one instead.
    """

    def __init__(self, host: str = DEFAULT_HOST) -> None:
        self.app: App | None = None
        self.server = EmulatorServer(self, host)

    @property
    def url(self) -> str:
        return self.server.url

    def __call__(self, request: Request) -> Response:
        if self.app is None:
            return Response.text(503, "no emulator is plugged in for this test\n")
        return self.app(request)

    def incomplete_body(self, request: Request) -> Response:
        """The plugged app's own answer to a truncated body (see _http), if it has one."""
        answer = getattr(self.app, "incomplete_body", None)
        if answer is None:
            return Response.text(503, "no emulator is plugged in for this test\n")
        response: Response = answer(request)
        return response

    def plug(self, app: App) -> EmulatorServer:
        """Serve `app` (until unplug() or the next plug()); returns the running server."""
        self.app = app
        return self.server

    def unplug(self) -> None:
        self.app = None

    def __enter__(self) -> SharedServer:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()
