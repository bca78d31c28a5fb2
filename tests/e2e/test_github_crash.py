"""The GitHub action under SIGKILL: a worker killed right after its dispatch (both API modes;
in GitHub Enterprise Server's mode, twenty executions in a row), and a worker killed every few
seconds while GitHub answers with errors and loses answers.

Every execution must end as its run did, with exactly one workflow run (the emulator's admin
view, which counts every dispatch that created a run, listed yet or not) and exactly one
accepted final result, and no GitHub token may reach the state database or the logs.
Everything talks real HTTP on 127.0.0.1; the kills land at exact crash points or after a
seeded number of recorded events, never after a sleep.
"""

from __future__ import annotations

import json
import random
import secrets
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from actions.github import MARKER_INPUT, REVISION_INPUT, GitHubAction, marker
from actions.github.emulator import GitHubEmulator
from engine.devtools.emulator import CodePipelineEmulator, EmulatorServer
from engine.devtools.testing import codepipeline_client
from tests.e2e.conftest import REPO, WorkerProcess, is_final_result, wait_until
from tests.e2e.test_travis_crash import _recorded_or_ended, events_recorded

FLAGS = (
    "--action", "github", "--poll-interval", "0.5", "--poll-interval-min", "0.05",
    "--check-interval", "0.3", "--backoff-initial", "0.1", "--backoff-max", "1",
    "--progress-interval", "2", "--continuation-timeout", "20", "--submit-window", "2",
    # Every new summary hands on, so the kills land among many reports and continuation jobs
    # (the chaos kit kills workers in the default mode, --progress link).
    "--progress", "every-change",
)
RUN_NAME = f"Deploy ${{{{ inputs.{REVISION_INPUT} }}}} [${{{{ inputs.{MARKER_INPUT} }}}}]"
WORKFLOW = "deploy.yml"
TYPE = "Test/Custom/GitHubActions/1"


@pytest.fixture
def emulators() -> Iterator[tuple[CodePipelineEmulator, str, GitHubEmulator, str]]:
    codepipeline = CodePipelineEmulator(continuation_delay=0.2, ack_timeout=3.0,
                                        seed=random.randrange(2**31))
    github = GitHubEmulator(run_delay=0.5, cancel_delay=0.2, seed=random.randrange(2**31))
    with EmulatorServer(codepipeline) as cp, EmulatorServer(github) as gh:
        codepipeline_client(cp.url).create_custom_action_type(
            **GitHubAction.definition().document)
        yield codepipeline, cp.url, github, gh.url
    codepipeline.close()


def spawn(directory: Path, cp_url: str, github_url: str, n: int, until_idle: bool = True,
          crash_at: str | None = None) -> WorkerProcess:
    env = {
        "AWS_ENDPOINT_URL_CODEPIPELINE": cp_url, "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "CPWORKER_GITHUB_API_URL": github_url, "PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin",
        # A resumed submission waits at most 2 s of window + 5 + 2 + 1 + 1 s of grace.
        "CPWORKER_GITHUB_TIMEOUT": "2", "CPWORKER_GITHUB_RUN_DELAY": "1",
    }
    if crash_at:
        env["CPWORKER_CRASH_AT"] = crash_at
    out, err = directory / f"worker-{n}.out", directory / f"worker-{n}.err"
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "engine.cli", "--db", f"sqlite:///{directory / 'state.db'}",
             "run", *(["--until-idle"] if until_idle else []), *FLAGS],
            env=env, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL, cwd=directory,
            start_new_session=True)
    return WorkerProcess(process, out, err)


def add_repository(github: GitHubEmulator, full_name: str, conclusion: str,
                   finish_after: float = 1.5) -> str:
    token = f"ghp_{secrets.token_hex(16)}"
    github.add_repository(full_name, token=token, workflows={WORKFLOW: {
        "name": "Deploy", "run_name": RUN_NAME,
        "inputs": {REVISION_INPUT: {"required": True}, MARKER_INPUT: {}}}})
    github.set_schedule(full_name, start_after=0.3, finish_after=finish_after,
                        conclusion=conclusion)
    return token


def start(codepipeline: CodePipelineEmulator, full_name: str, token: str) -> str:
    owner, name = full_name.split("/")
    started = codepipeline.start_execution(
        TYPE, {"Owner": owner, "Repository": name, "Workflow": WORKFLOW, "Ref": "main",
               "Token": token}, action="GitHub", pipeline_name=name)
    return str(started["actionExecutionId"])


