"""Resource stability: one `cpworker run` under a steady flow, its RSS sampled as it goes.

An execution a second reaches the ledger action (builds of 5-20 s: that many checks, one a
second), one worker process works them against the CodePipeline emulator over HTTP with a SQLite
file, and its resident set size is read from /proc every `every` seconds. What matters is the
growth per minute once warm: a leak shows as a slope, noise as a flat line with bumps.
"""

from __future__ import annotations

import os
import random
import secrets
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from engine.devtools.emulator import CodePipelineEmulator, EmulatorServer
from engine.devtools.testing import codepipeline_client
from tests.actions.ledger import EXPECTED_TOKEN_PREFIX, LedgerAction

ROOT = Path(__file__).resolve().parents[2]
FLAGS = ("--poll-interval", "2", "--poll-interval-min", "0.5", "--check-interval", "1",
         "--progress-interval", "60", "--backoff-initial", "0.5", "--backoff-max", "5")


@dataclass(frozen=True)
class Steady:
    samples: list[tuple[float, float]]
    """(seconds since the worker started, RSS in MB)."""
    started: int
    finished: int
    db_mb: float = 0.0
    """The state database's size at the end (with its WAL): what SQLite's page caches (2 MB
    per connection by default) fill up with while the run warms."""

    @property
    def first(self) -> float:
        return self.samples[0][1]

    @property
    def last(self) -> float:
        return self.samples[-1][1]

    @property
    def peak(self) -> float:
        return max(mb for _, mb in self.samples)

    @property
    def growth_per_minute(self) -> float:
        """The least-squares slope of RSS over time, in MB per minute (0 with one sample)."""
        return _slope(self.samples)

    @property
    def warm_growth_per_minute(self) -> float:
        """The slope over the second half of the run, once caches and pools are warm: a leak
        keeps its slope there, a cache filling up does not."""
        half = self.samples[-1][0] / 2 if self.samples else 0.0
        return _slope([(t, mb) for t, mb in self.samples if t >= half])

    def line(self) -> str:
        return (f"steady run: RSS first {self.first:.1f} MB, last {self.last:.1f} MB, max "
                f"{self.peak:.1f} MB, growth {self.growth_per_minute:+.3f} MB/min over "
                f"{len(self.samples)} samples {self.samples[-1][0] / 60:.1f} min, "
                f"{self.warm_growth_per_minute:+.3f} MB/min over the second half; database "
                f"{self.db_mb:.1f} MB; "
                f"{self.started} executions started, {self.finished} finished")


def _slope(samples: list[tuple[float, float]]) -> float:
    if len(samples) < 2:
        return 0.0
    slope, _ = statistics.linear_regression([t for t, _ in samples], [mb for _, mb in samples])
    return slope * 60.0


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def steady_run(tmp: Path, seconds: float, every: float, rate: float = 1.0,
               seed: int = 20261204) -> Steady:
    """`seconds` of an execution every 1/rate s, RSS sampled every `every` s."""
    chance = random.Random(seed)
    directory = Path(tmp) / f"steady-{os.urandom(3).hex()}"
    ledger = directory / "ledger"
    ledger.mkdir(parents=True)
    emulator = CodePipelineEmulator(continuation_delay=0.5, ack_timeout=30.0, seed=seed)
    with EmulatorServer(emulator) as server:
        codepipeline_client(server.url).create_custom_action_type(
            **LedgerAction.definition().document)
        env = {**{k: v for k, v in os.environ.items()
                  if not k.startswith(("AWS_", "CPWORKER_", "PYTHON"))},
               "AWS_ENDPOINT_URL_CODEPIPELINE": server.url, "AWS_ACCESS_KEY_ID": "bench",
               "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1",
               "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
               "PYTHONPATH": str(ROOT)}
        with open(directory / "worker.err", "wb") as err:
            worker = subprocess.Popen(
                [sys.executable, "-m", "engine.cli", "--db", f"sqlite:///{directory / 'state.db'}",
                 "run", "--action", "tests.actions.ledger:LedgerAction", *FLAGS],
                env=env, cwd=directory, stdout=subprocess.DEVNULL, stderr=err,
                stdin=subprocess.DEVNULL)
        samples: list[tuple[float, float]] = []
        started = 0
        try:
            began = time.monotonic()
            next_sample = began + every
            while (now := time.monotonic()) - began < seconds:
                if worker.poll() is not None:
                    raise RuntimeError(f"the worker exited {worker.returncode}: "
                                       f"{(directory / 'worker.err').read_text()[-2000:]}")
                while started < int((now - began) * rate) + 1:
                    emulator.start_execution(
                        "Test/Custom/Ledger/1",
                        {"Ledger": str(ledger), "Outcome": "pass" if chance.random() < 0.8
                         else "fail", "Steps": str(chance.randint(5, 20)),
                         "Token": f"{EXPECTED_TOKEN_PREFIX}{secrets.token_hex(12)}"},
                        action="Ledger", pipeline_name=f"steady-{started % 50}")
                    started += 1
                if now >= next_sample:
                    samples.append((now - began, rss_mb(worker.pid)))
                    next_sample += every
                time.sleep(0.05)
            samples.append((time.monotonic() - began, rss_mb(worker.pid)))  # at the very end
        finally:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
                try:
                    worker.wait(60)
                except subprocess.TimeoutExpired:
                    worker.kill()
                    worker.wait(10)
        finished = sum(1 for e in emulator.executions() if e["status"] != "InProgress")
    db_mb = sum(p.stat().st_size for p in directory.glob("state.db*")) / 2**20
    return Steady(samples, started, finished, db_mb)


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        print(steady_run(Path(scratch), float(sys.argv[1]), float(sys.argv[2])).line())
