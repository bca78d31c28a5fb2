"""Issue 12's benchmarks: artifacts on S3, and what CodePipeline's action events save an idle
worker. Each function does ONE measurement (or one series of samples) and returns figures; the
runner (tests/bench/__main__.py) puts them beside baselines measured in the same run. Nothing
here asserts a speed.

- **Upload memory**: a child process uploads one large file with JobArtifacts.upload (SSE-KMS,
  multipart) to moto's S3 running in *another* child, so only the uploader's memory is read;
  the baseline is boto3's own upload_file (s3transfer, default TransferConfig) of the same file
  in the same kind of child. The growth is the child's peak RSS during the upload (VmHWM, reset
  just before it; ru_maxrss would also hold the peak of the process the child was spawned from)
  minus its RSS just before, after a warm-up (imports, the client, a small upload). The file is
  written in 1 MiB chunks of os.urandom into the bench's temporary directory and removed
  afterwards: it never sits in memory whole.
- **Pick-up after idle**: a real Worker (its loops on threads, the real clock) against the
  CodePipeline emulator on 127.0.0.1, which publishes its action events to an SQS queue on moto
  that the worker reads. "Idle" is the state of a worker after ten quiet minutes: its poller in
  the longest wait (poll_interval, 33 s by default). poll_interval_min is set equal to it, so
  the poller is in that wait from its first poll on, and after every poll, instead of ten real
  minutes per sample. The executions start one at a time, each once the previous one was
  acknowledged, at moments spread over the poller's wait.
  The baseline, polling alone, runs the worker's own Poller on a FakeClock (as
  engine_bench.api_economy does for idle polls): its waits are 30-33 s, so real samples would
  take half a minute each, and on a fake clock the latency is exactly the remaining wait.
- **Cancel after a stop**: the Travis action with its emulator, a build running, the
  execution stopped and abandoned in the CodePipeline emulator; the latency is the stop to the
  Travis emulator receiving POST /build/{id}/cancel (a recorder in front of it notes when each
  call arrived). With events, the real clock as above. Without (the baseline), the worker
  notices only when its next progress report is refused: that is minutes of its default
  intervals, so it runs on a FakeClock through ActionHarness, which moves the clock to the
  next due time.
"""

from __future__ import annotations

import json
import os
import random
import select
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import boto3

from actions.travis import TravisAction
from actions.travis.emulator import TravisEmulator
from actions.travis.settings import TravisSettings
from engine import defaults
from engine.clock import Clock, FakeClock, SystemClock
from engine.codepipeline import CodePipeline
from engine.devtools.emulator import CodePipelineEmulator, EmulatorServer, Request, Response
from engine.devtools.emulator._cp_events import LocalSqs
from engine.devtools.testing import ActionHarness, codepipeline_client
from engine.events import DETAIL_TYPE, SOURCE
from engine.intake import Intake
from engine.machine import JobState
from engine.poller import Poller
from engine.projection import Job
from engine.secrets import SecretVault
from engine.store import EventStore, open_store
from engine.worker import Settings, Worker
from tests.bench.engine_bench import ROOT, fresh_dir
from tests.bench.standin import InstantAction

MiB = 1024 * 1024
BUCKET = "codepipeline-us-east-1-111111111111"
SLUG = "acme/bench"
TOKEN = "bench-travis-token"
INSTANT = "Test/Custom/Instant/1"
TRAVIS = "Test/Custom/Travis/1"
FOREIGN = {
    "version": "0", "id": "00000000-0000-4000-8000-000000000000", "detail-type": DETAIL_TYPE,
    "source": SOURCE, "account": "111111111111", "time": "2026-01-01T00:00:00Z",
    "region": "us-east-1", "resources": [],
    "detail": {"pipeline": "warm-up", "version": "1",
               "execution-id": "00000000-0000-4000-8000-000000000001", "stage": "Test",
               "action": "WarmUp", "state": "STARTED", "region": "us-east-1",
               "type": {"owner": "Custom", "category": "Test", "provider": "BenchWarmUp",
                        "version": "1"}},
}
"""An action event of a provider no worker here serves: read and deleted, nothing else."""
IDLE_MINUTES = 10.0
"""Quiet minutes before a polling-only sample: the poller is then in its longest wait."""


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100), interpolated; the one value when there is one."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def _wait_until(what: str, condition: Callable[[], bool], timeout: float) -> None:
    """Real time, bounded: the worker's threads and the emulators' need a moment."""
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        time.sleep(0.005)