def unfinished(codepipeline: CodePipelineEmulator) -> list[dict[str, Any]]:
    return [e for e in codepipeline.executions() if e["status"] in ("InProgress", "Stopping")]


def finish(codepipeline: CodePipelineEmulator, cp_url: str, github_url: str, directory: Path,
           workers: list[WorkerProcess]) -> None:
    """`cpworker run --until-idle` until CodePipeline holds nothing unfinished; each exits 0."""
    deadline = time.monotonic() + 90
    while unfinished(codepipeline) and time.monotonic() < deadline:
        worker = spawn(directory, cp_url, github_url, len(workers) + 1)
        workers.append(worker)
        assert worker.wait(60) == 0, worker.stderr[-3000:]
        assert "Traceback" not in worker.stderr, worker.stderr[-3000:]
        if unfinished(codepipeline):
            time.sleep(1.0)  # a job polled by a killed worker comes back after the ack timeout
    assert not unfinished(codepipeline)


def ended_as_run(codepipeline: CodePipelineEmulator, expected: dict[str, str]) -> None:
    """Every execution ended as its run did, reported exactly once."""
    by_execution = {e["actionExecutionId"]: e for e in codepipeline.executions()}
    jobs: dict[str, list[dict[str, Any]]] = {}
    for job in codepipeline.jobs():
        jobs.setdefault(job["actionExecutionId"], []).append(job)
    for execution_id, conclusion in expected.items():
        status = by_execution[execution_id]["status"]
        assert status == ("Succeeded" if conclusion == "success" else "Failed"), execution_id
        calls = [c for j in jobs[execution_id] for c in j["results"]]
        assert sum(is_final_result(c) for c in calls) == 1
        if conclusion != "success":
            assert by_execution[execution_id]["failureDetails"]["type"] == "JobFailed"


def one_run_each(github: GitHubEmulator, expected: Sequence[str]) -> None:
    runs: Counter[str] = Counter()
    for run in github.runs():
        runs[run["inputs"].get(MARKER_INPUT, "")] += 1
    assert sum(github.dispatches().values()) == len(expected) == len(github.runs())
    assert all(runs[marker(e)] == 1 for e in expected), runs


def no_token_at_rest(directory: Path, tokens: Sequence[str]) -> None:
    files = [p for p in directory.iterdir() if p.name.startswith(("state.db", "worker-"))]
    assert any(p.name == "state.db" for p in files)
    for path in files:
        content = path.read_bytes()
        for token in tokens:
            assert token.encode() not in content, f"a GitHub token is in {path.name}"


def inspect(directory: Path, execution_id: str, *extra: str) -> str:
    import sqlite3

    with sqlite3.connect(directory / "state.db") as conn:
        (job_id,) = conn.execute("SELECT job_id FROM jobs WHERE execution_id = ? LIMIT 1",
                                 (execution_id,)).fetchone()
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", "--db", f"sqlite:///{directory / 'state.db'}",
         "inspect", str(job_id), *extra],
        capture_output=True, text=True, timeout=30, cwd=REPO, check=True).stdout


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["details", "ghes"])
def test_a_worker_killed_right_after_its_dispatch_does_not_dispatch_again(
    emulators: tuple[CodePipelineEmulator, str, GitHubEmulator, str], tmp_path: Path,
    mode: str,
) -> None:
    """The kill lands between GitHub's answer and the record of the dispatch (after:submit):
    the next worker finds the run by its marker instead of dispatching a second one."""
    codepipeline, cp_url, github, github_url = emulators
    github.configure(return_run_details_supported=mode == "details")
    token = add_repository(github, "acme/site", "success")
    execution = start(codepipeline, "acme/site", token)
    workers = [spawn(tmp_path, cp_url, github_url, 1, crash_at="after:submit")]
    try:
        assert workers[0].wait(30) == -signal.SIGKILL, workers[0].stderr[-3000:]
        assert github.runs(), "the crash came before the dispatch"
        finish(codepipeline, cp_url, github_url, tmp_path, workers)
    finally:
        for worker in workers:
            worker.kill()
    ended_as_run(codepipeline, {execution: "success"})
    one_run_each(github, [execution])
    no_token_at_rest(tmp_path, [token])
    (run,) = github.runs()
    shown = inspect(tmp_path, execution)
    assert "took over from" in shown or "-- continued by worker" in shown, shown
    assert f"RunId={run['id']}" in shown, shown
    whole = inspect(tmp_path, execution, "--json")
    assert f"https://github.com/acme/site/actions/runs/{run['id']}" in whole
    assert run["inputs"][REVISION_INPUT] in whole
    json.loads(whole)


