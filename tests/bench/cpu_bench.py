"""End-to-end CPU per job: what the end-to-end row costs in CPU seconds, beside DBOS's.

The wall-clock rows are at the mercy of whatever else the shared machine runs; process CPU time
(all threads) is less so, and it is what a busy worker pays: the end-to-end run is CPU-bound
(one core, the GIL), so its rate is about 1 / CPU per job. Same run as
engine_bench.jobs_per_second (5,000 jobs through every state, the in-process CodePipeline
stand-in, default settings and durability, SQLite), measured with time.process_time(); DBOS's
figure comes from baselines.dbos_run, which measures its loop the same way.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from tests.bench import baselines
from tests.bench.engine_bench import end_to_end
from tests.bench.table import Row


def cpu_ms_per_job(tmp: Path, jobs: int) -> float:
    """Process CPU milliseconds per job (every thread) of engine_bench.jobs_per_second's run."""
    return end_to_end(tmp, jobs)[1] * 1000.0 / jobs


def cpu_rows(tmp: Path, runs: int, jobs: int, workflows: int) -> list[Row]:
    """The row "end-to-end: CPU per job": cpworker's CPU ms per job against DBOS's CPU ms per
    workflow (4 steps, SQLite), medians of `runs`, lower is better. The two are interleaved,
    so that a neighbour's load falls on both alike."""
    ours: list[float] = []
    theirs: list[float] = []
    for _ in range(runs):
        ours.append(cpu_ms_per_job(tmp, jobs))
        theirs.append(baselines.dbos_run(tmp, workflows).cpu_ms_per_workflow)
    return [Row(f"end-to-end: CPU per job ({jobs:,} jobs through every state, all threads)",
                statistics.median(ours), "CPU ms", "DBOS workflow of 4 steps, SQLite",
                statistics.median(theirs), False)]
