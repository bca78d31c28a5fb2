"""The testing kit's pytest fixtures: `pytest_plugins = ["engine.devtools.fixtures"]`.

The only module of cpworker that imports pytest; the kit itself (engine.devtools.testing)
works without it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.clock import FakeClock
from engine.devtools.emulator import CodePipelineEmulator, EmulatorServer
from engine.devtools.testing import SharedServer
from engine.store import EventStore, open_store


@pytest.fixture
def fake_clock() -> FakeClock:
    """A clock that moves only when told to."""
    return FakeClock()


@pytest.fixture
def tmp_store(tmp_path: Path) -> Iterator[EventStore]:
    """A migrated event store in a temporary SQLite file."""
    store = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    yield store
    store.close()


@pytest.fixture
def codepipeline_emulator() -> Iterator[tuple[CodePipelineEmulator, EmulatorServer]]:
    """The CodePipeline emulator on a free loopback port, on the real clock (for subprocesses)."""
    emulator = CodePipelineEmulator(continuation_delay=0.2, ack_timeout=5.0)
    with EmulatorServer(emulator) as server:
        yield emulator, server
    emulator.close()


@pytest.fixture(scope="session")
def shared_server() -> Iterator[SharedServer]:
    """One loopback server for the session; a test (or a fixture) serves its own emulator with
    `server = shared_server.plug(emulator)`, and `shared_server.unplug()` after it."""
    with SharedServer() as shared:
        yield shared
