"""The end-to-end kit: the real `cpworker run` as a subprocess, the emulator over real HTTP.

Nothing is mocked: the worker is `python -m engine.cli run` in its own process, talking SigV4
JSON to the CodePipeline emulator on 127.0.0.1, keeping its state in a real SQLite file, and
running the ledger test action, whose "external system" is a directory every process shares.
Every wait has a deadline, and every process a test starts is killed at teardown if it is
still alive.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from engine.cli import main
from engine.devtools.emulator import CodePipelineEmulator, EmulatorServer
from engine.devtools.testing import codepipeline_client
from engine.machine import JobState
from engine.projection import Job
from engine.store import EventStore, open_store
from tests.actions.ledger import EXPECTED_TOKEN_PREFIX, LedgerAction

REPO = Path(__file__).resolve().parents[2]
LEDGER_TYPE = "Test/Custom/Ledger/1"
LEDGER_ACTION = "tests.actions.ledger:LedgerAction"

FAST = (
    "--poll-interval", "0.3", "--poll-interval-min", "0.05", "--check-interval", "0.1",
    "--backoff-initial", "0.05", "--backoff-max", "0.3", "--continuation-timeout", "5",
)
"""Intervals that make a whole pipeline execution take about a second on the real clock."""

RUN_TIMEOUT = 45.0
"""No single `cpworker run --until-idle` here needs more than a few seconds."""


@dataclass(frozen=True)
class Expect:
    """How an execution must end, in CodePipeline and in the worker's projection."""

    status: str
    failure_type: str | None
    state: JobState
    submitted: bool


EXPECT = {
    "pass": Expect("Succeeded", None, JobState.SUCCEEDED, True),
    "fail": Expect("Failed", "JobFailed", JobState.FAILED, True),
    "error": Expect("Failed", "SystemUnavailable", JobState.FAILED, True),
}
REFUSED = Expect("Failed", "PermissionError", JobState.FAILED, False)
"""A token without the ledger's prefix: the ledger refuses it and no run starts."""


@dataclass(frozen=True)
class Execution:
    outcome: str
    token: str
    pipeline_execution_id: str
    action_execution_id: str
    first_job_id: str
    expect: Expect


def is_final_result(call: Mapping[str, Any]) -> bool:
    """An accepted result that ends the execution (not a progress report with a token)."""
    if not call["accepted"]:
        return False
    return call["operation"] == "PutJobFailureResult" or "continuationToken" not in call["request"]