GHES_EXECUTIONS = 20


@pytest.mark.slow
def test_twenty_executions_each_killed_right_after_its_dispatch_in_ghes_mode(
    emulators: tuple[CodePipelineEmulator, str, GitHubEmulator, str], tmp_path: Path,
) -> None:
    """GitHub Enterprise Server's mode: the dispatch answers 204 (after a 400 to
    return_run_details, which each new worker process learns again), the run is listed only
    later, and the worker dies before the dispatch is recorded. Twenty in a row, each with its
    own killed worker and the worker that takes over: twenty runs, one per execution."""
    codepipeline, cp_url, github, github_url = emulators
    github.configure(return_run_details_supported=False)
    tokens: list[str] = []
    expected: dict[str, str] = {}
    workers: list[WorkerProcess] = []
    try:
        for n in range(GHES_EXECUTIONS):
            full_name = f"acme/service-{n}"
            conclusion = "success" if n % 3 else "failure"
            tokens.append(add_repository(github, full_name, conclusion, finish_after=0.8))
            execution = start(codepipeline, full_name, tokens[-1])
            expected[execution] = conclusion
            killed = spawn(tmp_path, cp_url, github_url, len(workers) + 1,
                           crash_at="after:submit")
            workers.append(killed)
            assert killed.wait(30) == -signal.SIGKILL, killed.stderr[-3000:]
            # Killed right after this execution's dispatch, before anything recorded it.
            assert github.dispatches()[full_name] == 1
            finish(codepipeline, cp_url, github_url, tmp_path, workers)
            one_run_each(github, list(expected))
    finally:
        for worker in workers:
            worker.kill()
    ended_as_run(codepipeline, expected)
    one_run_each(github, list(expected))
    no_token_at_rest(tmp_path, tokens)


@pytest.mark.slow
def test_executions_survive_a_worker_killed_every_few_seconds_while_github_misbehaves(
    emulators: tuple[CodePipelineEmulator, str, GitHubEmulator, str], tmp_path: Path,
) -> None:
    """Six executions in GitHub Enterprise Server's mode, four kills after a seeded number of
    recorded events, while GitHub answers one call in ten with a 500 after carrying it out
    and loses one answer in twenty."""
    codepipeline, cp_url, github, github_url = emulators
    github.configure(return_run_details_supported=False)
    github.errors_after_effect = True
    github.faults.configure(error_rate=0.1, lost_rate=0.05)
    tokens, expected = [], {}
    for n in range(6):
        full_name = f"acme/app-{n}"
        conclusion = "success" if n % 2 else "failure"
        tokens.append(add_repository(github, full_name, conclusion, finish_after=4.0))
        expected[start(codepipeline, full_name, tokens[-1])] = conclusion
    workers: list[WorkerProcess] = []
    chance = random.Random(20261201)
    try:
        kills = 0
        while kills < 4 and unfinished(codepipeline):
            target = events_recorded(tmp_path) + chance.randint(10, 40)
            worker = spawn(tmp_path, cp_url, github_url, len(workers) + 1, until_idle=False)
            workers.append(worker)
            wait_until(f"event {target} to be recorded",
                       _recorded_or_ended(tmp_path, worker, target), 60.0)
            if worker.process.poll() is None:
                worker.process.send_signal(signal.SIGKILL)
                assert worker.process.wait(10) == -signal.SIGKILL
                assert events_recorded(tmp_path) >= target and unfinished(codepipeline)
                kills += 1
        assert kills == 4, "the executions finished before the worker could be killed enough"
        github.faults.configure(error_rate=0.0, lost_rate=0.0)
        finish(codepipeline, cp_url, github_url, tmp_path, workers)
    finally:
        for worker in workers:
            worker.kill()
    ended_as_run(codepipeline, expected)
    one_run_each(github, list(expected))
    no_token_at_rest(tmp_path, tokens)
