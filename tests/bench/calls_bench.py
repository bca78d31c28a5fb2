"""CodePipeline calls per execution: what each pipeline execution costs in requests.

CodePipeline's request quotas are per account and unpublished (PROTOCOL A7), and a team shares
them with everything else it runs, so the calls one execution costs matter as much as speed.
Each hand-on (a progress report with a continuation token) costs a continuation job: a poll's
share, an AcknowledgeJob and a PutJobSuccessResult.

The measurement drives the real worker (poller, scheduler, Travis action) against the
CodePipeline and Travis emulators over HTTP, on one fake clock: executions arrive at a steady
rate, the poller keeps its own cadence (its backoff when idle, its quick polls while jobs
come), and every call CodePipeline receives between the first execution and the end of the last
is counted, polls included. A 20-minute build takes a second.

The test suite uses it too (tests/e2e/test_calls_per_execution.py): a change that adds calls to
an execution fails CI there; the benchmark prints the figures beside the AWS sample's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from actions.travis import TravisAction
from actions.travis.emulator import TravisEmulator
from actions.travis.settings import TravisSettings
from engine import defaults
from engine.clock import FakeClock
from engine.devtools.emulator import EmulatorServer
from engine.devtools.testing import ActionHarness
from engine.machine import JobState
from engine.worker import Settings
from tests.bench.engine_bench import fresh_dir
from tests.bench.table import Row

SLUG = "acme/calls"
TOKEN = "calls-travis-token"
CONFIG = {"Owner": "acme", "ProjectName": "calls", "Branch": "main", "APIToken": TOKEN}

BEYOND_POLLS = ("AcknowledgeJob", "GetJobDetails", "PutJobSuccessResult", "PutJobFailureResult")
CONTINUATION_DELAY = 30.0
"""Seconds from a hand-on to its continuation job being polled: the CodePipeline emulator's
own default reading (AWS does not document it)."""
QUEUED = 5.0
"""Seconds a Travis build waits before it starts (its summary goes created -> started)."""


@dataclass(frozen=True)
class Economy:
    """The calls a run of executions cost, by operation."""

    executions: int
    jobs: int
    calls: dict[str, int]
    build_seconds: float
    progress: str
    overhead: float = 0.0
    """Mean seconds an execution took beyond its build: pick-ups, checks, reports."""

    @property
    def beyond_polls(self) -> float:
        """AcknowledgeJob, GetJobDetails and results per execution."""
        return sum(self.calls.get(name, 0) for name in BEYOND_POLLS) / self.executions

    @property
    def polls(self) -> float:
        """PollForJobs per execution: every poll of the run, idle ones too, shared out."""
        return self.calls.get("PollForJobs", 0) / self.executions

    @property
    def total(self) -> float:
        return self.beyond_polls + self.polls

    @property
    def jobs_per_execution(self) -> float:
        return self.jobs / self.executions


def calls_per_execution(tmp: Path, executions: int, build_seconds: float, *,
                        progress: str = defaults.PROGRESS, arrive_every: float = 30.0,
                        max_steps: int = 100_000) -> Economy:
    """`executions` Travis executions, one every `arrive_every` seconds, each a build of
    `build_seconds`, worked by one worker with the default settings but `progress`."""
    clock = FakeClock()
    travis = TravisEmulator(clock=clock, seed=14)
    travis.add_repository(SLUG, token=TOKEN, request_limit=1_000_000)
    travis.set_schedule(SLUG, start_after=QUEUED, finish_after=QUEUED + build_seconds)
    with fresh_dir(tmp, "calls-") as directory, EmulatorServer(travis) as travis_server:
        action = TravisAction(settings=TravisSettings(api_url=travis_server.url))
        with ActionHarness(action, directory, settings=Settings(progress=progress),
                           clock=clock, continuation_delay=CONTINUATION_DELAY) as harness:
            before = harness.emulator.call_counts()
            started: list[str] = []
            started_at: list[float] = []
            arrivals = [clock.now() + n * arrive_every for n in range(executions)]
            poller = harness.worker.poller
            next_poll = clock.now()

            def over() -> bool:
                return len(started) == executions and all(
                    j.final and j.state is not JobState.AWAITING_CONTINUATION
                    for execution in started for j in harness.jobs(execution))

            for _ in range(max_steps):
                now = clock.now()
                while len(started) < executions and arrivals[len(started)] <= now:
                    started.append(harness.start(CONFIG, pipeline_name="calls"))
                    started_at.append(clock.now())
                found = 0
                if now >= next_poll:
                    last = poller.poll_once()
                    found = last.found
                    next_poll = now + poller.next_interval(last)
                progressed = harness.step(poll=False) or found
                if over():
                    break
                if progressed:
                    continue
                due = harness.store.earliest_due(now)
                moments = [next_poll, *arrivals[len(started):len(started) + 1]]
                if due is not None:
                    moments.append(due)
                clock.advance(max(0.001, min(moments) - now))
            else:
                raise AssertionError(f"{executions} executions did not finish in {max_steps} steps")
            after = harness.emulator.call_counts()
            jobs = sum(len(harness.jobs(execution)) for execution in started)
            ended = [max(j.updated_at for j in harness.jobs(execution)) for execution in started]
            overhead = sum(end - start - QUEUED - build_seconds
                           for start, end in zip(started_at, ended, strict=True)) / executions
    action.close()
    calls = {name: after.get(name, 0) - before.get(name, 0) for name in after}
    return Economy(executions, jobs, {k: v for k, v in calls.items() if v}, build_seconds,
                   progress, overhead)


def long_build_target(build_seconds: float,
                      interval: float = defaults.PROGRESS_INTERVAL) -> float:
    """The issue's bound for a long build: 2 + (duration / progress interval) x 3."""
    return 2 + (build_seconds / interval) * 3