# --- 1. upload memory ----------------------------------------------------------------------------


def write_random(path: Path, size: int) -> None:
    """`size` bytes of os.urandom, 1 MiB at a time: never the whole file in memory."""
    with open(path, "wb") as out:
        left = size
        while left:
            chunk = min(MiB, left)
            out.write(os.urandom(chunk))
            left -= chunk


@contextmanager
def s3_process(tmp: Path) -> Iterator[str]:
    """moto's server in a child process on 127.0.0.1 (tests.bench.children s3); its URL. It
    stops when its stdin closes."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with open(tmp / "s3-child.log", "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "tests.bench.children", "s3"],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                                   cwd=ROOT, env=env)
        assert process.stdin is not None and process.stdout is not None
        try:
            ready, _, _ = select.select([process.stdout], [], [], 60)
            line = process.stdout.readline() if ready else b""
            if not line:
                raise AssertionError("moto's server did not start within 60 s: "
                                     f"{(tmp / 's3-child.log').read_text()[-2000:]}")
            yield str(json.loads(line)["url"])
        finally:
            process.stdin.close()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
            (tmp / "s3-child.log").unlink(missing_ok=True)


def _client(service: str, url: str) -> Any:
    session: Any = boto3.session.Session()
    return session.client(service, endpoint_url=url, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")


@dataclass
class UploadFigures:
    """RSS growth (MB) and seconds of each upload, by mode."""

    growth_mb: dict[str, float] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    peak_reset: bool = True


def upload_memory(tmp: Path, size_mb: int, zip_mb: int) -> UploadFigures:
    """RSS growth of a child uploading a `size_mb` MiB file with cpworker and with boto3's
    upload_file, and of cpworker zipping and uploading a `zip_mb` MiB directory (0: not)."""
    figures = UploadFigures()
    with fresh_dir(tmp, "upload-") as directory, s3_process(directory) as url:
        s3 = _client("s3", url)
        s3.create_bucket(Bucket=BUCKET)
        kms_key = str(_client("kms", url).create_key(Description="bench")["KeyMetadata"]["KeyId"])
        big = directory / "artifact.bin"
        write_random(big, size_mb * MiB)
        runs: list[tuple[str, Path, int]] = [("cpworker", big, size_mb * MiB),
                                             ("boto3", big, size_mb * MiB)]
        if zip_mb:
            tree = directory / "tree"
            tree.mkdir()
            files = 8
            for n in range(files):
                write_random(tree / f"part-{n}.bin", zip_mb * MiB // files)
            runs.append(("cpworker-zip", tree, 0))
        env = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(directory)}
        for mode, path, size in runs:
            done = subprocess.run([sys.executable, "-m", "tests.bench.children", "upload", mode,
                                   url, BUCKET, kms_key, str(path)], capture_output=True,
                                  text=True, timeout=1800, cwd=ROOT, env=env)
            if done.returncode != 0:
                raise AssertionError(f"upload child {mode} failed:\n{done.stderr[-3000:]}")
            result = json.loads(done.stdout.strip().splitlines()[-1])
            head = s3.head_object(Bucket=BUCKET, Key="bench/out")
            if head.get("ServerSideEncryption") != "aws:kms" or (
                    size and head["ContentLength"] != size):
                raise AssertionError(f"upload {mode}: S3 holds {head['ContentLength']} bytes, "
                                     f"encryption {head.get('ServerSideEncryption')}")
            s3.delete_object(Bucket=BUCKET, Key="bench/out")
            s3.delete_object(Bucket=BUCKET, Key="bench/warm")
            figures.growth_mb[mode] = float(result["growth_mb"])
            figures.seconds[mode] = float(result["seconds"])
            figures.peak_reset = figures.peak_reset and bool(result["peak_reset"])
    return figures


# --- the events stack: moto's SQS, the CodePipeline emulator publishing to it, a worker ----------


class CallLog:
    """An emulator behind a recorder of when each call arrived, on `clock`."""

    def __init__(self, app: TravisEmulator, clock: Clock) -> None:
        self.app = app
        self.clock = clock
        self._lock = threading.Lock()
        self.calls: list[tuple[float, str, str]] = []

    def __call__(self, request: Request) -> Response:
        with self._lock:
            self.calls.append((self.clock.now(), request.method, request.path))
        return self.app(request)

    def incomplete_body(self, request: Request) -> Response:
        return self.app.incomplete_body(request)

    def first(self, method: str, suffix: str) -> float | None:
        with self._lock:
            return next((at for at, m, path in self.calls
                         if m == method and path.endswith(suffix)), None)


class EventsStack:
    """moto's SQS (in this process), the CodePipeline emulator on 127.0.0.1 publishing its
    action events to a queue there, and a Worker reading that queue, running on its threads."""

    def __init__(self, directory: Path, actions: Mapping[str, Any], settings: Settings) -> None:
        self.sqs = LocalSqs().start()
        self.queue = self.sqs.create_queue(f"cpworker-bench-{uuid.uuid4().hex[:8]}")
        self.emulator = CodePipelineEmulator(events_queue_url=self.queue, seed=12)
        self.server = EmulatorServer(self.emulator).start()
        client = codepipeline_client(self.server.url)
        for action in actions.values():
            client.create_custom_action_type(**action.definition().document)
        self.store: EventStore = open_store(f"sqlite:///{directory / 'state.db'}")
        self.worker = Worker(self.store, CodePipeline(client), actions,
                             replace(settings, events_queue=self.queue), SystemClock(),
                             sqs=self.sqs.client())
        self.thread = threading.Thread(target=self.worker.run, daemon=True, name="bench-worker")
        self.thread.start()
        _wait_until("the worker's first poll", lambda: self.polls() >= 1, 60)
        # Another provider's event ends the listener's first long poll at once (it is deleted
        # as foreign), which proves it reads, without waiting out an empty 10 s receive.
        _wait_until("the events listener made", lambda: self.worker.events is not None, 60)
        self.sqs.client().send_message(QueueUrl=self.queue, MessageBody=json.dumps(FOREIGN))
        _wait_until("the events listener reading", lambda: self.worker.events is not None
                    and self.worker.events.last_ok is not None, 60)

    def polls(self) -> int:
        return self.emulator.call_counts().get("PollForJobs", 0)

    def event_at(self, action_execution_id: str, kind: str) -> float | None:
        """When the first `kind` event of the execution's jobs was recorded (None: not yet)."""
        for job in self.store.by_execution(action_execution_id):
            for event in self.store.history(job.job_id):
                if event.type == kind:
                    return event.at
        return None

    def close(self) -> None:
        self.worker.stop()
        self.thread.join(30)
        self.server.stop()
        self.emulator.close()
        self.store.close()
        self.sqs.stop()


