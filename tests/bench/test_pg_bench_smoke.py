"""Smoke test of the PostgreSQL scale-out benchmark: its duplicate counter counts, and a real run
of two worker processes on one database leaves ledgers it finds clean, until one is made dirty.

Not a measurement. Needs PostgreSQL (tests/pg.py: skipped without it, a failure in CI).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bench import pg_bench

pytest_plugins = ["tests.pg"]
pytestmark = pytest.mark.bench


def test_tally_counts_each_kind_of_wrong_effect() -> None:
    expected = pg_bench.job_ids(4)
    clean = [f"{kind} {job}" for job in expected for kind in "SR"]
    assert pg_bench.tally(clean, expected).failures == 0
    dirty = pg_bench.tally([*clean, "S job-0000001", "R job-0000002", "S job-0000009"],
                           [j for j in expected if j != "job-0000003"] + ["job-0000005"])
    assert dirty.submitted_twice == ["job-0000001"]
    # job-0000002 reported twice, job-0000005 never; job-0000003 and -0009 were nobody's.
    assert dirty.not_reported_once == ["job-0000002", "job-0000005"]
    assert dirty.unexpected == ["job-0000003", "job-0000009"]
    assert dirty.failures == 5
    with pytest.raises(ValueError):
        pg_bench.tally(["X job-0000001"], expected)


def test_two_workers_share_one_database_and_a_duplicate_is_counted(
    postgres_url: str, tmp_path: Path
) -> None:
    run = pg_bench.run_processes(postgres_url, None, "ours", "instant", 12, 2, tmp_path,
                                 timeout=60)
    assert run.tally.failures == 0, run.tally.line()
    assert run.seconds > 0 and run.exit_seconds >= run.seconds
    ledgers = sorted(tmp_path.glob("ledger-*.txt"))
    lines = pg_bench.ledger_lines(ledgers)
    assert sum(line.startswith("S ") for line in lines) == 12
    # The same ledgers with one submit performed a second time, by the other process.
    first = next(line for line in lines if line.startswith("S "))
    with ledgers[1].open("a") as ledger:
        ledger.write(first + "\n")
    found = pg_bench.tally(pg_bench.ledger_lines(ledgers), pg_bench.job_ids(12))
    assert found.submitted_twice == [first.split()[1]]
    assert found.failures == 1
