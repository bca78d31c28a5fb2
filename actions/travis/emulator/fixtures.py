"""A pytest fixture for tests of code that talks to Travis CI:
`pytest_plugins = ["actions.travis.emulator.fixtures"]`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from actions.travis.emulator.emulator import TravisEmulator
from engine.devtools.emulator import EmulatorServer


@pytest.fixture
def travis_emulator() -> Iterator[tuple[TravisEmulator, EmulatorServer]]:
    """The Travis CI emulator on a free loopback port, on the real clock."""
    emulator = TravisEmulator(build_delay=0.2)
    with EmulatorServer(emulator) as server:
        yield emulator, server