# --- 2. pick-up latency after idle ---------------------------------------------------------------


@dataclass
class PickUp:
    latencies: list[float]
    """Seconds from the execution's start to its job's `acknowledged` event."""
    polls: int
    """PollForJobs calls (one action type) while the samples were taken."""
    minutes: float

    @property
    def polls_per_minute(self) -> float:
        return self.polls / self.minutes

    @property
    def empty_polls_per_minute(self) -> float:
        """Polls beyond the one each execution needs to be taken, per minute."""
        return max(0, self.polls - len(self.latencies)) / self.minutes


def pickup_with_events(tmp: Path, executions: int, poll_interval: float,
                       seed: int = 12) -> PickUp:
    """An idle worker reading the events queue (see the module docstring): `executions`
    executions started one at a time, each at a moment spread over the poller's wait after the
    previous one was acknowledged; the real clock throughout."""
    rng = random.Random(seed)
    moments = [(n + rng.random()) / executions for n in range(executions)]
    rng.shuffle(moments)  # spread over the wait, in no particular order
    clock = SystemClock()  # the worker's and the emulator's clock: their times compare
    with fresh_dir(tmp, "pickup-") as directory:
        stack = EventsStack(directory, {"instant": InstantAction()},
                            Settings(poll_interval=poll_interval, poll_interval_min=poll_interval))
        try:
            latencies: list[float] = []
            polls_before = stack.polls()
            began = since = clock.now()
            for fraction in moments:
                # The shortest wait the poller draws is 90 % of the interval (its jitter).
                time.sleep(max(0.0, since + fraction * 0.9 * poll_interval - clock.now()))
                started = stack.emulator.start_execution(
                    INSTANT, {"Name": "bench", "Secret": "s3cr3t-value"}, action="Instant",
                    pipeline_name="bench", input_artifacts=0)
                execution = stack.emulator.execution(started["pipelineExecutionId"])
                found: list[float] = []

                def acknowledged(action_execution_id: str = started["actionExecutionId"],
                                 into: list[float] = found) -> bool:
                    at = stack.event_at(action_execution_id, "acknowledged")
                    if at is not None:
                        into.append(at)
                    return at is not None

                _wait_until("the job acknowledged", acknowledged, poll_interval + 60)
                latencies.append(found[0] - float(execution["startedAt"]))
                since = found[0]
            minutes = (clock.now() - began) / 60
            return PickUp(latencies, stack.polls() - polls_before, minutes)
        finally:
            stack.close()


