"""The chaos kit: real workers started, killed and restarted against the emulators, and the verdict.

Everything is real: `cpworker run` processes, SQLite files or the throwaway PostgreSQL cluster,
HTTP to the CodePipeline and Travis emulators on 127.0.0.1, the ledger's directory. Kill moments
come from what the workers record (the start line a worker logs, then a seeded number of events
it commits to the log) or from crash points, so a faster or slower machine kills at the same
point of the work; only scenario g, whose premise is a restart period shorter than a grace in
seconds, lives so many seconds. Every test prints its
figures in one line (and appends them as JSON to $CPWORKER_CHAOS_REPORT when that is set).
"""

from __future__ import annotations

import json
import os
import random
import secrets
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from actions.travis.emulator import TravisEmulator
from engine.devtools.emulator import CodePipelineEmulator
from engine.devtools.testing import codepipeline_client
from engine.machine import JobState
from engine.store import EventStore, open_store
from engine.worker import EXIT_NOT_POLLED
from tests.actions.ledger import EXPECTED_TOKEN_PREFIX, requests_of
from tests.e2e.conftest import EXPECT as E2E_EXPECT
from tests.e2e.conftest import REPO, Expect, WorkerProcess, invoke, is_final_result

REPORT_ENV = "CPWORKER_CHAOS_REPORT"
"""A file to which every chaos test appends its figures as one JSON line."""

FLAGS = (
    "--poll-interval", "0.5", "--poll-interval-min", "0.05", "--check-interval", "0.3",
    "--backoff-initial", "0.1", "--backoff-max", "1", "--progress-interval", "2",
    "--continuation-timeout", "120", "--shutdown-grace", "10",
)
"""Intervals that make a ledger execution of ten checks take a few seconds on the real clock."""

TRAVIS_TIMEOUT = "4"
"""CPWORKER_TRAVIS_TIMEOUT for the workers: the Travis action's submit_grace becomes 10 s."""


@dataclass(frozen=True)
class Kind:
    """An action as the chaos tests run it: how a worker loads it, and its type in CodePipeline."""

    name: str
    spec: str
    """What `cpworker run --action` takes."""
    type_id: str
    provider: str
    ledger: bool
    """Its external system is the ledger directory (else the Travis emulator)."""


KINDS = {
    "ledger": Kind("ledger", "tests.actions.ledger:LedgerAction", "Test/Custom/Ledger/1",
                   "Ledger", True),
    "other-ledger": Kind("other-ledger", "tests.actions.ledger:OtherLedgerAction",
                         "Test/Custom/OtherLedger/1", "OtherLedger", True),
    "late-ledger": Kind("late-ledger", "tests.actions.ledger:LateLedgerAction",
                        "Test/Custom/Ledger/1", "Ledger", True),
    "travis": Kind("travis", "travis", "Test/Custom/Travis/1", "Travis", False),
}

EXPECT = {outcome: E2E_EXPECT[outcome] for outcome in ("pass", "fail")}
CONFIGURATION_ERROR = Expect("Failed", "ConfigurationError", JobState.FAILED, False)
"""A job whose data cannot be worked: failed at once, nothing submitted."""


@dataclass(frozen=True)
class Run:
    """One pipeline execution the test started, and how it must end."""

    kind: Kind
    outcome: str
    pipeline_execution_id: str
    action_execution_id: str
    expect: Expect
    token: str
    slug: str | None = None

    @property
    def where(self) -> str:
        return f"{self.kind.name} {self.outcome} execution {self.action_execution_id}"


