"""Scenario f: one poll batch holding jobs that break intake; the others finish.

Twelve executions are queued before the worker starts, so its first poll takes them in one
batch; two of them carry job data CodePipeline would never send (the emulator's tamper): a number
as the secret Token, an object as the Number property Steps. Those two must fail alone, with
ConfigurationError; the ten others must end as their outcome says, each handed out only once
(a batch dropped whole would come back after the acknowledgement timeout).
"""

from __future__ import annotations

import pytest

from tests.chaos.conftest import MakeChaos
from tests.chaos.kit import CONFIGURATION_ERROR, Chaos, Figures, Proc, Timeout, wait_for

pytestmark = [pytest.mark.slow]


def _alive(chaos: Chaos, proc: Proc) -> None:
    if not proc.alive:
        chaos.note_exit(proc)
        raise AssertionError(f"the worker ended: {chaos.exits[-1]}")


@pytest.mark.chaos(deadline=120)
def test_jobs_that_break_intake_fail_alone(make_chaos: MakeChaos) -> None:
    chaos = make_chaos()
    figures = Figures("f-bad-jobs-in-a-batch")
    problems: list[str] = []
    try:
        good = [chaos.start("ledger", "fail" if n % 4 == 3 else "pass", steps=3)
                for n in range(10)]
        bad = []
        for name, value in (("Token", 12345), ("Steps", {"n": 2})):
            run = chaos.start("ledger", "pass", steps=3, expect=CONFIGURATION_ERROR)
            chaos.codepipeline.tamper(run.pipeline_execution_id, {name: value})
            bad.append(run)
        proc = chaos.spawn("steady", ["ledger"])
        try:
            figures.extra["good_ended_seconds"] = wait_for(
                "the ten good executions to end",
                lambda: not [r for r in chaos.unfinished() if r in good], 60,
                tick=lambda: _alive(chaos, proc), every=0.2)
            wait_for("the two bad executions to end", lambda: not chaos.unfinished(), 30,
                     tick=lambda: _alive(chaos, proc), every=0.2)
            wait_for("every job to be final", chaos.all_final, 30,
                     tick=lambda: _alive(chaos, proc), every=0.2)
        except Timeout as error:
            problems.append(str(error))
        redispatched = [j["id"] for j in chaos.codepipeline.jobs() if j["dispatchCount"] > 1]
        figures.extra["redispatched"] = len(redispatched)
        if redispatched:
            problems.append(f"{len(redispatched)} job(s) were handed out again after the "
                            "acknowledgement timeout: their batch was not recorded")
        code = chaos.stop(proc)
        if code != 0:
            problems.append(f"the worker exited {code} when stopped: {proc.worker.stderr[-1500:]}")
    finally:
        problems += chaos.verdict(figures)
        figures.emit(chaos.directory)
    assert not problems, "\n".join(problems[:30])
