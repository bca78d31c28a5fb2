"""A pytest fixture for tests of code that talks to GitHub Actions:
`pytest_plugins = ["actions.github.emulator.fixtures"]`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from actions.github.emulator.emulator import GitHubEmulator
from engine.devtools.emulator import EmulatorServer


@pytest.fixture
def github_emulator() -> Iterator[tuple[GitHubEmulator, EmulatorServer]]:
    """The GitHub Actions emulator on a free loopback port, on the real clock (for
    subprocesses); runs are listed 0.2 s after their dispatch."""
    emulator = GitHubEmulator(run_delay=0.2, cancel_delay=0.2)
    with EmulatorServer(emulator) as server:
        yield emulator, server
