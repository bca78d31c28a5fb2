"""Scale-out on PostgreSQL (issue 14): 1, 2 and 4 worker processes sharing one database, beside
DBOS on the same server, with every effect counted.

    rows(smoke, tmp, say) -> list[Row]     (tests/bench/__main__.py prints them in the table)

What runs: a throwaway PostgreSQL cluster (tests/pg.py: initdb, fsync off, 127.0.0.1, stopped
and deleted at the end), a fresh database per run. Each run starts P processes of
tests/bench/pg_children.py, waits until all have imported and opened their store, starts them
together and times from that start to the last report of the last job (the figure is jobs/s,
the whole run's). Each cpworker process has its own in-process stand-in of CodePipeline holding
a disjoint slice of the job ids (the engine is measured, not HTTP), but they share the jobs
table: each process's scheduler claims any due row, so they contend for each other's jobs
through claims and leases, which is what scaling out means here. DBOS gets the same: P
processes (executors) on one system database, each enqueueing its slice on one shared queue and
running what it dequeues, as many workflows at once per process as cpworker has effect threads.

Two actions: `instant` (every call returns at once: the engine's own cost) and `io` (submit
and check each wait 50 ms, as a real action waits on its service; DBOS's submit and check
steps wait the same). Every submit and every report is appended to a ledger file per process;
after each run the ledgers are counted: an id submitted twice, or a job not reported exactly
once, is a duplicate (or lost) effect and fails the row.

Also measured per run: the CPU time of the worker processes, of the PostgreSQL server's
processes (when its data directory is readable here) and how busy the machine's cores were,
so the figures say whether CPU or the waits bound them. Nothing here asserts a speed.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import sqlalchemy as sa

from engine import defaults
from engine.store import open_store
from tests.bench.pg_children import IO8_THREADS, PAUSE, threads_of
from tests.bench.table import Row
from tests.pg import PostgresMisconfigured, PostgresServer, PostgresUnavailable, postgres

ROOT = Path(__file__).resolve().parents[2]

KINDS = {"instant": "instant action", "io": "50 ms action",
         "io8": f"50 ms action, {IO8_THREADS} effect threads"}
"""io8: the 50 ms action with fewer calls in the air per process, so four processes' waits,
not this machine's two cores, set the pace: the scale-out of workers sharing one database,
without the cores' ceiling that the default 32 threads reach first here."""
DBOS_CONCURRENCY = defaults.EFFECT_THREADS
"""Workflows one DBOS process runs at once (worker_concurrency): as many as a cpworker process
has effect threads, so each side has the same number of calls in the air per process."""
DBOS_POLL = 0.01
"""DBOS's queue polling interval. Its default (1 s) would cap a process at 32 workflows a
second whatever the database does; 10 ms was its fastest here (0.05, 0.2 and 1 s tried)."""


@dataclass(frozen=True)
class Sizes:
    runs: int
    jobs: dict[str, int]
    """Jobs per cpworker run, by action kind."""
    dbos_workflows: dict[str, int]
    """Workflows per DBOS run, by action kind (DBOS is slower: fewer give the same precision)."""
    timeout: float
    """Seconds one run may take, start-up included, before its processes are killed."""
    dbos_runs: int = 1
    """DBOS's rate moves less between runs than ours (it is CPU-bound at a lower rate)."""
    processes: tuple[int, ...] = (1, 2, 4)
    kinds: tuple[str, ...] = tuple(KINDS)


FULL = Sizes(runs=3, jobs={"instant": 1000, "io": 1000, "io8": 400},
             dbos_workflows={"instant": 300, "io": 300, "io8": 200}, timeout=300)
SMOKE = Sizes(runs=1, jobs={"instant": 20, "io": 20, "io8": 20},
              dbos_workflows={"instant": 8, "io": 8, "io8": 8},
              timeout=90, processes=(1, 2), kinds=("io",))
"""Every code path in well under a minute: process start-up is most of it (2-3 s each on a
busy machine), so fewer runs than the full run (the instant action is the 50 ms one without
its sleeps)."""