def pickup_polling_only(tmp: Path, samples: int, seed: int = 12) -> PickUp:
    """The baseline: the worker's own Poller with the default intervals on a FakeClock (see the
    module docstring). Each sample: ten idle minutes, then an execution created at a random
    (seeded) moment of the poller's wait; its latency is the fake time to the poll that
    finds it."""
    rng = random.Random(seed)
    clock = FakeClock()
    with fresh_dir(tmp, "pickup-polling-") as directory:
        emulator = CodePipelineEmulator(seed=seed)
        with EmulatorServer(emulator) as server:
            client = codepipeline_client(server.url)
            client.create_custom_action_type(**InstantAction.definition().document)
            store = open_store(f"sqlite:///{directory / 'state.db'}")
            poller = Poller(CodePipeline(client), {"instant": InstantAction()},
                            Intake(store, SecretVault(), clock), clock,
                            capacity=lambda: 1000, on_jobs=lambda: None,
                            min_interval=defaults.POLL_INTERVAL_MIN,
                            max_interval=defaults.POLL_INTERVAL)
            latencies: list[float] = []
            polls_before = emulator.call_counts().get("PollForJobs", 0)
            began = clock.now()
            try:
                for _ in range(samples):
                    quiet_until = clock.now() + IDLE_MINUTES * 60
                    while True:
                        wait = poller.next_interval(poller.poll_once())
                        if clock.now() >= quiet_until:
                            break
                        clock.advance(wait)
                    created = rng.uniform(0.0, wait)
                    clock.advance(created)
                    emulator.start_execution(INSTANT, {"Name": "bench", "Secret": "s3cr3t"},
                                             action="Instant", pipeline_name="bench",
                                             input_artifacts=0)
                    clock.advance(wait - created)
                    if poller.poll_once().found != 1:
                        raise AssertionError("the poll after the wait did not find the job")
                    latencies.append(wait - created)
            finally:
                store.close()
                emulator.close()
            polls = emulator.call_counts().get("PollForJobs", 0) - polls_before
    return PickUp(latencies, polls, (clock.now() - began) / 60)


# --- 3. cancel latency after a stop --------------------------------------------------------------


def _travis(clock: Clock) -> TravisEmulator:
    """A Travis whose builds start at once and run for a day (so every stop finds one running),
    with room for many requests an hour."""
    travis = TravisEmulator(clock=clock, seed=12, build_delay=0.2, cancel_delay=1.0)
    travis.add_repository(SLUG, token=TOKEN, request_limit=100_000)
    travis.set_schedule(SLUG, start_after=0.2, finish_after=86_400.0)
    return travis


_CONFIG = {"Owner": SLUG.split("/")[0], "ProjectName": SLUG.split("/")[1], "Branch": "main",
           "APIToken": TOKEN}


def _cancelled(calls: CallLog, build: int) -> Callable[[], bool]:
    return lambda: calls.first("POST", f"/build/{build}/cancel") is not None


def _over(jobs: Callable[[], list[Job]]) -> Callable[[], bool]:
    """Every job of the execution final, and no continuation owed."""
    return lambda: all(j.final and j.state is not JobState.AWAITING_CONTINUATION
                       for j in jobs())


def _running_build(travis: TravisEmulator, request_count: int) -> int | None:
    """The id of the build of the `request_count`-th request, once it is started."""
    builds = travis.builds(SLUG)
    if len(builds) < request_count or builds[request_count - 1]["state"] != "started":
        return None
    return int(builds[request_count - 1]["id"])