@dataclass
class WorkerProcess:
    """One `cpworker run` subprocess and the files its output goes to."""

    process: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path

    @property
    def returncode(self) -> int | None:
        return self.process.returncode

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    @property
    def worker_id(self) -> str:
        """host:pid:random, as the worker logs it at start and records it with its events."""
        found = re.search(r"worker (\S+) starting", self.stderr)
        assert found, self.stderr[-2000:]
        return found.group(1)

    def output(self) -> str:
        return self.stdout_path.read_text(errors="replace") + self.stderr

    def wait(self, timeout: float = RUN_TIMEOUT) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"cpworker did not exit within {timeout:g} s; the end of its log:\n"
                f"{self.stderr[-4000:]}"
            ) from None

    def wait_for_log(self, text: str, timeout: float = 20.0) -> None:
        """Until `text` is in its stderr; fails if the process exits or the deadline passes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.stderr:
                return
            if self.process.poll() is not None:
                raise AssertionError(f"cpworker exited ({self.process.returncode}) before logging "
                                     f"{text!r}:\n{self.stderr[-4000:]}")
            time.sleep(0.02)
        raise AssertionError(f"cpworker did not log {text!r} within {timeout:g} s")

    def signal(self, signum: int) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signum)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)


class E2E:
    """One emulator, one state database, one ledger directory, and the workers run on them."""

    def __init__(self, emulator: CodePipelineEmulator, server: EmulatorServer,
                 directory: Path) -> None:
        self.emulator = emulator
        self.url = server.url
        self.directory = directory
        self.ledger = directory / "ledger"
        self.ledger.mkdir()
        self.db_path = directory / "state.db"
        self.db_url = f"sqlite:///{self.db_path}"
        self.executions: list[Execution] = []
        self.workers: list[WorkerProcess] = []
        codepipeline_client(self.url).create_custom_action_type(
            **LedgerAction.definition().document)

    # --- CodePipeline's side --------------------------------------------------------------------

    def start(self, outcome: str, steps: int = 2, token: str | None = None) -> Execution:
        """A pipeline execution reaching the ledger action, with a fresh secret token."""
        token = token or f"{EXPECTED_TOKEN_PREFIX}{secrets.token_hex(16)}"
        started = self.emulator.start_execution(
            LEDGER_TYPE,
            {"Ledger": str(self.ledger), "Outcome": outcome, "Steps": str(steps), "Token": token},
            action="Ledger", pipeline_name=f"e2e-{outcome}-{len(self.executions) + 1}",
        )
        expect = EXPECT[outcome] if token.startswith(EXPECTED_TOKEN_PREFIX) else REFUSED
        execution = Execution(outcome, token, started["pipelineExecutionId"],
                              started["actionExecutionId"], started["jobId"], expect)
        self.executions.append(execution)
        return execution

    def emulator_jobs(self, execution: Execution) -> list[dict[str, Any]]:
        return [j for j in self.emulator.jobs()
                if j["actionExecutionId"] == execution.action_execution_id]

    def emulator_execution(self, execution: Execution) -> dict[str, Any]:
        return self.emulator.execution(execution.pipeline_execution_id)

    def results(self, execution: Execution) -> list[dict[str, Any]]:
        """Every result call CodePipeline received for the execution's jobs, refused ones too."""
        return [call for job in self.emulator_jobs(execution) for call in job["results"]]

    def unfinished(self) -> list[Execution]:
        return [e for e in self.executions
                if self.emulator_execution(e)["status"] in ("InProgress", "Stopping")]

    # --- the external system --------------------------------------------------------------------

    def submissions(self) -> list[list[str]]:
        """submissions.log: one `executionId runId jobId` line per run the ledger really started."""
        log = self.ledger / "submissions.log"
        if not log.exists():
            return []
        return [line.split() for line in log.read_text().splitlines() if line.strip()]

    def run_file(self, execution: Execution) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(
            (self.ledger / f"{execution.action_execution_id}.json").read_text())
        return data

    # --- the worker -----------------------------------------------------------------------------

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("AWS_", "CPWORKER_", "PYTHON"))}
        env.update({
            "AWS_ENDPOINT_URL_CODEPIPELINE": self.url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
            "PYTHONPATH": str(REPO),
            "PYTHONUNBUFFERED": "1",
        })
        env.update(extra or {})
        return env

    def spawn(self, *flags: str, env: Mapping[str, str] | None = None,
              until_idle: bool = True) -> WorkerProcess:
        """Start `cpworker run` (fast intervals, the ledger action) and return at once."""
        n = len(self.workers) + 1
        command = [sys.executable, "-m", "engine.cli", "--db", self.db_url, "run",
                   *(["--until-idle"] if until_idle else []), "--action", LEDGER_ACTION,
                   *FAST, *flags]
        stdout_path = self.directory / f"worker-{n}.out"
        stderr_path = self.directory / f"worker-{n}.err"
        with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
            process = subprocess.Popen(command, env=self.env(env), cwd=self.directory,
                                       stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                       start_new_session=True)
        worker = WorkerProcess(process, stdout_path, stderr_path)
        self.workers.append(worker)
        return worker

    def run(self, *flags: str, env: Mapping[str, str] | None = None,
            timeout: float = RUN_TIMEOUT) -> WorkerProcess:
        """`cpworker run --until-idle` to its end; the caller asserts the exit code."""
        worker = self.spawn(*flags, env=env)
        worker.wait(timeout)
        return worker

    def crash(self, point: str, *flags: str, env: Mapping[str, str] | None = None,
              timeout: float = 30.0) -> WorkerProcess:
        """A run that must die by SIGKILL at `point` (CPWORKER_CRASH_AT): never vacuously."""
        worker = self.run(*flags, env={**(env or {}), "CPWORKER_CRASH_AT": point},
                          timeout=timeout)
        assert worker.returncode == -signal.SIGKILL, (
            f"crash point {point!r} was never reached: the worker exited {worker.returncode}\n"
            f"{worker.stderr[-3000:]}"
        )
        return worker

    def finish(self, *flags: str, env: Mapping[str, str] | None = None,
               deadline: float = 40.0) -> list[WorkerProcess]:
        """`cpworker run --until-idle` until CodePipeline has nothing unfinished; each exits 0.

        One run is enough unless a killed worker had polled a job without recording it: such a
        job comes back only when CodePipeline's acknowledgement timeout hands it out again, and
        an idle worker cannot know it is owed one, so it is run again after that.
        """
        runs: list[WorkerProcess] = []
        end = time.monotonic() + deadline
        while True:
            worker = self.run(*flags, env=env, timeout=max(5.0, end - time.monotonic()))
            assert worker.returncode == 0, f"cpworker exited {worker.returncode}:\n" \
                                           f"{worker.stderr[-4000:]}"
            assert "Traceback" not in worker.stderr, worker.stderr[-4000:]
            runs.append(worker)
            if not self.unfinished() or time.monotonic() > end:
                return runs
            time.sleep(0.5)

    def kill_all(self) -> None:
        for worker in self.workers:
            worker.kill()

    # --- reading what it wrote ------------------------------------------------------------------

    @contextmanager
    def store(self) -> Iterator[EventStore]:
        store = open_store(self.db_url)
        try:
            yield store
        finally:
            store.close()

    def worker_jobs(self, execution: Execution) -> list[Job]:
        with self.store() as store:
            return store.by_execution(execution.action_execution_id)

    def event_types(self, job_id: str) -> list[str]:
        with self.store() as store:
            return [e.type for e in store.history(job_id)]

    def cli(self, *args: str) -> Result:
        """A read-only cpworker command on this database, in-process through click's CliRunner."""
        return invoke("--db", self.db_url, *args)

    def cli_process(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """The same as a real subprocess."""
        return subprocess.run(
            [sys.executable, "-m", "engine.cli", "--db", self.db_url, *args], env=self.env(),
            cwd=self.directory, capture_output=True, text=True, timeout=timeout, check=False,
        )

    # --- the verdict ----------------------------------------------------------------------------

    def assert_ended_right(self, executions: Sequence[Execution] | None = None) -> None:
        """Each execution ended as its Outcome says, with one run and one accepted final result;
        the worker's projection agrees, and its histories replay."""
        executions = list(self.executions if executions is None else executions)
        started = Counter(line[0] for line in self.submissions())
        assert set(started) <= {e.action_execution_id for e in self.executions}, started
        run_ids = {line[0]: line[1] for line in self.submissions()}
        for execution in executions:
            where = f"{execution.outcome} execution {execution.action_execution_id}"
            view = self.emulator_execution(execution)
            jobs = self.emulator_jobs(execution)
            assert view["status"] == execution.expect.status, (where, view)
            assert started[execution.action_execution_id] == int(execution.expect.submitted), (
                f"{where}: the ledger started {started[execution.action_execution_id]} run(s)")
            for job in jobs:
                accepted = [r for r in job["results"] if r["accepted"]]
                assert len(accepted) <= 1, (where, job["id"], job["results"])
            finals = [r for job in jobs for r in job["results"] if is_final_result(r)]
            assert len(finals) == 1, (where, finals)
            final = finals[0]
            if execution.expect.failure_type is None:
                assert final["operation"] == "PutJobSuccessResult", (where, final)
                assert final["request"]["outputVariables"] == {
                    "RunId": run_ids[execution.action_execution_id]}
            else:
                assert final["operation"] == "PutJobFailureResult", (where, final)
                assert final["request"]["failureDetails"]["type"] == \
                    execution.expect.failure_type, (where, final)
            mine = self.worker_jobs(execution)
            assert {j.job_id for j in mine} == {j["id"] for j in jobs}, where
            assert [j.state for j in mine] == (
                [JobState.HANDED_ON] * (len(mine) - 1) + [execution.expect.state]
            ), (where, [(j.job_id, j.state.value, j.reason) for j in mine])
        replayed = self.cli("replay", "--all")
        assert replayed.exit_code == 0, replayed.output


def invoke(*args: str) -> Result:
    """`cpworker *args` through CliRunner, leaving the test process's logging as it was."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        return CliRunner().invoke(main, list(args), catch_exceptions=False)
    finally:
        for handler in list(root.handlers):
            if handler not in handlers:
                root.removeHandler(handler)
        for handler in handlers:
            if handler not in root.handlers:
                root.addHandler(handler)
        root.setLevel(level)


def wait_until(what: str, condition: Callable[[], bool], timeout: float = 20.0,
               every: float = 0.01) -> None:
    """Poll `condition()` until it is true; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)


@pytest.fixture
def e2e(codepipeline_emulator: tuple[CodePipelineEmulator, EmulatorServer],
        tmp_path: Path) -> Iterator[E2E]:
    emulator, server = codepipeline_emulator
    kit = E2E(emulator, server, tmp_path)
    try:
        yield kit
    finally:
        kit.kill_all()


@pytest.fixture
def silent_codepipeline() -> Iterator[str]:
    """A CodePipeline endpoint that accepts connections and never answers: a hung poll."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        for conn in held:
            conn.close()
        listener.close()
