"""The Travis action under SIGKILL: 30 executions, the worker killed every few seconds; and 20
killed right after their POSTs while Travis takes longer to process a request than the action's
grace.

Every execution must end as its build did, with exactly one Travis request (found by the marker
in its message) and exactly one accepted final result, and no Travis token may reach the state
database or the logs. Everything talks real HTTP on 127.0.0.1; the kills are bounded in number.
"""

from __future__ import annotations

import random
import secrets
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from actions.travis import TravisAction
from actions.travis.emulator import TravisEmulator
from engine.devtools.emulator import CodePipelineEmulator, EmulatorServer
from engine.devtools.testing import codepipeline_client
from tests.e2e.conftest import REPO, WorkerProcess, is_final_result, wait_until

REPOS = [(f"acme/service-{n}", "passed" if n % 3 else "failed") for n in range(6)]
EXECUTIONS_PER_REPO = 5
KILLS = 6
FLAGS = (
    "--action", "travis", "--poll-interval", "0.5", "--poll-interval-min", "0.05",
    "--check-interval", "0.3", "--backoff-initial", "0.1", "--backoff-max", "1",
    "--progress-interval", "2", "--continuation-timeout", "20",
)


@pytest.fixture
def emulators() -> Iterator[tuple[CodePipelineEmulator, str, TravisEmulator, str]]:
    codepipeline = CodePipelineEmulator(continuation_delay=0.2, ack_timeout=3.0,
                                        seed=random.randrange(2**31))
    travis = TravisEmulator(build_delay=0.5, seed=1)
    with EmulatorServer(codepipeline) as cp, EmulatorServer(travis) as tr:
        yield codepipeline, cp.url, travis, tr.url


def spawn(directory: Path, cp_url: str, travis_url: str, n: int,
          until_idle: bool = True, crash_at: str | None = None,
          extra: Sequence[str] = ()) -> WorkerProcess:
    env = {
        "AWS_ENDPOINT_URL_CODEPIPELINE": cp_url, "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "CPWORKER_TRAVIS_API_URL": travis_url, "PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin",
        "CPWORKER_TRAVIS_TIMEOUT": "4",  # so a resumed submission waits 10 s, not 26
    }
    if crash_at:
        env["CPWORKER_CRASH_AT"] = crash_at
    out, err = directory / f"worker-{n}.out", directory / f"worker-{n}.err"
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "engine.cli", "--db", f"sqlite:///{directory / 'state.db'}",
             "run", *(["--until-idle"] if until_idle else []), *FLAGS, *extra],
            env=env, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL, cwd=directory,
            start_new_session=True)
    return WorkerProcess(process, out, err)


def start_all(codepipeline: CodePipelineEmulator, cp_url: str, travis: TravisEmulator,
              per_repo: int, finish_after: float,
              repos: Sequence[tuple[str, str]] = REPOS) -> tuple[dict[str, str], dict[str, str]]:
    """Repositories with fresh tokens and `per_repo` executions each; returns tokens, results."""
    codepipeline_client(cp_url).create_custom_action_type(**TravisAction.definition().document)
    tokens: dict[str, str] = {}
    expected: dict[str, str] = {}
    for slug, result in repos:
        tokens[slug] = f"travis-token-{secrets.token_hex(12)}"
        travis.add_repository(slug, token=tokens[slug])
        travis.set_schedule(slug, start_after=1.0, finish_after=finish_after, result=result)
        owner, name = slug.split("/")
        for _ in range(per_repo):
            started = codepipeline.start_execution(
                "Test/Custom/Travis/1",
                {"Owner": owner, "ProjectName": name, "Branch": "main",
                 "APIToken": tokens[slug]},
                action="Travis", pipeline_name=name)
            expected[started["actionExecutionId"]] = result
    return tokens, expected


def finish(codepipeline: CodePipelineEmulator, cp_url: str, travis_url: str, directory: Path,
           workers: list[WorkerProcess], extra: Sequence[str] = ()) -> None:
    """`cpworker run --until-idle` until CodePipeline holds nothing unfinished; each exits 0."""
    deadline = time.monotonic() + 90
    while unfinished(codepipeline) and time.monotonic() < deadline:
        worker = spawn(directory, cp_url, travis_url, len(workers) + 1, extra=extra)
        workers.append(worker)
        assert worker.wait(60) == 0, worker.stderr[-3000:]
        assert "Traceback" not in worker.stderr, worker.stderr[-3000:]
        if unfinished(codepipeline):
            time.sleep(1.0)  # a job polled by a killed worker comes back after the ack timeout
    assert not unfinished(codepipeline)