@dataclass
class Figures:
    """What a chaos test reports: the acceptance's columns, plus figures of its own."""

    scenario: str
    executions: int = 0
    kills: int = 0
    restarts: int = 0
    duplicates: int = 0
    lost_results: int = 0
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)

    def line(self) -> str:
        head = (f"executions={self.executions} kills={self.kills} restarts={self.restarts} "
                f"duplicates={self.duplicates} lost_results={self.lost_results} "
                f"seconds={self.seconds:.1f}")
        tail = " ".join(f"{k}={_fmt(v)}" for k, v in self.extra.items())
        return f"chaos {self.scenario}: {head}{' ' + tail if tail else ''}"

    def emit(self, directory: Path) -> None:
        """Print the line, keep it beside the test's files, and append it to the report."""
        self.seconds = time.monotonic() - self.started
        line = self.line()
        print(line, flush=True)
        RECORDED.append(line)
        with open(directory / "chaos-figures.txt", "a") as out:
            out.write(line + "\n")
        report = os.environ.get(REPORT_ENV)
        if report:
            record = {"scenario": self.scenario, "executions": self.executions,
                      "kills": self.kills, "restarts": self.restarts,
                      "duplicates": self.duplicates, "lost_results": self.lost_results,
                      "seconds": round(self.seconds, 1), **self.extra}
            with open(report, "a") as out:
                out.write(json.dumps(record) + "\n")


RECORDED: list[str] = []
"""Every figures line of the session, printed again at its end (conftest)."""


def _fmt(value: Any) -> str:
    return f"{value:.1f}" if isinstance(value, float) else str(value)


@dataclass
class Proc:
    """One worker process and what the test did to it."""

    worker: WorkerProcess
    label: str
    kinds: tuple[str, ...]
    killed: bool = False
    stopped: bool = False

    @property
    def alive(self) -> bool:
        return self.worker.process.poll() is None

    def started(self) -> bool:
        """It logged its start line (its engine is up)."""
        return "starting" in self.worker.stderr

    def worker_id(self) -> str | None:
        try:
            return self.worker.worker_id
        except AssertionError:
            return None


