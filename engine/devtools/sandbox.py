"""`cpworker sandbox`: the whole product on one machine, in under a minute.

Both emulators on loopback, the Travis action registered in the CodePipeline emulator, three
pipeline executions (a passing build, a failing build, one stopped-and-abandoned in CodePipeline
while its build runs), the real engine working them to the end on a SQLite file, then each job's
timeline. No AWS account, no Travis token, no network beyond 127.0.0.1.
"""

from __future__ import annotations

import os
import random
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from actions.travis.emulator import TravisEmulator
from engine.action import Action, load_action
from engine.codepipeline import CodePipeline, make_client
from engine.devtools.emulator import CodePipelineEmulator, EmulatorServer
from engine.history import timeline
from engine.machine import JobState
from engine.registration import register
from engine.store import open_store
from engine.worker import Settings, Worker

TOKEN = "sandbox-travis-token"
"""A token the sandbox's Travis emulator accepts; the action gets it as a secret property."""


@dataclass(frozen=True)
class Scenario:
    pipeline: str
    repo: str
    result: str
    finish_after: float
    abandon: bool = False


SCENARIOS = (
    Scenario("web-release", "acme/web", "passed", finish_after=6.0),
    Scenario("api-release", "acme/api", "failed", finish_after=5.0),
    Scenario("docs-release", "acme/docs", "passed", finish_after=120.0, abandon=True),
)

SETTINGS = Settings(
    check_interval=1.0, poll_interval=1.0, poll_interval_min=0.1, progress_interval=3.0,
    continuation_timeout=30.0, backoff_initial=0.5, backoff_max=5.0, shutdown_grace=5.0,
)
"""Seconds instead of minutes, so the whole story fits in under a minute."""


def run_sandbox(directory: Path, say: Callable[[str], None], action_name: str = "travis",
                deadline: float = 90.0) -> int:
    """Returns 0 when every execution ended as its scenario says."""
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    db_path = directory / "state.db"
    seed = random.SystemRandom().randrange(2**31)  # fresh ids: never those of an earlier run
    codepipeline = CodePipelineEmulator(continuation_delay=0.5, ack_timeout=10.0, seed=seed)
    travis = TravisEmulator(build_delay=1.0, seed=seed)
    with EmulatorServer(codepipeline) as cp_server, EmulatorServer(travis) as travis_server:
        say(f"CodePipeline emulator  {cp_server.url}")
        say(f"Travis CI emulator     {travis_server.url}")
        os.environ["CPWORKER_TRAVIS_API_URL"] = travis_server.url
        client = make_client(cp_server.url, "us-east-1", "cpworker-sandbox",
                             credentials=("sandbox", "sandbox"))
        action: Action = load_action(action_name)()
        definition = action.definition()
        say(f"registered             {definition.type_id} "
            f"({register(client, definition).status})")
        started: dict[str, Scenario] = {}
        for scenario in SCENARIOS:
            travis.add_repository(scenario.repo, token=TOKEN)
            travis.set_schedule(scenario.repo, start_after=1.5,
                                finish_after=scenario.finish_after, result=scenario.result)
            owner, name = scenario.repo.split("/")
            execution = codepipeline.start_execution(
                str(definition.type_id),
                {"Owner": owner, "ProjectName": name, "Branch": "main", "APIToken": TOKEN},
                pipeline_name=scenario.pipeline, action=definition.type_id.provider)
            started[execution["actionExecutionId"]] = scenario
            say(f"pipeline started       {scenario.pipeline}: {scenario.repo} "
                f"({'abandoned mid-run' if scenario.abandon else 'build ' + scenario.result})")
        store = open_store(f"sqlite:///{db_path}")
        worker = Worker(store, CodePipeline(client), {action_name: action}, SETTINGS)
        say(f"state database         {db_path}\n")
        runner = threading.Thread(target=worker.run, kwargs={"until_idle": True},
                                  name="worker", daemon=True)
        begun = time.monotonic()
        runner.start()
        shown: dict[str, str] = {}
        abandoned: set[str] = set()
        while runner.is_alive() and time.monotonic() - begun < deadline:
            for job in store.list_jobs():
                found = started.get(job.execution_id)
                if found is None:
                    continue
                scenario = found
                summary = (job.details or {}).get("summary") or ""
                line = f"{job.state.value:<22} {summary}".rstrip()
                key = f"{job.execution_id}:{job.job_id}"
                if shown.get(key) != line:
                    shown[key] = line
                    say(f"  {time.monotonic() - begun:5.1f}s  {scenario.pipeline:<13} "
                        f"job {job.job_id[:8]}  {line}")
                if (scenario.abandon and job.execution_id not in abandoned
                        and job.external_id and job.state is JobState.RUNNING):
                    pipeline_execution = str(job.pipeline.get("pipeline_execution_id"))
                    codepipeline.stop_execution(pipeline_execution, abandon=True,
                                                reason="stopped from the console (sandbox)")
                    abandoned.add(job.execution_id)
                    say(f"  {time.monotonic() - begun:5.1f}s  {scenario.pipeline:<13} "
                        "execution stopped and abandoned in CodePipeline")
            runner.join(timeout=0.3)
        if runner.is_alive():
            worker.stop()
            runner.join(timeout=10)
            say(f"\nthe sandbox did not finish within {deadline:.0f} s")
            return 1
        say(f"\nall executions final after {time.monotonic() - begun:.1f} s\n")
        ok = True
        for execution_id, scenario in started.items():
            jobs = store.by_execution(execution_id)
            if not jobs:
                say(f"{scenario.pipeline}: no job was worked")
                ok = False
                continue
            say(timeline(store, jobs[-1]))
            expected = JobState.ABANDONED if scenario.abandon else (
                JobState.SUCCEEDED if scenario.result == "passed" else JobState.FAILED)
            ok = ok and jobs[-1].state is expected
        for build in travis.builds():
            say(f"Travis build {build['id']} of {build['repository']}: {build['state']}")
        submitted = len(travis.requests())
        say(f"Travis requests: {submitted} for {len(started)} executions")
        ok = ok and submitted == len(started)
        say(f"\nInspect it again with: cpworker --db sqlite:///{db_path} inspect <job-id>")
        store.close()
        return 0 if ok else 1