def rows(smoke: bool, tmp: Path, say: Callable[[str], None]) -> list[Row]:
    """The rows of the benchmark table: a 1-minute and a 20-minute build, by default and with
    the old hand-on at every change, beside the AWS sample worker's 2 calls (no console link).

    Executions arrive one every 30 s (2,880 a day: "a few thousand"), for 15 minutes of
    1-minute builds and 20 minutes of 20-minute builds; polls are every poll of the run, idle
    ones included, shared out over its executions.
    """
    out: list[Row] = []
    sample = "AWS sample worker (ack + result, no console link)"
    for minutes, executions in ((1, 4 if smoke else 30), (20, 2 if smoke else 40)):
        seconds = minutes * 60.0
        say(f"CodePipeline calls per execution: {executions} executions of {minutes}-minute "
            "Travis builds, one every 30 s (fake clock) ...")
        ours = calls_per_execution(tmp, executions, seconds)
        chatty = calls_per_execution(tmp, executions, seconds, progress="every-change")
        what = (f"CodePipeline calls per execution, {minutes}-min build, {executions} "
                f"executions ({ours.jobs_per_execution:.2g} jobs each")
        target = 4.0 if minutes == 1 else long_build_target(seconds)
        beyond = Row(f"{what}), polls apart", ours.beyond_polls, "calls", sample, 2.0, False,
                     f"<= {target:.3g}")
        beyond.met = ours.beyond_polls <= target
        per_job = ours.calls.get("PollForJobs", 0) / ours.jobs
        total = Row(f"{what}), every poll counted ({ours.polls:.2g} each, {per_job:.2g} per "
                    f"job; {ours.overhead:.0f} s beyond the build)", ours.total, "calls",
                    sample, 2.0, False)
        out += [beyond, total,
                Row(f"the same, --progress every-change ({chatty.jobs_per_execution:.2g} jobs "
                    f"each, {chatty.polls:.2g} polls each)", chatty.total, "calls",
                    "the default (--progress link)", ours.total, False)]
    return out
