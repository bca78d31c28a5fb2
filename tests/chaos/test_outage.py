"""Scenario e: CodePipeline and Travis unreachable for 15 minutes, on a fake clock.

engine.devtools.testing's ActionHarness drives the real engine (poller, scheduler, effects,
SQLite) step by step against both emulators over HTTP on 127.0.0.1, all three on one FakeClock:
six Travis executions are under way when both services go down; two more are started during the
outage; fifteen minutes of fake time pass while the engine keeps stepping; then the services come
back.
Every job must end as its build did: none failed with SystemUnavailable because of the outage,
none given up or abandoned, one Travis request each.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from actions.travis import TravisAction
from actions.travis.client import TravisClient
from actions.travis.emulator import TravisEmulator
from engine.clock import FakeClock
from engine.devtools.emulator import EmulatorServer
from engine.devtools.testing import ActionHarness
from tests.chaos.kit import EXPECT, KINDS, Figures, Run, judge
from tests.e2e.conftest import invoke

pytestmark = [pytest.mark.slow]

OUTAGE = 15 * 60.0


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
          ) -> Iterator[tuple[ActionHarness, TravisEmulator]]:
    clock = FakeClock()
    travis = TravisEmulator(clock=clock, build_delay=5.0, seed=20261203)
    with EmulatorServer(travis) as server:
        monkeypatch.setenv("CPWORKER_TRAVIS_API_URL", server.url)
        # The action's own retries sleep on the fake clock too: nothing here waits for real.
        action = TravisAction(TravisClient(sleep=clock.sleep))
        with ActionHarness(action, tmp_path, clock=clock, continuation_delay=30.0) as harness:
            yield harness, travis


def drive(harness: ActionHarness, done: Callable[[], bool], until: float,
          max_steps: int = 20_000) -> int:
    """Step the engine, moving the fake clock to the next due time (or the next poll, as the
    worker's poller would: no later than its poll interval) whenever nothing happens, until
    `done()` or the fake time `until`; returns the steps taken."""
    clock = harness.clock
    every = harness.worker.settings.poll_interval
    steps = 0
    while not done() and clock.now() < until:
        assert steps < max_steps, f"no end after {max_steps} steps"
        steps += 1
        if harness.step():
            continue
        now = clock.now()
        due = harness.store.earliest_due(now)
        target = min(due if due is not None and due > now else now + every, now + every, until)
        clock.advance(max(0.001, target - now))
    return steps


def start(harness: ActionHarness, travis: TravisEmulator, runs: list[Run], n: int) -> None:
    outcome = "pass" if n % 3 else "fail"
    slug = f"acme/service-{n}"
    token = f"travis-token-{n:04d}-outage"
    travis.add_repository(slug, token=token, request_limit=1000)
    # Some builds end during the outage, some after it.
    travis.set_schedule(slug, start_after=30.0, finish_after=300.0 if n % 2 else 1500.0,
                        result="passed" if outcome == "pass" else "failed")
    started = harness.emulator.start_execution(
        KINDS["travis"].type_id,
        {"Owner": "acme", "ProjectName": f"service-{n}", "Branch": "main", "APIToken": token},
        action="Travis", pipeline_name=f"outage-{n}")
    runs.append(Run(KINDS["travis"], outcome, started["pipelineExecutionId"],
                    started["actionExecutionId"], EXPECT[outcome], token, slug))


@pytest.mark.chaos(deadline=300)
@pytest.mark.parametrize("mode", ["unreachable", "unavailable"])
def test_fifteen_minutes_without_codepipeline_and_travis(
    world: tuple[ActionHarness, TravisEmulator], tmp_path: Path, mode: str,
) -> None:
    harness, travis = world
    figures = Figures(f"e-outage-15min-{mode}")
    runs: list[Run] = []
    problems: list[str] = []
    try:
        for n in range(6):
            start(harness, travis, runs, n)

        def under_way() -> bool:
            return all(any(j.run for j in harness.store.by_execution(r.action_execution_id))
                       for r in runs)

        steps = drive(harness, under_way, harness.clock.now() + 600)
        assert under_way(), "the builds were never triggered before the outage"
        # Two minutes more: progress reported, continuation jobs joined, builds being checked.
        steps += drive(harness, lambda: False, harness.clock.now() + 120)
        began = harness.clock.now()
        harness.emulator.faults.configure(outage=mode)
        travis.faults.configure(outage=mode)
        for n in range(6, 8):
            start(harness, travis, runs, n)
        steps += drive(harness, lambda: False, began + OUTAGE)
        harness.emulator.faults.configure(outage=False)
        travis.faults.configure(outage=False)
        figures.extra["refused_cp"] = harness.emulator.faults.counts()["refused"]
        figures.extra["refused_travis"] = travis.faults.counts()["refused"]
        for service, refused in (("CodePipeline", figures.extra["refused_cp"]),
                                 ("Travis", figures.extra["refused_travis"])):
            if not refused:  # never vacuously: the engine must have met both outages
                problems.append(f"the engine never called {service} during its outage")

        def ended() -> bool:
            open_ = [e for e in harness.emulator.executions() if e["status"] == "InProgress"]
            return not open_ and all(j.final for r in runs
                                     for j in harness.store.by_execution(r.action_execution_id))

        steps += drive(harness, ended, began + OUTAGE + 3600)
        figures.extra["steps"] = steps
        figures.extra["fake_minutes"] = round((harness.clock.now() - began) / 60, 1)
    finally:
        external: Counter[str] = Counter()
        for request in travis.requests():
            for run in runs:
                if f"[cpworker:{run.action_execution_id}]" in (request["message"] or ""):
                    external[run.action_execution_id] += 1
        problems += judge(harness.emulator, harness.store, runs, external, figures)
        unavailable = [r for job in harness.emulator.jobs() for r in job["results"]
                       if r["operation"] == "PutJobFailureResult"
                       and r["request"]["failureDetails"]["type"] == "SystemUnavailable"]
        figures.extra["system_unavailable"] = len(unavailable)
        abandoned = [j.job_id for j in harness.store.list_jobs() if j.state.value in
                     ("abandoned", "gave_up")]
        figures.extra["abandoned"] = len(abandoned)
        if abandoned:
            problems.append(f"{len(abandoned)} job(s) given up or abandoned: {abandoned[:3]}")
        replayed = invoke("--db", f"sqlite:///{tmp_path / 'state.db'}", "replay", "--all")
        if replayed.exit_code != 0:
            problems.append(f"replay --all: {replayed.output[-1500:]}")
        figures.executions = len(runs)
        figures.emit(tmp_path)
    assert not problems, "\n".join(problems[:30])