def ended_as_built(codepipeline: CodePipelineEmulator, expected: dict[str, str]) -> None:
    """Every execution ended as its build did, reported exactly once."""
    by_execution = {e["actionExecutionId"]: e for e in codepipeline.executions()}
    jobs_by_execution: dict[str, list[dict[str, Any]]] = {}
    for job in codepipeline.jobs():
        jobs_by_execution.setdefault(job["actionExecutionId"], []).append(job)
    for execution_id, result in expected.items():
        status = by_execution[execution_id]["status"]
        assert status == ("Succeeded" if result == "passed" else "Failed"), execution_id
        calls = [c for j in jobs_by_execution[execution_id] for c in j["results"]]
        assert sum(is_final_result(c) for c in calls) == 1
        for job in jobs_by_execution[execution_id]:
            assert sum(c["accepted"] for c in job["results"]) <= 1
        if result == "failed":
            assert by_execution[execution_id]["failureDetails"]["type"] == "JobFailed"


def one_request_each(travis: TravisEmulator, expected: dict[str, str]) -> None:
    requests: Counter[str] = Counter()
    for request in travis.requests():
        for execution_id in expected:
            if f"[cpworker:{execution_id}]" in (request["message"] or ""):
                requests[execution_id] += 1
    assert len(travis.requests()) == len(expected)
    assert all(requests[e] == 1 for e in expected), requests


def unfinished(codepipeline: CodePipelineEmulator) -> list[dict[str, Any]]:
    return [e for e in codepipeline.executions() if e["status"] in ("InProgress", "Stopping")]


@pytest.mark.slow
def test_thirty_travis_executions_survive_a_worker_killed_every_few_seconds(
    emulators: tuple[CodePipelineEmulator, str, TravisEmulator, str], tmp_path: Path,
) -> None:
    codepipeline, cp_url, travis, travis_url = emulators
    tokens, expected = start_all(codepipeline, cp_url, travis, EXECUTIONS_PER_REPO, 20.0)
    workers: list[WorkerProcess] = []
    chance = random.Random(20261128)
    try:
        kills = 0
        while kills < KILLS and unfinished(codepipeline):
            # Each worker lives until it has recorded a seeded number of events (about one to
            # two seconds of this run's work), read from the log: never a wall-clock sleep.
            target = events_recorded(tmp_path) + chance.randint(10, 60)
            worker = spawn(tmp_path, cp_url, travis_url, len(workers) + 1, until_idle=False)
            workers.append(worker)
            wait_until(f"event {target} to be recorded", _recorded_or_ended(tmp_path, worker,
                                                                            target), 60.0)
            if worker.process.poll() is None:
                worker.process.send_signal(signal.SIGKILL)
                assert worker.process.wait(10) == -signal.SIGKILL
                # The kill's window: after the chosen event, with executions still running.
                assert events_recorded(tmp_path) >= target and unfinished(codepipeline)
                kills += 1
        assert kills == KILLS, "the executions finished before the worker could be killed enough"
        finish(codepipeline, cp_url, travis_url, tmp_path, workers)
    finally:
        for worker in workers:
            worker.kill()

    ended_as_built(codepipeline, expected)

    # Exactly one Travis request per execution, whatever the kills interrupted.
    one_request_each(travis, expected)

    # No token anywhere at rest.
    files = [p for p in tmp_path.iterdir() if p.name.startswith(("state.db", "worker-"))]
    assert any(p.name == "state.db" for p in files)
    for path in files:
        content = path.read_bytes()
        for token in tokens.values():
            assert token.encode() not in content, f"a Travis token is in {path.name}"


