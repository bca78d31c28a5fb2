"""The benchmarks, cpworker beside its baselines in one run, as a table of medians and ratios.

    python -m tests.bench            # the full run (several minutes), figures for the README
    python -m tests.bench --smoke    # tiny sizes, one repetition: proves every benchmark runs
    python -m tests.bench --no-steady  # every row but the 10-minute steady run
    python -m tests.bench --aws-only   # only issue 12's rows (artifacts on S3, events queue)
    python -m tests.bench --only pg    # one group of rows (aws, big-log, calls, pg)

Nothing asserts a speed: the machines are shared and noisy, so the figures are read as ratios
to baselines measured in the same run, on the same disk.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from engine import defaults
from tests.bench import (
    aws_bench,
    baselines,
    big_log,
    calls_bench,
    cpu_bench,
    engine_bench,
    pg_bench,
    steady,
)
from tests.bench.table import Row, median


@dataclass(frozen=True)
class Sizes:
    runs: int
    e2e_jobs: int
    dbos_workflows: int
    append_jobs: int
    es_aggregates: int
    sa_rows: int
    history: int
    in_flight: int
    due: int
    api_jobs: int
    steady_seconds: float = 600.0
    steady_every: float = 30.0
    upload_mb: int = 1024
    """MiB uploaded (one run: a gigabyte twice over takes a while, and RSS barely varies)."""
    zip_mb: int = 256
    """MiB of random files zipped and uploaded (zlib deflates random bytes at ~25 MB/s)."""
    pickup_executions: int = 20
    pickup_poll_interval: float = defaults.POLL_INTERVAL
    pickup_samples: int = 200
    """Polling-only samples, on a fake clock."""
    cancel_executions: int = 10
    cancel_samples: int = 20
    """Polling-only samples, on a fake clock."""


FULL = Sizes(runs=3, e2e_jobs=5000, dbos_workflows=500, append_jobs=4000, es_aggregates=2000,
             sa_rows=3000, history=1000, in_flight=100_000, due=10_000, api_jobs=200)
SMOKE = Sizes(runs=1, e2e_jobs=60, dbos_workflows=5, append_jobs=40, es_aggregates=20,
              sa_rows=40, history=100, in_flight=300, due=100, api_jobs=5, steady_seconds=20.0,
              steady_every=2.0, upload_mb=32, zip_mb=16, pickup_executions=3,
              pickup_poll_interval=3.0, pickup_samples=5, cancel_executions=2, cancel_samples=2)


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} cores; Python {platform.python_version()}; "
            f"SQLite {sqlite3.sqlite_version}; {platform.system()} {platform.release()}")


def run(sizes: Sizes, tmp: Path, say: Callable[[str], None], steady: bool = True) -> list[Row]:
    rows: list[Row] = []
    n = sizes.runs

    say("end-to-end throughput ...")
    ours = median(n, lambda: engine_bench.jobs_per_second(tmp, sizes.e2e_jobs))
    dbos = median(n, lambda: baselines.dbos_workflows_per_second(tmp, sizes.dbos_workflows))
    e2e = Row(f"end-to-end: {sizes.e2e_jobs:,} jobs through every state", ours, "jobs/s",
              "DBOS workflows of 4 steps, SQLite", dbos, True, ">= 30x")
    e2e.met = e2e.ratio >= 30
    rows.append(e2e)
    rows += cpu_bench.cpu_rows(tmp, n, sizes.e2e_jobs, sizes.dbos_workflows)

    say("durable appends ...")
    ours = median(n, lambda: engine_bench.appends_per_second(tmp, sizes.append_jobs))
    es5 = median(n, lambda: baselines.eventsourcing_appends_per_second(
        tmp, sizes.es_aggregates, 5))
    es1 = median(n, lambda: baselines.eventsourcing_appends_per_second(
        tmp, sizes.es_aggregates, 1, events_per_aggregate=5))
    normal = median(n, lambda: baselines.sqlalchemy_single_row_transactions_per_second(
        tmp, sizes.sa_rows, "NORMAL"))
    full = median(n, lambda: baselines.sqlalchemy_single_row_transactions_per_second(
        tmp, sizes.sa_rows, "FULL"))
    label = "appends: 5 events/job, 100 jobs/commit"
    appends = Row(label, ours, "events/s", "eventsourcing, 5 events per save", es5, True,
                  ">= 2x")
    appends.met = appends.ratio >= 2
    rows += [appends,
             Row(label, ours, "events/s", "eventsourcing, 1 event per save", es1, True),
             Row(label, ours, "events/s", "SQLAlchemy 1 row/transaction, NORMAL", normal, True),
             Row(label, ours, "events/s", "SQLAlchemy 1 row/transaction, FULL", full, True)]

    say("replay ...")
    fold = median(max(5, n), lambda: engine_bench.fold_ms(sizes.history))
    loaded = median(max(5, n), lambda: engine_bench.load_and_fold_ms(tmp, sizes.history))
    rebuild = median(max(5, n), lambda: baselines.eventsourcing_rebuild_ms(tmp, sizes.history))
    replay = Row(f"replay: fold {sizes.history:,} events in memory", fold, "ms",
                 "eventsourcing rebuild (from SQLite)", rebuild, False, "<= 3 ms")
    replay.met = fold <= 3
    rows += [replay, Row(f"replay: read {sizes.history:,} events from SQLite + fold", loaded,
                         "ms", "eventsourcing rebuild (from SQLite)", rebuild, False)]

    say(f"preparing {sizes.in_flight:,} jobs in flight ...")
    db = tmp / "in-flight.db"
    engine_bench.prepare_in_flight(db, sizes.in_flight)
    one = tmp / "one-in-flight.db"
    engine_bench.prepare_in_flight(one, 1)

    say("scale ...")
    results = [engine_bench.scale(db, sizes.due, 1000.0) for _ in range(n)]
    rss = statistics.median(r["rss_mb"] for r in results)
    rss_base = statistics.median(r["baseline_rss_mb"] for r in results)
    late = statistics.median(r["p99_ms"] for r in results)
    late_base = statistics.median(r["baseline_p99_ms"] for r in results)
    memory = Row(f"scale: peak RSS, {sizes.in_flight:,} jobs in flight", rss, "MB",
                 "the same process before the worker starts", rss_base, False, "<= 150 MB")
    memory.met = rss <= 150
    lateness = Row("scale: p99 lateness of a due machine, 1,000 due/s", late, "ms",
                   "a bare Python timer loop, 1,000 wake-ups/s", late_base, False, "<= 50 ms")
    lateness.met = late <= 50
    rows += [memory, lateness]

    say("resume ...")
    resume = median(n, lambda: engine_bench.resume_seconds(db))
    resume_base = median(n, lambda: engine_bench.resume_seconds(one))
    restart = Row(f"resume: kill -9, restart, first advanced job ({sizes.in_flight:,})",
                  resume, "s", "the same with 1 job in flight", resume_base, False, "<= 1 s")
    restart.met = resume <= 1
    rows.append(restart)

    say("API economy ...")
    api = engine_bench.api_economy(tmp, sizes.api_jobs)
    calls = Row("CodePipeline calls per job, beyond polls", api["calls_per_job"], "calls",
                "AWS sample worker (ack + result)", 2.0, False, "<= 2")
    calls.met = api["calls_per_job"] <= 2
    idle = Row("polls per minute per action type, idle (60 min)",
               api["idle_polls_per_minute"], "polls/min", "a fixed 1 s poller (Buildkite)", 60.0,
               False, "<= 2")
    idle.met = api["idle_polls_per_minute"] <= 2
    rows += [calls, Row("polls per job while busy (amortized)", api["polls_per_job"], "polls",
                        "one poll per job (Jenkins plugin, batch of 1)", 1.0, False), idle]
    rows += aws_rows(sizes, tmp, say)
    rows += calls_bench.rows(sizes is SMOKE, tmp, say)
    rows += pg_bench.rows(sizes is SMOKE, tmp, say)
    rows += big_log.rows(sizes is SMOKE, tmp, say)
    if steady:
        rows.append(steady_row(sizes, tmp, say))
    return rows


def aws_rows(sizes: Sizes, tmp: Path, say: Callable[[str], None]) -> list[Row]:
    """Issue 12: artifacts on S3 (memory), and the waits the events queue shortens."""
    rows: list[Row] = []
    say(f"artifacts: uploading {sizes.upload_mb:,} MiB with cpworker and with boto3 ...")
    up = aws_bench.upload_memory(tmp, sizes.upload_mb, sizes.zip_mb)
    size = f"{sizes.upload_mb / 1024:g} GiB" if sizes.upload_mb >= 1024 else \
        f"{sizes.upload_mb} MiB"
    reset = "" if up.peak_reset else " (peak not reset: includes the warm-up's)"
    memory = Row(f"artifacts: RSS growth uploading {size} (SSE-KMS, 8 MiB parts){reset}",
                 up.growth_mb["cpworker"], "MB", "boto3 upload_file, default TransferConfig",
                 up.growth_mb["boto3"], False, "<= 50 MB")
    memory.met = up.growth_mb["cpworker"] <= 50
    rows += [memory, Row(f"artifacts: time uploading {size}", up.seconds["cpworker"], "s",
                         "boto3 upload_file, default TransferConfig", up.seconds["boto3"],
                         False)]
    if "cpworker-zip" in up.growth_mb:
        rows.append(Row(f"artifacts: RSS growth zipping and uploading a {sizes.zip_mb} MiB "
                        f"directory (archive=True, {up.seconds['cpworker-zip']:.0f} s)",
                        up.growth_mb["cpworker-zip"], "MB",
                        f"the {size} file as it is (archive=False)", up.growth_mb["cpworker"],
                        False))

    wait = f"{sizes.pickup_poll_interval:g} s"
    say(f"pick-up after idle, events queue ({sizes.pickup_executions} executions, poller in "
        f"its {wait} wait) ...")
    events = aws_bench.pickup_with_events(tmp, sizes.pickup_executions,
                                          sizes.pickup_poll_interval)
    say(f"pick-up after idle, polling only ({sizes.pickup_samples} samples, fake clock) ...")
    polling = aws_bench.pickup_polling_only(tmp, sizes.pickup_samples)
    base = (f"polling only, default intervals (fake clock, {len(polling.latencies)} samples "
            f"after {aws_bench.IDLE_MINUTES:g} idle min)")
    for q, target in ((50, 1.0), (99, 3.0)):
        ours = aws_bench.percentile(events.latencies, q)
        row = Row(f"pick-up after idle, events queue: p{q} of {len(events.latencies)} "
                  f"(poller in its {wait} wait)", ours, "s", base,
                  aws_bench.percentile(polling.latencies, q), False, f"<= {target:g} s")
        row.met = ours <= target
        rows.append(row)
    per_minute = Row(f"PollForJobs per minute per action type while picking up "
                     f"({events.polls} in {events.minutes:.1f} min)", events.polls_per_minute,
                     "polls/min", "polling only (fake clock)", polling.polls_per_minute, False,
                     "<= 2")
    per_minute.met = events.polls_per_minute <= 2
    empty = Row("the same, beyond one poll per execution", events.empty_polls_per_minute,
                "polls/min", "polling only (fake clock)", polling.empty_polls_per_minute, False,
                "<= 2")
    empty.met = events.empty_polls_per_minute <= 2
    rows += [per_minute, empty]

    say(f"cancel after a stop, events queue ({sizes.cancel_executions} Travis builds) ...")
    cancel = aws_bench.cancel_with_events(tmp, sizes.cancel_executions)
    say(f"cancel after a stop, polling only ({sizes.cancel_samples} samples, fake clock) ...")
    cancel_base = aws_bench.cancel_polling_only(tmp, sizes.cancel_samples)
    base = (f"polling only: the next progress report refused (fake clock, default intervals, "
            f"{len(cancel_base)} samples)")
    for label, pick in (("p50", statistics.median), ("max", max)):
        ours = pick(cancel)
        row = Row(f"cancel after stop-and-abandon (Travis), events queue: {label} of "
                  f"{len(cancel)}", ours, "s", base, pick(cancel_base), False, "<= 2 s")
        row.met = ours <= 2
        rows.append(row)
    return rows


GROUPS: dict[str, Callable[[bool, Path, Callable[[str], None]], list[Row]]] = {
    "aws": lambda smoke, tmp, say: aws_rows(SMOKE if smoke else FULL, tmp, say),
    "big-log": big_log.rows,
    "calls": calls_bench.rows,
    "pg": pg_bench.rows,
}
"""Groups of rows that `--only NAME` runs alone (each also runs in the full table)."""


STEADY_GROWTH = 0.1
"""MB per minute of RSS growth still taken as noise over a 10-minute steady run."""


def steady_row(sizes: Sizes, tmp: Path, say: Callable[[str], None]) -> Row:
    """One worker, an execution a second, builds of 5-20 s: RSS sampled, growth per minute."""
    say(f"steady run ({sizes.steady_seconds:g} s, RSS every {sizes.steady_every:g} s) ...")
    result = steady.steady_run(tmp, sizes.steady_seconds, sizes.steady_every)
    say(result.line())
    row = Row(f"steady run: worker RSS after {sizes.steady_seconds / 60:.3g} min, 1 execution/s, "
              f"builds 5-20 s (growth {result.growth_per_minute:+.3f} MB/min, second half "
              f"{result.warm_growth_per_minute:+.3f})", result.last,
              "MB", "its RSS at the first sample", result.first, False,
              f"second-half growth <= {STEADY_GROWTH:g} MB/min")
    row.met = result.warm_growth_per_minute <= STEADY_GROWTH
    return row


def table(rows: list[Row]) -> str:
    head = ("| benchmark | cpworker | baseline | baseline figure | ratio | target | met |",
            "|---|---:|---|---:|---:|---|---|")
    body = []
    for r in rows:
        met = "" if r.met is None else ("yes" if r.met else "NO")
        # A figure of zero against a baseline has no ratio worth printing ("infx").
        ratio = f"{r.ratio:,.3g}x" if math.isfinite(r.ratio) else "-"
        body.append(f"| {r.name} | {r.ours:,.4g} {r.unit} | {r.baseline_name} | "
                    f"{r.baseline:,.4g} {r.unit} | {ratio} | {r.target} | {met} |")
    return "\n".join([*head, *body])


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description="cpworker's benchmarks beside their baselines")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one repetition")
    parser.add_argument("--steady-only", action="store_true",
                        help="only the steady run (RSS over 10 minutes; 20 s with --smoke)")
    parser.add_argument("--no-steady", action="store_true",
                        help="every row but the steady run (a quick comparison after a change)")
    parser.add_argument("--aws-only", action="store_true",
                        help="only issue 12's rows: artifacts on S3, the events queue's waits")
    parser.add_argument("--only", choices=sorted(GROUPS),
                        help="only one group of rows: aws (artifacts, events queue), big-log "
                        "(a million finished jobs), calls (CodePipeline calls per execution), "
                        "pg (PostgreSQL scale-out)")
    args = parser.parse_args()
    sizes = SMOKE if args.smoke else FULL
    started = time.perf_counter()
    scratch = os.environ.get("TMPDIR")
    with tempfile.TemporaryDirectory(prefix="cpworker-bench-", dir=scratch) as directory:
        if args.steady_only:
            rows = [steady_row(sizes, Path(directory), say)]
        elif args.aws_only:
            rows = aws_rows(sizes, Path(directory), say)
        elif args.only:
            rows = GROUPS[args.only](sizes is SMOKE, Path(directory), say)
        else:
            rows = run(sizes, Path(directory), say, steady=not args.no_steady)
    print(f"machine: {machine()}")
    print(f"sizes: {'smoke' if args.smoke else 'full'}, median of {sizes.runs} "
          f"(ratio: how many times better than the baseline), "
          f"{time.perf_counter() - started:.0f} s\n")
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