class Chaos:
    """Emulators, one state database, one ledger directory, and the workers run on them."""

    def __init__(self, directory: Path, db_url: str, codepipeline: CodePipelineEmulator,
                 cp_url: str, travis: TravisEmulator | None = None,
                 travis_url: str | None = None) -> None:
        self.directory = directory
        self.db_url = db_url
        self.codepipeline = codepipeline
        self.cp_url = cp_url
        self.travis = travis
        self.travis_url = travis_url
        self.ledger = directory / "ledger"
        self.ledger.mkdir(exist_ok=True)
        self.runs: list[Run] = []
        self.procs: list[Proc] = []
        self.kills = 0
        self.exits: list[str] = []
        """Workers that ended by themselves (neither killed nor stopped by the test): findings."""
        self._registered: set[str] = set()
        self._helpers: list[subprocess.Popen[bytes]] = []
        self._counter: sa.Engine | None = None

    # --- CodePipeline's side ----------------------------------------------------------------

    def register(self, kind: Kind) -> None:
        if kind.type_id in self._registered:
            return
        if kind.ledger:
            from tests.actions.ledger import LedgerAction, OtherLedgerAction

            cls = OtherLedgerAction if kind.name == "other-ledger" else LedgerAction
            document = cls.definition().document
        else:
            from actions.travis import TravisAction

            document = TravisAction.definition().document
        codepipeline_client(self.cp_url).create_custom_action_type(**document)
        self._registered.add(kind.type_id)

    def start(self, kind: str, outcome: str, steps: int = 10,
              expect: Expect | None = None) -> Run:
        """A pipeline execution reaching the action, with a fresh secret token."""
        chosen = KINDS[kind]
        self.register(chosen)
        n = len(self.runs) + 1
        if chosen.ledger:
            token = f"{EXPECTED_TOKEN_PREFIX}{secrets.token_hex(12)}"
            configuration = {"Ledger": str(self.ledger), "Outcome": outcome,
                             "Steps": str(steps), "Token": token}
            slug = None
        else:
            assert self.travis is not None, "a Travis execution needs the Travis emulator"
            token = f"travis-token-{secrets.token_hex(12)}"
            slug = f"acme/{outcome}-{n}"
            self.travis.add_repository(slug, token=token, request_limit=1000)
            self.travis.set_schedule(slug, start_after=1.0, finish_after=float(steps) * 0.6,
                                     result="passed" if outcome == "pass" else "failed")
            owner, name = slug.split("/")
            configuration = {"Owner": owner, "ProjectName": name, "Branch": "main",
                             "APIToken": token}
        started = self.codepipeline.start_execution(
            chosen.type_id, configuration, action=chosen.provider,
            pipeline_name=f"chaos-{chosen.name}-{n}")
        run = Run(chosen, outcome, started["pipelineExecutionId"], started["actionExecutionId"],
                  expect or EXPECT[outcome], token, slug)
        self.runs.append(run)
        return run

    def unfinished(self) -> list[Run]:
        status = {e["id"]: e["status"] for e in self.codepipeline.executions()}
        return [r for r in self.runs if status[r.pipeline_execution_id] in
                ("InProgress", "Stopping")]

    def finished(self) -> int:
        return len(self.runs) - len(self.unfinished())

    # --- the external systems ---------------------------------------------------------------

    def submissions(self) -> list[list[str]]:
        log = self.ledger / "submissions.log"
        return [line.split() for line in log.read_text().splitlines() if line.strip()] \
            if log.exists() else []

    def external_runs(self) -> Counter[str]:
        """Runs started per action execution: ledger lines, late-ledger requests (landed or
        not), Travis requests by the marker in their message."""
        counted: Counter[str] = Counter(line[0] for line in self.submissions())
        queued = Counter(r["execution"] for r in requests_of(self.ledger))
        for execution, n in queued.items():
            counted[execution] = max(counted[execution], n)
        if self.travis is not None:
            for request in self.travis.requests():
                for run in self.runs:
                    if f"[cpworker:{run.action_execution_id}]" in (request["message"] or ""):
                        counted[run.action_execution_id] += 1
        return counted

    # --- workers ------------------------------------------------------------------------------

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("AWS_", "CPWORKER_", "PYTHON"))}
        env.update({
            "AWS_ENDPOINT_URL_CODEPIPELINE": self.cp_url, "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
            "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1",
            "CPWORKER_TRAVIS_TIMEOUT": TRAVIS_TIMEOUT,
        })
        if self.travis_url:
            env["CPWORKER_TRAVIS_API_URL"] = self.travis_url
        env.update(extra or {})
        return env

    def spawn(self, label: str, kinds: Sequence[str], *flags: str, until_idle: bool = False,
              env: Mapping[str, str] | None = None) -> Proc:
        """Start `cpworker run` for these actions and return at once."""
        n = len(self.procs) + 1
        actions = [arg for kind in kinds for arg in ("--action", KINDS[kind].spec)]
        command = [sys.executable, "-m", "engine.cli", "--db", self.db_url, "run",
                   *(["--until-idle"] if until_idle else []), *actions, *FLAGS, *flags]
        out = self.directory / f"worker-{n}-{label}.out"
        err = self.directory / f"worker-{n}-{label}.err"
        with open(out, "wb") as stdout, open(err, "wb") as stderr:
            process = subprocess.Popen(command, env=self.env(env), cwd=self.directory,
                                       stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL,
                                       start_new_session=True)
        proc = Proc(WorkerProcess(process, out, err), label, tuple(kinds))
        self.procs.append(proc)
        return proc

    @property
    def restarts(self) -> int:
        """Worker processes started after the first of each label."""
        return len(self.procs) - len({p.label for p in self.procs})

    def kill(self, proc: Proc) -> None:
        """SIGKILL, counted; a worker that already ended by itself is noted instead."""
        if not proc.alive:
            self.note_exit(proc)
            return
        proc.killed = True
        proc.worker.process.send_signal(signal.SIGKILL)
        proc.worker.process.wait(10)
        self.kills += 1

    def stop(self, proc: Proc, timeout: float = 40.0) -> int | None:
        """SIGTERM and wait; returns the exit code (None if it had to be killed)."""
        if not proc.alive:
            self.note_exit(proc)
            return proc.worker.returncode
        proc.stopped = True
        proc.worker.process.send_signal(signal.SIGTERM)
        try:
            return proc.worker.process.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.worker.process.kill()
            proc.worker.process.wait(10)
            return None

    def note_exit(self, proc: Proc) -> None:
        """Record a worker that ended without the test asking (once)."""
        if proc.killed or proc.stopped:
            return
        proc.stopped = True
        code = proc.worker.returncode
        tail = " | ".join(proc.worker.stderr.strip().splitlines()[-3:])
        self.exits.append(f"{proc.label} worker exited {code} by itself: {tail[-600:]}")

    def settle(self, kinds: Sequence[str], deadline: float = 60.0) -> list[str]:
        """`cpworker run --until-idle` until nothing is owed; returns problems (exit codes)."""
        problems: list[str] = []
        end = time.monotonic() + deadline
        while True:
            proc = self.spawn("settle", kinds, until_idle=True)
            try:
                code = proc.worker.process.wait(max(5.0, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.kill(proc)
                problems.append(f"settling worker did not finish within {deadline:g} s: "
                                f"{proc.worker.stderr[-1500:]}")
                return problems
            proc.stopped = True
            if code == EXIT_NOT_POLLED and "Traceback" not in proc.worker.stderr:
                # Faults still on: three confirming polls failed in a row, so the worker could
                # not say that nothing is left (and said so). Not a problem: settle again.
                time.sleep(0.5)
                continue
            if code != 0 or "Traceback" in proc.worker.stderr:
                problems.append(f"settling worker exited {code}: {proc.worker.stderr[-1500:]}")
                return problems
            if not self.unfinished() or time.monotonic() > end:
                return problems
            time.sleep(0.5)  # a job a killed worker polled comes back after the ack timeout

    def events_by(self, worker_id: str) -> int | None:
        """Events the worker has committed to the log (None: the database did not answer)."""
        if self._counter is None:
            self._counter = sa.create_engine(self.db_url, poolclass=sa.NullPool)
        try:
            with self._counter.connect() as conn:
                found = conn.execute(sa.text("SELECT count(*) FROM events WHERE worker = :w"),
                                     {"w": worker_id}).scalar()
        except sa.exc.DBAPIError:  # locked, restarting, not migrated yet
            return None
        return int(found or 0)

    def helper(self, *args: str) -> subprocess.Popen[bytes]:
        """A process of the test's own (a lock holder), killed at teardown like the workers."""
        process = subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
        self._helpers.append(process)
        return process

    def kill_all(self) -> None:
        for proc in self.procs:
            if proc.alive:
                proc.worker.process.kill()
                proc.worker.process.wait(10)
        for process in self._helpers:
            if process.poll() is None:
                process.kill()
                process.wait(10)
        if self._counter is not None:
            self._counter.dispose()

    # --- the verdict --------------------------------------------------------------------------

    @contextmanager
    def store(self) -> Iterator[EventStore]:
        store = open_store(self.db_url)
        try:
            yield store
        finally:
            store.close()

    def all_final(self) -> bool:
        """Every job the worker recorded for the test's executions is in a final state."""
        with self.store() as store:
            return all(job.final for run in self.runs
                       for job in store.by_execution(run.action_execution_id))

    def verdict(self, figures: Figures, runs: Sequence[Run] | None = None) -> list[str]:
        """Every invariant for every execution; fills the figures; returns the problems."""
        with self.store() as store:
            problems = judge(self.codepipeline, store, list(self.runs if runs is None else runs),
                             self.external_runs(), figures)
        replayed = invoke("--db", self.db_url, "replay", "--all")
        if replayed.exit_code != 0:
            problems.append(f"cpworker replay --all exited {replayed.exit_code}: "
                            f"{replayed.output[-2000:]}")
        figures.executions = len(self.runs if runs is None else runs)
        figures.kills = self.kills
        figures.restarts = self.restarts
        figures.extra.setdefault("exits", len(self.exits))
        return problems + self.exits


def judge(codepipeline: CodePipelineEmulator, store: EventStore, runs: Sequence[Run],
          external: Mapping[str, int], figures: Figures) -> list[str]:
    """The invariants of tests/e2e's assert_ended_right, for any action, collected not raised:
    each execution ended as its outcome says, with one external run (none if nothing was to be
    submitted), at most one accepted result per job and exactly one accepted final result; the
    worker's projection agrees with CodePipeline's jobs, and ends in the expected state."""
    problems: list[str] = []
    views = {e["id"]: e for e in codepipeline.executions()}
    jobs_of: dict[str, list[dict[str, Any]]] = {}
    for job in codepipeline.jobs():
        jobs_of.setdefault(job["actionExecutionId"], []).append(job)
    duplicates = lost = 0
    for run in runs:
        where = run.where
        view = views[run.pipeline_execution_id]
        jobs = jobs_of.get(run.action_execution_id, [])
        if view["status"] != run.expect.status:
            problems.append(f"{where}: CodePipeline says {view['status']} "
                            f"{view.get('failureDetails') or ''}, expected {run.expect.status}")
        started = external.get(run.action_execution_id, 0)
        wanted = int(run.expect.submitted)
        if started != wanted:
            problems.append(f"{where}: {started} external run(s), expected {wanted}")
        duplicates += max(0, started - max(1, wanted))
        for job in jobs:
            accepted = [r for r in job["results"] if r["accepted"]]
            if len(accepted) > 1:
                duplicates += len(accepted) - 1
                problems.append(f"{where}: job {job['id']} accepted {len(accepted)} results")
        finals = [r for job in jobs for r in job["results"] if is_final_result(r)]
        if not finals:
            lost += 1
            problems.append(f"{where}: no accepted final result (jobs: "
                            f"{[(j['id'][:8], j['status']) for j in jobs]})")
        elif len(finals) > 1:
            duplicates += len(finals) - 1
            problems.append(f"{where}: {len(finals)} accepted final results")
        else:
            problems += _final_problems(run, finals[0])
        mine = store.by_execution(run.action_execution_id)
        if {j.job_id for j in mine} != {j["id"] for j in jobs}:
            problems.append(f"{where}: the worker recorded jobs {[j.job_id[:8] for j in mine]}, "
                            f"CodePipeline has {[j['id'][:8] for j in jobs]}")
        states = [j.state for j in mine]
        if states != [JobState.HANDED_ON] * (len(mine) - 1) + [run.expect.state]:
            problems.append(f"{where}: the worker's states are "
                            f"{[(j.state.value, j.reason) for j in mine]}")
    figures.duplicates = duplicates
    figures.lost_results = lost
    return problems


def _final_problems(run: Run, final: Mapping[str, Any]) -> list[str]:
    expect = run.expect
    if expect.failure_type is None:
        if final["operation"] != "PutJobSuccessResult":
            return [f"{run.where}: ended with {final['operation']} "
                    f"{final['request'].get('failureDetails')}"]
        return []
    if final["operation"] != "PutJobFailureResult":
        return [f"{run.where}: ended with {final['operation']}, expected a failure"]
    details = final["request"]["failureDetails"]
    if details["type"] != expect.failure_type:
        return [f"{run.where}: failed with {details['type']} ({details.get('message', '')[:300]})"
                f", expected {expect.failure_type}"]
    return []


class Rhythm:
    """One worker slot: a worker is started, SIGKILLed once it has lived a seeded 'life' after it
    logged its start, and started again at once; a worker that ends by itself is noted and
    replaced. A life is a number of events the worker commits to the log (`in_events`), or of
    seconds."""

    STARTUP_LIMIT = 30.0
    """A worker that has not logged its start by then is killed (and counted) all the same."""

    def __init__(self, chaos: Chaos, label: str, kinds: Sequence[str],
                 life: Callable[[], float] | None, *flags: str,
                 env: Mapping[str, str] | None = None, in_events: bool = False) -> None:
        self.chaos = chaos
        self.label = label
        self.kinds = tuple(kinds)
        self.life = life
        """The life after the start line; None: never killed (a steady worker)."""
        self.in_events = in_events
        self.flags = flags
        self.env = env
        self.current: Proc | None = None
        self._spawned_at = 0.0
        self._kill_at: float | None = None
        self._kill_after: int | None = None
        """With in_events: kill once the current worker has committed this many events."""
        self.paused = False

    @classmethod
    def seeded(cls, chaos: Chaos, label: str, kinds: Sequence[str], low: float, high: float,
               seed: int, *flags: str, env: Mapping[str, str] | None = None,
               in_events: bool = False) -> Rhythm:
        rng = random.Random(seed)
        if in_events:
            return cls(chaos, label, kinds, lambda: rng.randint(int(low), int(high)), *flags,
                       env=env, in_events=True)
        return cls(chaos, label, kinds, lambda: rng.uniform(low, high), *flags, env=env)

    def tick(self) -> None:
        """Call often: kills and restarts when due."""
        now = time.monotonic()
        current = self.current
        if current is not None and not current.alive:
            self.chaos.note_exit(current)
            current = self.current = None
        if current is None:
            if not self.paused:
                self.current = self.chaos.spawn(self.label, self.kinds, *self.flags, env=self.env)
                self._spawned_at, self._kill_at, self._kill_after = now, None, None
            return
        if self.life is None:
            return
        if self._kill_at is None and self._kill_after is None:
            if current.started():
                if self.in_events:
                    self._kill_after = int(self.life())
                else:
                    self._kill_at = now + self.life()
            elif now - self._spawned_at > self.STARTUP_LIMIT:
                self._kill_at = now
        if (self._kill_after is not None and self._lived(current, self._kill_after)) or (
                self._kill_at is not None and now >= self._kill_at):
            self._kill(current)

    def _lived(self, proc: Proc, events: int) -> bool:
        worker = proc.worker_id()
        recorded = None if worker is None else self.chaos.events_by(worker)
        return recorded is not None and recorded >= events

    def _kill(self, proc: Proc) -> None:
        self.chaos.kill(proc)
        if self._kill_after is not None and proc.killed:
            # The kill's window: after the worker's chosen event (what it committed stays).
            worker = proc.worker_id()
            recorded = None if worker is None else self.chaos.events_by(worker)
            assert recorded is None or recorded >= self._kill_after, (
                f"{self.label} worker killed after {recorded} events, before its "
                f"{self._kill_after}th")
        self.current = None
        self.tick()

    def stop(self) -> int | None:
        """SIGTERM the current worker (the test's 'stop'); None when there is none.

        A worker restarted just before is first let log its start: SIGTERM before it has set
        its handlers ends it by the signal's default (-15), which is no answer to a stop."""
        self.paused = True
        if self.current is None:
            return None
        current = self.current
        wait_for(f"the {self.label} worker to log its start",
                 lambda: current.started() or not current.alive, self.STARTUP_LIMIT)
        code = self.chaos.stop(current)
        self.current = None
        return code


class Timeout(AssertionError):
    """wait_for's deadline passed (told apart from a failure raised by its `tick`)."""


def wait_for(what: str, condition: Callable[[], bool], timeout: float,
             tick: Callable[[], None] | None = None, every: float = 0.05) -> float:
    """Poll `condition()` (running `tick` between looks) until true; returns the seconds taken."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise Timeout(f"timed out after {timeout:g} s waiting for {what}")
        if tick is not None:
            tick()
        time.sleep(every)
    return time.monotonic() - started
