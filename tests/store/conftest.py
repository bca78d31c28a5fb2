"""Every store test runs once per backend: a real SQLite file and a real PostgreSQL database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.store import EventStore, open_store

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL to an empty database of each backend in turn (PostgreSQL: see tests/pg.py)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def store(store_url: str) -> Iterator[EventStore]:
    """A migrated store, opened the way the worker opens it."""
    opened = open_store(store_url)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[EventStore]:
    """A migrated store on a SQLite file, for what only SQLite does (the caller's clock)."""
    opened = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def pg_store(postgres_url: str) -> Iterator[EventStore]:
    """A migrated store on a PostgreSQL database, for what only PostgreSQL does."""
    opened = open_store(postgres_url)
    try:
        yield opened
    finally:
        opened.close()
