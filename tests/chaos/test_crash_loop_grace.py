"""Scenario g: a worker killed every 2 s finishes a resumed submission whose grace is 25 s.

The late ledger's submissions land up to its submit_grace (25 s) after the call, so a worker
that looks for a dead worker's submission too early finds nothing and submits a second time.
The first worker records the intent, makes the call and is killed right after it (crash point
after:submit); from then on a worker is started and SIGKILLed 2 s after each start (its start
line) until the execution has ended. It must end, within about three minutes, with one run:
the wait for the dead worker's call is anchored on what the log recorded, not on each new
worker's own start (which, restarted every 2 s, would wait forever).
"""

from __future__ import annotations

import signal
import time

import pytest

from tests.actions.ledger import requests_of
from tests.chaos.conftest import MakeChaos
from tests.chaos.kit import Figures, Rhythm, wait_for

pytestmark = [pytest.mark.slow]

LIFE = 2.0
BOUND = 180.0


@pytest.mark.chaos(deadline=270)
def test_a_worker_killed_every_two_seconds_finishes_a_resumed_submission(
    make_chaos: MakeChaos,
) -> None:
    chaos = make_chaos()
    figures = Figures("g-crash-loop-grace-25s")
    problems: list[str] = []
    try:
        run = chaos.start("late-ledger", "pass", steps=2)
        first = chaos.spawn("first", ["late-ledger"], env={"CPWORKER_CRASH_AT": "after:submit"})
        wait_for("the first worker to die at after:submit", lambda: not first.alive, 30)
        assert first.worker.returncode == -signal.SIGKILL, (
            f"the crash point was never reached: exit {first.worker.returncode}\n"
            f"{first.worker.stderr[-2000:]}")
        first.killed = True
        chaos.kills += 1  # by the crash point
        assert len(requests_of(chaos.ledger)) == 1, "the first worker's call never reached it"
        slot = Rhythm(chaos, "looped", ["late-ledger"], lambda: LIFE)
        began = time.monotonic()
        while chaos.unfinished() and time.monotonic() - began < BOUND:
            slot.tick()
            time.sleep(0.05)
        figures.extra["to_finish_seconds"] = time.monotonic() - began
        slot.paused = True
        if slot.current is not None:
            chaos.kill(slot.current)
        if chaos.unfinished():
            waits = sum(p.worker.stderr.count("waiting") for p in chaos.procs)
            problems.append(f"the execution did not end within {BOUND:g} s of a worker killed "
                            f"every {LIFE:g} s ({chaos.kills} kills; {waits} 'waiting' lines)")
        else:
            problems += chaos.settle(["late-ledger"])
        figures.extra["requests"] = len(requests_of(chaos.ledger))
        figures.extra["execution"] = run.action_execution_id[:8]
    finally:
        problems += chaos.verdict(figures)
        figures.emit(chaos.directory)
    assert not problems, "\n".join(problems[:30])