@pytest.mark.slow
@pytest.mark.parametrize("point", ["after:submit", "before:check", "after:report_progress"])
def test_a_worker_killed_right_after_its_travis_request_does_not_send_another(
    emulators: tuple[CodePipelineEmulator, str, TravisEmulator, str], tmp_path: Path, point: str,
) -> None:
    """The kill lands between Travis's 202 and the record of the request id (after:submit):
    the next worker must find the request by its marker instead of sending a second one."""
    codepipeline, cp_url, travis, travis_url = emulators
    _, expected = start_all(codepipeline, cp_url, travis, 1, 3.0)
    workers = [spawn(tmp_path, cp_url, travis_url, 1, crash_at=point)]
    try:
        assert workers[0].wait(30) == -signal.SIGKILL, workers[0].stderr[-3000:]
        assert travis.requests(), "the crash came before any request was sent"
        finish(codepipeline, cp_url, travis_url, tmp_path, workers)
    finally:
        for worker in workers:
            worker.kill()
    one_request_each(travis, expected)
    shown = subprocess.run(
        [sys.executable, "-m", "engine.cli", "--db", f"sqlite:///{tmp_path / 'state.db'}",
         "inspect", _first_job(tmp_path)],
        capture_output=True, text=True, timeout=30, cwd=REPO).stdout
    assert "took over from" in shown or "-- continued by worker" in shown, shown


def events_recorded(directory: Path) -> int:
    """Events in the state database as another process sees them (0 before it exists)."""
    try:
        with closing(sqlite3.connect(directory / "state.db", timeout=10)) as conn:
            return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])
    except sqlite3.OperationalError:  # no file or no table yet: the first worker migrates
        return 0


def _recorded_or_ended(directory: Path, worker: WorkerProcess,
                       target: int) -> Callable[[], bool]:
    return lambda: events_recorded(directory) >= target or worker.process.poll() is not None


def _first_job(directory: Path) -> str:
    """The id of the first job the worker recorded (the one the killed process started)."""
    with sqlite3.connect(directory / "state.db") as conn:
        row = conn.execute("SELECT job_id FROM events WHERE seq = 1 ORDER BY at LIMIT 1").fetchone()
    return str(row[0])


SLOW_REPOS = [(f"acme/slow-{n}", "passed" if n % 2 else "failed") for n in range(4)]
PROCESSING = 20.0
"""Seconds Travis takes here to process a request: longer than the action's grace (10 s with
CPWORKER_TRAVIS_TIMEOUT=4) plus the call window (2 s below), so the worker that takes over
looks while the requests are still pending, without branch or message (travis-api
queries/request.rb#create_request), and must wait rather than trigger again."""
SLOW_FLAGS = ("--submit-window", "2")


@pytest.mark.slow
def test_twenty_executions_killed_after_their_posts_while_travis_processes_slowly(
    tmp_path: Path,
) -> None:
    codepipeline = CodePipelineEmulator(continuation_delay=0.2, ack_timeout=3.0,
                                        seed=random.randrange(2**31))
    travis = TravisEmulator(build_delay=PROCESSING, seed=2)
    workers: list[WorkerProcess] = []
    with EmulatorServer(codepipeline) as cp, EmulatorServer(travis) as tr:
        _, expected = start_all(codepipeline, cp.url, travis, 5, 3.0, SLOW_REPOS)
        assert len(expected) == 20
        began = time.monotonic()
        try:
            workers.append(spawn(tmp_path, cp.url, tr.url, 1, crash_at="after:submit",
                                 extra=SLOW_FLAGS))
            assert workers[0].wait(30) == -signal.SIGKILL, workers[0].stderr[-3000:]
            landed = travis.requests()
            assert landed, "the crash came before any request was sent"
            assert all(r["state"] == "pending" for r in landed)
            finish(codepipeline, cp.url, tr.url, tmp_path, workers, extra=SLOW_FLAGS)
        finally:
            for worker in workers:
                worker.kill()
        took = time.monotonic() - began
    ended_as_built(codepipeline, expected)
    one_request_each(travis, expected)
    # The takeover met requests Travis did not show yet, and waited for them.
    with sqlite3.connect(tmp_path / "state.db") as conn:
        waits = [row[0] for row in conn.execute(
            "SELECT data FROM events WHERE type = 'attempt_failed'")]
    assert any("still pending" in w for w in waits), waits[:5]
    assert took < 120, f"took {took:.0f} s"
