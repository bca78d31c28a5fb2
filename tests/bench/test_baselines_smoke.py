"""Smoke test of the baselines: each runs with tiny sizes and returns a positive number.

Not a measurement. DBOS and eventsourcing come with the bench extra; without them their tests
skip.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tests.bench import baselines

pytestmark = pytest.mark.bench


def _positive(value: float) -> None:
    assert isinstance(value, float)
    assert math.isfinite(value)
    assert value > 0


def test_dbos_workflows_per_second_relaunches(tmp_path: Path) -> None:
    pytest.importorskip("dbos")
    _positive(baselines.dbos_workflows_per_second(tmp_path, 3))
    # DBOS is a process-global singleton: a second measurement in the same process works.
    run = baselines.dbos_run(tmp_path, 2)
    _positive(run.workflows_per_second)
    _positive(run.cpu_ms_per_workflow)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("events_per_save", "events_per_aggregate"),
                         [(5, None), (1, None), (1, 5), (2, 5)])
def test_eventsourcing_appends_per_second(
    tmp_path: Path, events_per_save: int, events_per_aggregate: int | None
) -> None:
    pytest.importorskip("eventsourcing")
    _positive(baselines.eventsourcing_appends_per_second(
        tmp_path, 3, events_per_save, events_per_aggregate=events_per_aggregate))
    assert list(tmp_path.iterdir()) == []


def test_eventsourcing_rebuild_ms(tmp_path: Path) -> None:
    pytest.importorskip("eventsourcing")
    _positive(baselines.eventsourcing_rebuild_ms(tmp_path, 250))
    _positive(baselines.eventsourcing_rebuild_ms(tmp_path, 1))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("synchronous", ["NORMAL", "FULL"])
def test_sqlalchemy_single_row_transactions_per_second(tmp_path: Path, synchronous: str) -> None:
    _positive(baselines.sqlalchemy_single_row_transactions_per_second(tmp_path, 5, synchronous))
    assert list(tmp_path.iterdir()) == []


def test_sizes_and_settings_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        baselines.sqlalchemy_single_row_transactions_per_second(tmp_path, 5, "SOMETIMES")
    with pytest.raises(ValueError):
        baselines.sqlalchemy_single_row_transactions_per_second(tmp_path, 0, "FULL")
