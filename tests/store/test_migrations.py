"""Migrations when several workers start at once, and on a database newer than the code."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from engine.errors import StoreFailure
from engine.history import replay_jobs
from engine.store import open_store
from engine.store.sql import HEAD_REVISION
from tests.store.builders import T0, write

WORKERS = 4


def _start_a_worker(url: str, barrier: Any, results: Any) -> None:
    """A worker process's start, in a process of its own: open (and migrate) the store."""
    try:
        barrier.wait(timeout=60)
        open_store(url).close()
        results.put("started")
    except Exception as error:  # reported to the test, which shows it
        results.put(f"{type(error).__name__}: {error}")


def test_workers_starting_together_on_an_empty_database_all_start(store_url: str) -> None:
    """One migrates, the others wait for it (advisory lock, or SQLite's write lock) and find
    the schema current: nobody dies on a duplicate key.

    Processes, as workers are: two threads of one process would also share alembic's global
    migration context.
    """
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(WORKERS)
    results = context.Queue()
    workers = [context.Process(target=_start_a_worker, args=(store_url, barrier, results))
               for _ in range(WORKERS)]
    for worker in workers:
        worker.start()
    try:
        outcomes = [results.get(timeout=120) for _ in workers]
    finally:
        for worker in workers:
            worker.join(timeout=10)
            if worker.is_alive():
                worker.kill()
    assert outcomes == ["started"] * WORKERS
    stores = [open_store(store_url, migrate=False) for _ in range(2)]
    try:
        assert [s.revision() for s in stores] == [HEAD_REVISION] * 2
        with stores[0].engine.connect() as conn:
            versions = conn.exec_driver_sql("SELECT version_num FROM alembic_version").all()
        assert versions == [(HEAD_REVISION,)]
        job = write(stores[1], "job-a", T0)
        assert stores[0].get("job-a") == job
    finally:
        for store in stores:
            store.close()


def test_a_database_newer_than_the_code_is_refused(store_url: str) -> None:
    store = open_store(store_url)
    try:
        write(store, "job-a", T0)
        with store.engine.begin() as conn:
            conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0099'")
        expected = (f"the state database is at schema 0099, newer than this cpworker "
                    f"\\({HEAD_REVISION}\\)")
        with pytest.raises(StoreFailure, match=expected) as raised:
            store.migrate()
        assert "upgrade cpworker, or point --db at another database" in str(raised.value)
        with pytest.raises(StoreFailure, match=expected):
            open_store(store_url)
        with store.engine.connect() as conn:  # and nothing was touched
            assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).all() == [
                ("0099",)]
        assert store.get("job-a") is not None
    finally:
        store.close()


def test_the_example_database_is_at_this_codes_schema() -> None:
    """The README reads state.db.example with jobs, inspect and replay, which open a database
    read-only and never migrate it: a new migration must come with a regenerated example
    (scripts/make_example_db.py)."""
    example = Path(__file__).resolve().parents[2] / "state.db.example"
    store = open_store(f"sqlite:///{example}", read_only=True)
    try:
        reports = replay_jobs(store, None)
        assert reports and all(r.ok for r in reports)
    finally:
        store.close()