def cancel_with_events(tmp: Path, executions: int) -> list[float]:
    """Seconds from stop_execution(abandon=True) to Travis receiving the build's cancel, for
    `executions` executions one after another, each stopped while its build runs; a worker
    with default intervals reading the events queue, the real clock."""
    clock = SystemClock()
    travis = _travis(clock)
    calls = CallLog(travis, clock)
    latencies: list[float] = []
    with fresh_dir(tmp, "cancel-") as directory, EmulatorServer(calls) as travis_server:
        action = TravisAction(settings=TravisSettings(api_url=travis_server.url))
        stack = EventsStack(directory, {"travis": action}, Settings())
        try:
            for n in range(1, executions + 1):
                started = stack.emulator.start_execution(TRAVIS, _CONFIG, action="Travis",
                                                         pipeline_name="bench")
                found: list[int] = []

                def running(into: list[int] = found, count: int = n) -> bool:
                    build = _running_build(travis, count)
                    if build is not None:
                        into.append(build)
                    return build is not None

                _wait_until("the build running", running, 60)
                build = found[0]
                stopped = clock.now()
                stack.emulator.stop_execution(started["pipelineExecutionId"], abandon=True,
                                              reason="bench")
                _wait_until("the cancel at Travis", _cancelled(calls, build), 60)
                cancelled = calls.first("POST", f"/build/{build}/cancel")
                assert cancelled is not None
                latencies.append(cancelled - stopped)
                execution = started["actionExecutionId"]
                _wait_until("the job over", _over(partial(stack.store.by_execution, execution)),
                            60)
        finally:
            stack.close()
            action.close()
    return latencies


def cancel_polling_only(tmp: Path, samples: int, seed: int = 12) -> list[float]:
    """The baseline: the same on a FakeClock through ActionHarness, default intervals, no
    events. Each execution is stopped at a random (seeded) moment of a progress interval after
    its build started; the worker learns of it when its next progress report is refused.
    The harness queues continuation jobs at once (continuation_delay 0), so a stop between a
    report and its continuation, which polling finds only after continuation_timeout, is left
    out: this baseline errs short."""
    rng = random.Random(seed)
    clock = FakeClock()
    travis = _travis(clock)
    calls = CallLog(travis, clock)
    latencies: list[float] = []
    with fresh_dir(tmp, "cancel-polling-") as directory, EmulatorServer(calls) as travis_server:
        action = TravisAction(settings=TravisSettings(api_url=travis_server.url))
        with ActionHarness(action, directory, settings=Settings(), clock=clock) as harness:
            for n in range(1, samples + 1):
                started = harness.emulator.start_execution(TRAVIS, _CONFIG, action="Travis",
                                                           pipeline_name="bench")
                execution = started["actionExecutionId"]
                _drive(harness, partial(_running_build, travis, n))
                build = _running_build(travis, n)
                assert build is not None
                stop_at = clock.now() + rng.uniform(0.0, defaults.PROGRESS_INTERVAL)
                _drive(harness, lambda: False, until=stop_at)
                harness.emulator.stop_execution(started["pipelineExecutionId"], abandon=True,
                                                reason="bench")
                _drive(harness, _cancelled(calls, build))
                cancelled = calls.first("POST", f"/build/{build}/cancel")
                assert cancelled is not None
                latencies.append(cancelled - stop_at)
                _drive(harness, _over(partial(harness.jobs, execution)))
    action.close()
    return latencies


def _drive(harness: ActionHarness, done: Callable[[], object], until: float | None = None,
           max_steps: int = 2000) -> None:
    """Step the harness's worker, moving the fake clock to the next due time (never past
    `until`), until `done()` or, with `until`, until the clock reaches it."""
    clock = harness.clock
    for _ in range(max_steps):
        if until is None and done():
            return
        progressed = harness.step()
        if until is None and done():
            return
        if progressed:
            continue
        if until is not None and clock.now() >= until:
            return
        due = harness.store.earliest_due(clock.now())
        target = clock.now() + 1.0 if due is None else due  # as ActionHarness.run moves it
        if until is not None:
            target = min(target, until)
        clock.advance(max(0.001, target - clock.now()))
    raise AssertionError(f"the harness did not get there in {max_steps} steps")
