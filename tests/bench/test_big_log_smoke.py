"""The big log's finished jobs are real: each clone's history replays to its own row.

Not a measurement: a few hundred clones written the benchmark's way (sqlite3, text
substitution of one real job), then read back through the store.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.projection import fold
from engine.store import open_store
from tests.bench import big_log
from tests.bench.engine_bench import prepare_in_flight

pytestmark = pytest.mark.bench


def test_cloned_finished_jobs_replay_to_their_rows(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    prepare_in_flight(db, 20)
    template = big_log.real_job(tmp_path)
    assert len(template.events) == 7
    big_log.add_finished(db, template, 300, 20, lambda _: None, batch=128)
    store = open_store(f"sqlite:///{db}")
    try:
        assert store.count_active() == 20
        assert store.count_by_state() == {"running": 20, "succeeded": 300}
        for n in (0, 1, 150, 299):
            job_id = big_log.finished_id(n, 300, 20)
            assert len(job_id) == 36
            row = store.get(job_id)
            history = store.history(job_id)
            assert row is not None and fold(history) == row
            assert [e.type for e in history][-2:] == ["run_succeeded", "result_reported"]
            assert all(e.worker == big_log.CLONED_WORKER for e in history)
            assert row.execution_id == f"x-{job_id}"
    finally:
        store.close()
