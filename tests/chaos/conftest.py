"""Fixtures of the chaos suite: emulators on the real clock, a kit per database, a hard deadline.

Every test here is marked `slow` and `chaos` and has `@pytest.mark.chaos(deadline=SECONDS)`: past
it the test fails (SIGALRM), and at teardown every process it started is killed.
"""

from __future__ import annotations

import random
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

import pytest

from actions.travis.emulator import TravisEmulator
from engine.devtools.emulator import CodePipelineEmulator, EmulatorServer
from tests.chaos.kit import RECORDED, Chaos

DEFAULT_DEADLINE = 300.0

MakeChaos = Callable[..., Chaos]


@pytest.fixture(autouse=True)
def _hard_deadline(request: pytest.FixtureRequest) -> Iterator[None]:
    marker = request.node.get_closest_marker("chaos")
    limit = float(marker.kwargs.get("deadline", DEFAULT_DEADLINE)) if marker else DEFAULT_DEADLINE

    def _expired(signum: int, frame: FrameType | None) -> None:
        pytest.fail(f"the chaos test ran past its hard deadline of {limit:g} s", pytrace=False)

    previous = signal.signal(signal.SIGALRM, _expired)
    signal.setitimer(signal.ITIMER_REAL, limit)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def cp_emulator() -> Iterator[tuple[CodePipelineEmulator, str]]:
    """CodePipeline on the real clock; unacknowledged jobs come back after 3 s."""
    emulator = CodePipelineEmulator(continuation_delay=0.2, ack_timeout=3.0,
                                    seed=random.randrange(2**31))
    with EmulatorServer(emulator) as server:
        yield emulator, server.url


@pytest.fixture
def travis_emulator_real() -> Iterator[tuple[TravisEmulator, str]]:
    emulator = TravisEmulator(build_delay=0.5, seed=20261128)
    with EmulatorServer(emulator) as server:
        yield emulator, server.url


@pytest.fixture
def make_chaos(tmp_path: Path, cp_emulator: tuple[CodePipelineEmulator, str]
               ) -> Iterator[MakeChaos]:
    """Build the kit on a database URL (default: a SQLite file in tmp_path); kills everything
    it started at teardown."""
    made: list[Chaos] = []

    def make(db_url: str | None = None,
             travis: tuple[TravisEmulator, str] | None = None) -> Chaos:
        emulator, url = cp_emulator
        kit = Chaos(tmp_path, db_url or f"sqlite:///{tmp_path / 'state.db'}", emulator, url,
                    *(travis or (None, None)))
        made.append(kit)
        return kit

    try:
        yield make
    finally:
        for kit in made:
            kit.kill_all()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if RECORDED:
        terminalreporter.section("chaos figures")
        for line in RECORDED:
            terminalreporter.write_line(line)