# --- counting effects -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Tally:
    """What the ledgers say happened, against the jobs that should each have happened once."""

    submitted_twice: list[str] = field(default_factory=list)
    """Ids submitted more than once: a duplicate external effect."""
    not_reported_once: list[str] = field(default_factory=list)
    """Expected jobs reported zero times or more than once."""
    unexpected: list[str] = field(default_factory=list)
    """Ids in the ledgers that no process was given."""

    @property
    def failures(self) -> int:
        return len(self.submitted_twice) + len(self.not_reported_once) + len(self.unexpected)

    def line(self) -> str:
        def some(ids: list[str]) -> str:
            return ", ".join(ids[:5]) + (" ..." if len(ids) > 5 else "")

        if not self.failures:
            return "no duplicate or missing effect"
        return (f"{len(self.submitted_twice)} submitted twice ({some(self.submitted_twice)}), "
                f"{len(self.not_reported_once)} not reported exactly once "
                f"({some(self.not_reported_once)}), {len(self.unexpected)} unexpected "
                f"({some(self.unexpected)})")


def tally(lines: Iterable[str], expected: Sequence[str]) -> Tally:
    """Count the ledger lines (`S <id>` per submit, `R <id>` per report) against `expected`."""
    submits: Counter[str] = Counter()
    reports: Counter[str] = Counter()
    for line in lines:
        kind, _, job_id = line.strip().partition(" ")
        if kind == "S":
            submits[job_id] += 1
        elif kind == "R":
            reports[job_id] += 1
        elif line.strip():
            raise ValueError(f"not a ledger line: {line!r}")
    wanted = set(expected)
    return Tally(
        submitted_twice=sorted(j for j, n in submits.items() if n > 1),
        not_reported_once=sorted(j for j in wanted if reports[j] != 1),
        unexpected=sorted((set(submits) | set(reports)) - wanted),
    )


def ledger_lines(paths: Iterable[Path]) -> list[str]:
    return [line for path in paths if path.exists()
            for line in path.read_text().splitlines()]


# --- CPU ------------------------------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def machine_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of all cores since boot, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal (guest is in user)
    return total - fields[3] - fields[4], total


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) of one live process, 0 if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    after = stat.rsplit(")", 1)[1].split()  # the name may hold spaces and parentheses
    return (int(after[11]) + int(after[12])) / _TICK


def server_processes(postmaster: int) -> list[int]:
    """The postmaster and its children (backends, background workers)."""
    found = [postmaster]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == postmaster:
                found.append(int(entry.name))
    return found


def server_cpu(postmaster: int | None) -> dict[int, float]:
    return {} if postmaster is None else \
        {pid: process_cpu(pid) for pid in server_processes(postmaster)}


