"""Scenario a: one worker on SQLite, SIGKILLed every few seconds, both services flaky.

40 executions (24 of the ledger, 16 of Travis) arrive over 20 s while the only worker is killed
once it has committed a seeded 5-40 events after each start (about 1-3 s of work on a quick
machine; the same point of the work on any) and started again at once; both emulators throttle
20 % of the calls, fail 10 % with a server error and lose the answer of 5 % after carrying the
call out.
Every execution must end as its outcome says, with one external run and one accepted result.
"""

from __future__ import annotations

import random
import time

import pytest

from actions.travis.emulator import TravisEmulator
from tests.chaos.conftest import MakeChaos
from tests.chaos.kit import KINDS, Figures, Rhythm

pytestmark = [pytest.mark.slow]

SEED = 20261201
LEDGER_EXECUTIONS = 24
TRAVIS_EXECUTIONS = 16
ARRIVAL = 0.5
"""Seconds between two executions starting."""
CHAOS_FOR = 420.0
"""The kill loop's bound: every execution must have ended by then. Generous, because a Travis
call refused with a bare 429 is tried again only after a minute (the action's THROTTLE_WAIT:
Travis's own throttle resets within one), and with 20 % of the calls throttled at random a
Travis execution of ten-odd calls meets two such waits on average and five in a bad draw:
300 s of waits alone, after executions that start over 20 s. CI runs took 245 s to 314 s."""


@pytest.mark.chaos(deadline=540)
def test_forty_executions_survive_a_worker_killed_every_few_events(
    make_chaos: MakeChaos, travis_emulator_real: tuple[TravisEmulator, str],
) -> None:
    chaos = make_chaos(travis=travis_emulator_real)
    for kind in ("ledger", "travis"):
        chaos.register(KINDS[kind])  # before the faults: registering is the operator's business
    for faults in (chaos.codepipeline.faults, chaos.travis.faults):  # type: ignore[union-attr]
        faults.configure(throttle_rate=0.2, error_rate=0.1, lost_rate=0.05, seed=SEED)
    chance = random.Random(SEED)
    plan = ["ledger"] * LEDGER_EXECUTIONS + ["travis"] * TRAVIS_EXECUTIONS
    chance.shuffle(plan)
    figures = Figures("a-sqlite-kill-loop")
    slot = Rhythm.seeded(chaos, "killed", ["ledger", "travis"], 5, 40, SEED, in_events=True)
    problems: list[str] = []
    try:
        began = time.monotonic()
        while time.monotonic() - began < CHAOS_FOR:
            due = min(len(plan), int((time.monotonic() - began) / ARRIVAL) + 1)
            while len(chaos.runs) < due:
                kind = plan[len(chaos.runs)]
                chaos.start(kind, "pass" if chance.random() < 0.7 else "fail",
                            steps=chance.randint(5, 12))
            if len(chaos.runs) == len(plan) and not chaos.unfinished():
                break
            slot.tick()
            time.sleep(0.05)
        figures.extra["chaos_seconds"] = time.monotonic() - began
        unfinished = chaos.unfinished()
        slot.paused = True
        if slot.current is not None:
            chaos.kill(slot.current)
        if unfinished:
            problems.append(f"{len(unfinished)} of {len(plan)} executions unfinished after "
                            f"{CHAOS_FOR:g} s of kills: "
                            f"{[r.where for r in unfinished][:5]}")
        else:
            problems += chaos.settle(["ledger", "travis"])
        figures.extra["faults_cp"] = chaos.codepipeline.faults.counts()
        figures.extra["faults_travis"] = chaos.travis.faults.counts()  # type: ignore[union-attr]
    finally:
        problems += chaos.verdict(figures)
        figures.emit(chaos.directory)
    assert not problems, "\n".join(problems[:30])
