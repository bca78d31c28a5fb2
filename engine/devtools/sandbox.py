"""`cpworker sandbox`: the whole product on one machine, in under a minute.

The CodePipeline emulator and the emulator of each scenario's action on loopback, each action
registered in CodePipeline, the executions every scenario asks for, the real engine working
them to the end on a SQLite file, then each job's timeline. The scenarios come from the
installed actions (entry-point group cpworker.sandboxes, see engine.devtools.plugins); the
Travis action's: a passing build, a failing build, one stopped-and-abandoned in CodePipeline
while its build runs. No AWS account, no token, no network beyond 127.0.0.1.
"""

from __future__ import annotations

import os
import random
import shutil
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from engine.action import Action, load_action
from engine.clock import SystemClock
from engine.codepipeline import CodePipeline, make_client
from engine.devtools.emulator import App, CodePipelineEmulator, EmulatorServer
from engine.devtools.plugins import SandboxExecution, SandboxScenario, emulators
from engine.errors import ConfigurationProblem
from engine.history import timeline
from engine.machine import JobState
from engine.registration import register
from engine.store import open_store
from engine.worker import Settings, Worker

SETTINGS = Settings(
    check_interval=1.0, poll_interval=1.0, poll_interval_min=0.1, progress_interval=3.0,
    continuation_timeout=30.0, backoff_initial=0.5, backoff_max=5.0, shutdown_grace=5.0,
)
"""Seconds instead of minutes, so the whole story fits in under a minute."""


@dataclass(frozen=True)
class _Started:
    scenario: str
    execution: SandboxExecution


MARKER = ".cpworker-sandbox"
"""The file that says a directory is the sandbox's own: only such a directory is ever emptied."""


def prepare_directory(directory: Path) -> None:
    """Make `directory` the sandbox's: created, or empty, or made by an earlier sandbox (then
    emptied). Anything else is refused untouched: a --dir typed by mistake must not cost the
    user a folder."""
    if directory.exists() and not directory.is_dir():
        raise ConfigurationProblem(f"{directory} is a file, not a directory",
                                   fix="give a new directory to --dir, or leave --dir out")
    if directory.is_dir() and any(directory.iterdir()):
        if not (directory / MARKER).is_file():
            raise ConfigurationProblem(
                f"{directory} is not empty and was not made by cpworker sandbox; it is left as "
                "it is", fix="give a new or empty directory to --dir, or leave --dir out (a "
                "fresh temporary directory is used)")
        shutil.rmtree(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / MARKER).write_text("made by cpworker sandbox: emptied by its next run\n")


def run_sandbox(directory: Path, say: Callable[[str], None],
                scenarios: Mapping[str, SandboxScenario], deadline: float = 90.0) -> int:
    """Returns 0 when every execution ended as its scenario says."""
    if not scenarios:
        raise ConfigurationProblem("no sandbox scenario is installed",
                                   fix="install an action that ships one (cpworker.sandboxes)")
    prepare_directory(directory)
    db_path = directory / "state.db"
    seed = random.SystemRandom().randrange(2**31)  # fresh ids: never those of an earlier run
    installed = emulators()
    codepipeline = CodePipelineEmulator(continuation_delay=0.5, ack_timeout=10.0, seed=seed)
    with ExitStack() as stack:
        cp_server = stack.enter_context(EmulatorServer(codepipeline))
        say(f"{'CodePipeline emulator':<23}{cp_server.url}")
        apps: dict[str, App | None] = {}
        for name, scenario in scenarios.items():
            apps[name] = None
            if scenario.emulator is None:
                continue
            if scenario.emulator not in installed:
                raise ConfigurationProblem(
                    f"the sandbox scenario {name} drives the emulator {scenario.emulator}, "
                    "which is not installed (cpworker.emulators)")
            plugin = installed[scenario.emulator]
            app = plugin.build(SystemClock(), seed, scenario.emulator_options)
            server = stack.enter_context(EmulatorServer(app))
            os.environ.update(plugin.environment(server.url))
            apps[name] = app
            say(f"{plugin.title + ' emulator':<23}{server.url}")
        client = make_client(cp_server.url, "us-east-1", "cpworker-sandbox",
                             credentials=("sandbox", "sandbox"))
        actions: dict[str, Action] = {}
        started: dict[str, _Started] = {}
        for name, scenario in scenarios.items():
            action = actions[scenario.action] = load_action(scenario.action)()
            definition = action.definition()
            say(f"{'registered':<23}{definition.type_id} "
                f"({register(client, definition).status})")
            for execution in scenario.prepare(apps[name]):
                begun = codepipeline.start_execution(
                    str(definition.type_id), dict(execution.configuration),
                    pipeline_name=execution.pipeline, action=definition.type_id.provider)
                started[begun["actionExecutionId"]] = _Started(name, execution)
                say(f"{'pipeline started':<23}{execution.pipeline}: {execution.story}")
        store = open_store(f"sqlite:///{db_path}")
        stack.callback(store.close)
        worker = Worker(store, CodePipeline(client), actions, SETTINGS)
        say(f"{'state database':<23}{db_path}\n")
        runner = threading.Thread(target=worker.run, kwargs={"until_idle": True},
                                  name="worker", daemon=True)
        begun_at = time.monotonic()
        runner.start()
        shown: dict[str, str] = {}
        abandoned: set[str] = set()
        while runner.is_alive() and time.monotonic() - begun_at < deadline:
            for job in store.list_jobs():
                found = started.get(job.execution_id)
                if found is None:
                    continue
                execution = found.execution
                summary = (job.details or {}).get("summary") or ""
                line = f"{job.state.value:<22} {summary}".rstrip()
                key = f"{job.execution_id}:{job.job_id}"
                if shown.get(key) != line:
                    shown[key] = line
                    say(f"  {time.monotonic() - begun_at:5.1f}s  {execution.pipeline:<13} "
                        f"job {job.job_id[:8]}  {line}")
                if (execution.abandon and job.execution_id not in abandoned
                        and job.external_id and job.state is JobState.RUNNING):
                    pipeline_execution = str(job.pipeline.get("pipeline_execution_id"))
                    codepipeline.stop_execution(pipeline_execution, abandon=True,
                                                reason="stopped from the console (sandbox)")
                    abandoned.add(job.execution_id)
                    say(f"  {time.monotonic() - begun_at:5.1f}s  {execution.pipeline:<13} "
                        "execution stopped and abandoned in CodePipeline")
            runner.join(timeout=0.3)
        if runner.is_alive():
            worker.stop()
            runner.join(timeout=10)
            say(f"\nthe sandbox did not finish within {deadline:.0f} s")
            return 1
        say(f"\nall executions final after {time.monotonic() - begun_at:.1f} s\n")
        ok = True
        for execution_id, found in started.items():
            jobs = store.by_execution(execution_id)
            if not jobs:
                say(f"{found.execution.pipeline}: no job was worked")
                ok = False
                continue
            say(timeline(store, jobs[-1]))
            if jobs[-1].state is not found.execution.expect:
                say(f"{found.execution.pipeline}: ended {jobs[-1].state.value}, "
                    f"expected {found.execution.expect.value}")
                ok = False
        for name, scenario in scenarios.items():
            report = scenario.report(
                apps[name], sum(1 for s in started.values() if s.scenario == name))
            for line in report.lines:
                say(line)
            ok = ok and report.ok
        say(f"\nInspect it again with: cpworker --db sqlite:///{db_path} inspect <job-id>")
        return 0 if ok else 1