def postmaster_pid(server: PostgresServer) -> int | None:
    """The server's postmaster, when it runs here and its data directory can be read (the
    throwaway cluster, as root); None otherwise (its CPU is then not reported)."""
    engine = sa.create_engine(server.admin_url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            data = conn.exec_driver_sql("SHOW data_directory").scalar()
        return int((Path(str(data)) / "postmaster.pid").read_text().splitlines()[0])
    except (OSError, ValueError, IndexError, sa.exc.SQLAlchemyError):
        return None
    finally:
        engine.dispose()


# --- one run --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    mode: str
    kind: str
    processes: int
    jobs: int
    seconds: float
    """From the common start to the last job's report."""
    exit_seconds: float
    """From the common start to the last process's exit (shutdown, --until-idle's last look)."""
    worker_cpu: float
    """CPU seconds of the worker processes from the start to the end of their work."""
    server_cpu: float | None
    """CPU seconds of PostgreSQL's processes over the run (None: not readable here)."""
    busy: float
    """Share of all the machine's cores busy over the run (every process, others' too)."""
    tally: Tally

    @property
    def per_second(self) -> float:
        return self.jobs / self.seconds

    @property
    def own_share(self) -> float:
        """Share of all the cores this run's own processes (workers, server) used: beside
        `busy`, how much of the machine other work took meanwhile."""
        cpu = self.worker_cpu + (self.server_cpu or 0.0)
        return cpu / (self.seconds * (os.cpu_count() or 1))

    def line(self) -> str:
        server = "-" if self.server_cpu is None else f"{self.server_cpu * 1000 / self.jobs:.2f}"
        return (f"  {self.mode:<4} {KINDS[self.kind]:<14} {self.processes} process(es): "
                f"{self.per_second:8,.1f} jobs/s ({self.jobs} in {self.seconds:.2f} s, last exit "
                f"{self.exit_seconds:.2f} s); CPU ms/job: workers "
                f"{self.worker_cpu * 1000 / self.jobs:.2f}, PostgreSQL {server}; "
                f"cores busy {self.busy:.0%} of {os.cpu_count()}, this run's own "
                f"{self.own_share:.0%}; "
                f"{self.tally.line()}")


@contextmanager
def _children(commands: list[list[str]], workdir: Path) -> Iterator[list[_Child]]:
    """Start the processes; whatever happens, none outlives the block."""
    started: list[_Child] = []
    try:
        for n, command in enumerate(commands):
            started.append(_Child(command, workdir / f"stderr-{n}.txt"))
        yield started
    finally:
        for child in started:
            child.kill()


class _Child:
    """One benchmark process: its stdout read line by line on a thread, its stderr to a file."""

    def __init__(self, command: list[str], stderr: Path) -> None:
        self.stderr_path = stderr
        self.command = command
        self._stderr: IO[str] = stderr.open("w")
        self.process = subprocess.Popen(
            command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self._stderr, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        self.lines: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.strip())
        self.lines.put(None)

    def next_line(self, deadline: float) -> str | None:
        try:
            return self.lines.get(timeout=max(0.0, deadline - time.perf_counter()))
        except queue.Empty:
            raise TimeoutError(f"no answer from {self.describe()}") from None

    def wait_for(self, word: str, deadline: float) -> None:
        while (line := self.next_line(deadline)) != word:
            if line is None:
                raise RuntimeError(f"{self.describe()} ended before saying {word!r}")

    def say(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def result(self, deadline: float) -> dict[str, Any]:
        """The JSON line the process printed last, once it has ended."""
        last = None
        while (line := self.next_line(deadline)) is not None:
            last = line
        self.process.wait(max(0.0, deadline - time.perf_counter()))
        if self.process.returncode != 0 or last is None:
            raise RuntimeError(f"{self.describe()} failed")
        found: dict[str, Any] = json.loads(last)
        return found

    def describe(self) -> str:
        self._stderr.flush()
        tail = self.stderr_path.read_text(errors="replace")[-2000:]
        return f"bench process {self.command[3:5]} (exit {self.process.poll()}):\n{tail}"

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)
        self._stderr.close()


def run_once(server: PostgresServer, postmaster: int | None, mode: str, kind: str, jobs: int,
             processes: int, tmp: Path, timeout: float, dbos_concurrency: int = DBOS_CONCURRENCY,
             dbos_poll: float = DBOS_POLL) -> Run:
    """One run on a fresh database, dropped afterwards with the run's files."""
    url = server.create_database()
    workdir = Path(tempfile.mkdtemp(prefix=f"pg-{mode}-", dir=tmp))
    try:
        return run_processes(url.render_as_string(hide_password=False), postmaster, mode, kind,
                             jobs, processes, workdir, timeout, dbos_concurrency, dbos_poll)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        server.drop_database(url)


def run_processes(url: str, postmaster: int | None, mode: str, kind: str, jobs: int,
                  processes: int, workdir: Path, timeout: float,
                  dbos_concurrency: int = DBOS_CONCURRENCY, dbos_poll: float = DBOS_POLL) -> Run:
    """`processes` processes of `mode` (ours or dbos) share `jobs` jobs of `kind` (instant or
    io) on the empty database `url`; their ledgers stay in `workdir` (ledger-N.txt)."""
    if mode == "ours":  # migrated once, before the processes start: they find it current
        open_store(url).close()
    per, extra = divmod(jobs, processes)
    slices, first = [], 0
    for n in range(processes):
        count = per + (1 if n < extra else 0)
        slices.append((first, count))
        first += count
    ledgers = [workdir / f"ledger-{n}.txt" for n in range(processes)]
    commands = [[sys.executable, "-m", "tests.bench.pg_children", mode, url, kind,
                 str(first), str(count), str(ledger), str(timeout + 30)]
                + ([str(dbos_concurrency), str(dbos_poll)] if mode == "dbos" else [])
                for (first, count), ledger in zip(slices, ledgers, strict=True)]
    deadline = time.perf_counter() + timeout
    with _children(commands, workdir) as children:
        for child in children:
            child.wait_for("ready", deadline)
        server_before = server_cpu(postmaster)
        busy_before, total_before = machine_ticks()
        started = time.perf_counter()
        for child in children:
            child.say("go")
        _wait_for_reports(ledgers, jobs, children, deadline)
        busy_after, total_after = machine_ticks()
        server_after = server_cpu(postmaster)
        if mode == "dbos":  # DBOS runs until told: every workflow is reported by now
            for child in children:
                child.say("stop")
        results = [child.result(deadline) for child in children]
        exited = time.perf_counter()
    if any(r["code"] != 0 for r in results):
        raise RuntimeError(f"a worker exited with {[r['code'] for r in results]}")
    return Run(
        mode, kind, processes, jobs,
        seconds=max(r["last_report"] for r in results) - started,
        exit_seconds=exited - started,
        worker_cpu=sum(r["cpu"] for r in results),
        server_cpu=None if postmaster is None else sum(
            cpu - server_before.get(pid, 0.0) for pid, cpu in server_after.items()),
        busy=(busy_after - busy_before) / max(1, total_after - total_before),
        tally=tally(ledger_lines(ledgers), job_ids(jobs)),
    )


def job_ids(jobs: int) -> list[str]:
    """The ids the processes are given between them (tests/bench/pg_children.py's format)."""
    return [f"job-{n:07d}" for n in range(jobs)]


def _wait_for_reports(ledgers: Sequence[Path], jobs: int, children: Sequence[_Child],
                      deadline: float) -> None:
    """Until the ledgers hold a report per job (or more: duplicates are counted afterwards)."""
    while True:
        reported = sum(1 for line in ledger_lines(ledgers) if line.startswith("R "))
        if reported >= jobs:
            return
        if all(child.process.poll() is not None for child in children):
            return  # every process ended short of it: the tally will say what is missing
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{reported} of {jobs} jobs reported before the timeout")
        time.sleep(0.02)


# --- rows -----------------------------------------------------------------------------------------


def _check_clock() -> None:
    """The processes' report times are compared with this one's: perf_counter must be the
    machine-wide monotonic clock (it is on Linux)."""
    info = time.get_clock_info("perf_counter")
    if "CLOCK_MONOTONIC" not in info.implementation:
        raise RuntimeError(f"perf_counter is {info.implementation}, not shared by processes")


def measure(server: PostgresServer, sizes: Sizes, tmp: Path,
            say: Callable[[str], None]) -> dict[tuple[str, str, int], list[Run]]:
    """Every run: ours and DBOS, each action kind and number of processes."""
    _check_clock()
    postmaster = postmaster_pid(server)
    runs: dict[tuple[str, str, int], list[Run]] = {}
    for kind in sizes.kinds:
        for processes in sizes.processes:
            for mode, jobs, repeat in (("ours", sizes.jobs[kind], sizes.runs),
                                       ("dbos", sizes.dbos_workflows[kind], sizes.dbos_runs)):
                for _ in range(repeat):
                    run = run_once(server, postmaster, mode, kind, jobs, processes, tmp,
                                   sizes.timeout, dbos_concurrency=threads_of(kind))
                    say(run.line())
                    runs.setdefault((mode, kind, processes), []).append(run)
    return runs


def _median_rate(runs: Sequence[Run]) -> float:
    return statistics.median(r.per_second for r in runs)


def _median_cpu(runs: Sequence[Run]) -> float:
    """Milliseconds of CPU per job: the worker processes' and, when known, the server's."""
    return statistics.median((r.worker_cpu + (r.server_cpu or 0.0)) * 1000 / r.jobs
                             for r in runs)


def build_rows(runs: dict[tuple[str, str, int], list[Run]]) -> list[Row]:
    """The table's rows from the runs (split out so that it can be checked without a server)."""
    rows: list[Row] = []
    known = all(r.server_cpu is not None for rs in runs.values() for r in rs)
    cpu_of = "worker processes + PostgreSQL server" if known else "worker processes"

    def failures(*keys: tuple[str, str, int]) -> int:
        return sum(r.tally.failures for key in keys for r in runs[key])

    counts = sorted({processes for _, _, processes in runs})
    kinds = [kind for kind in KINDS if any(k == kind for _, k, _ in runs)]
    for kind in kinds:
        label = KINDS[kind]
        for processes in counts:
            ours, theirs = runs[("ours", kind, processes)], runs[("dbos", kind, processes)]
            bad = failures(("ours", kind, processes))
            row = Row(f"PostgreSQL, {processes} worker process{'es' if processes > 1 else ''}, "
                      f"{label}: {ours[0].jobs:,} jobs ({bad} duplicate/lost effects)",
                      _median_rate(ours), "jobs/s",
                      f"DBOS queue, {processes} process{'es' if processes > 1 else ''} x "
                      f"{threads_of(kind)} workflows, same server", _median_rate(theirs), True)
            if kind == "instant" and processes == 1:
                row.target = ">= 10x"
                row.met = row.ratio >= 10 and not bad
            elif bad:
                row.met = False
            rows.append(row)
            if processes == 1:
                # CPU per job moves far less than jobs/s when other work shares the cores.
                rows.append(Row(f"PostgreSQL, 1 worker process, {label}: CPU per job ({cpu_of})",
                                _median_cpu(ours), "ms", "DBOS queue, 1 process, per workflow",
                                _median_cpu(theirs), False))
    most = counts[-1]
    for kind in ("io", "io8"):
        if kind not in kinds or most == 1:
            continue
        one, many = runs[("ours", kind, 1)], runs[("ours", kind, most)]
        bad = failures(("ours", kind, 1), ("ours", kind, most))
        scale = Row(f"PostgreSQL scale-out, {KINDS[kind]}: {most} worker processes against 1 "
                    f"({bad} duplicate/lost effects)", _median_rate(many), "jobs/s",
                    "cpworker, 1 worker process, same action", _median_rate(one), True)
        if most == 4:  # the target
            scale.target = ">= 3x"
            scale.met = scale.ratio >= 3 and not bad
        elif bad:
            scale.met = False
        rows.append(scale)
    ours_bad = sum(r.tally.failures for (mode, _, _), rs in runs.items() if mode == "ours"
                   for r in rs)
    dbos_bad = sum(r.tally.failures for (mode, _, _), rs in runs.items() if mode == "dbos"
                   for r in rs)
    count = sum(len(rs) for (mode, _, _), rs in runs.items() if mode == "ours")
    effects = Row(f"PostgreSQL: duplicate or lost effects over all {count} cpworker runs (ids "
                  "submitted twice + jobs not reported exactly once)", ours_bad, "effects",
                  "DBOS, its runs", dbos_bad, False, "0")
    effects.met = ours_bad == 0
    rows.append(effects)
    return rows


def bounds(runs: dict[tuple[str, str, int], list[Run]]) -> list[str]:
    """A line per setting: CPU per job, how busy the cores were and the ceilings they imply,
    so the figures say whether the cores, one process's interpreter or the waits set the pace.

    Three ceilings, in jobs/s: the machine's cores at this CPU per job (workers and server);
    the worker processes, each running Python on one core at a time (its GIL) at their CPU per
    job; and, for the 50 ms action, the waits: each process has EFFECT_THREADS calls in the
    air (DBOS: as many workflows), each job waiting 2 x 50 ms.
    """
    lines = []
    cores = os.cpu_count() or 1
    for (mode, kind, processes), rs in sorted(runs.items()):
        busy = statistics.median(r.busy for r in rs)
        own = statistics.median(r.own_share for r in rs)
        worker = statistics.median(r.worker_cpu * 1000 / r.jobs for r in rs)
        servers = [r.server_cpu * 1000 / r.jobs for r in rs if r.server_cpu is not None]
        server = statistics.median(servers) if servers else 0.0
        ceilings = {"cores": cores * 1000 / (worker + server),
                    "one core per process": processes * 1000 / worker}
        if kind != "instant":
            ceilings["the waits"] = processes * threads_of(kind) / (2 * PAUSE)
        lowest = min(ceilings, key=lambda name: ceilings[name])
        shown = ", ".join(f"{name} {value:,.0f}" for name, value in ceilings.items())
        rate = _median_rate(rs)
        bound = f"bound by {lowest}" if rate >= 0.7 * ceilings[lowest] else (
            f"well below them: other work held {max(0.0, busy - own):.0%} of the cores, or "
            "the run was too short to ramp up")
        lines.append(f"  {mode:<4} {KINDS[kind]:<14} {processes}p: "
                     f"{rate:7,.1f} jobs/s; CPU ms/job workers {worker:.2f} + "
                     f"PostgreSQL {f'{server:.2f}' if servers else '-'}; cores busy {busy:.0%} "
                     f"(this run's own {own:.0%}); ceilings in jobs/s: {shown}; {bound}")
    return lines


def rows(smoke: bool, tmp: Path, say: Callable[[str], None]) -> list[Row]:
    """The PostgreSQL scale-out rows; none (and a line saying why) without PostgreSQL."""
    sizes = SMOKE if smoke else FULL
    try:
        with postgres() as server:
            counts = ", ".join(map(str, sizes.processes))
            say(f"PostgreSQL scale-out on PostgreSQL {server.check()} ({os.cpu_count()} cores; "
                f"cpworker and DBOS in {counts} processes, {sizes.runs} and {sizes.dbos_runs} "
                f"run(s) each) ...")
            runs = measure(server, sizes, tmp, say)
    except (PostgresUnavailable, PostgresMisconfigured) as why:
        say(f"PostgreSQL scale-out rows skipped: {why}")
        return []
    say("PostgreSQL scale-out, medians, and what bounds them:")
    for line in bounds(runs):
        say(line)
    return build_rows(runs)
