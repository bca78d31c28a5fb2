"""Effects: a submission another worker may still have in flight is waited out, then looked for."""

from __future__ import annotations

from typing import Any, ClassVar

from engine.action import JobContext
from engine.clock import FakeClock
from engine.effects import Effects
from engine.machine import Effect, JobState
from engine.outcomes import ActionOutcome, InProgress, RetryLater
from engine.projection import Job
from engine.secrets import SecretVault
from tests.actions.ledger import LedgerAction

NOW = 1_800_000_000.0


class RemoteLedger(LedgerAction):
    """A ledger whose submissions travel over a network: they may land up to 30 s late."""

    submit_grace: ClassVar[float] = 30.0

    def __init__(self) -> None:
        self.submitted: list[bool] = []

    def submit(self, job: JobContext) -> ActionOutcome:
        self.submitted.append(job.resumed)
        return InProgress()


def effects(action: RemoteLedger, clock: FakeClock) -> Effects:
    vault = SecretVault()
    vault.put("j", {"Token": "ledger-secret-x"}, {"Token"}, None, clock.now())
    codepipeline: Any = None  # never called: the secrets are in the vault
    return Effects(codepipeline, {"ledger": action}, vault, clock, "worker-b", clock.now())


def submitted(intent_by: str) -> Job:
    return Job(job_id="j", state=JobState.SUBMITTED, action="ledger",
               action_type="Test/Custom/Ledger/1", execution_id="x", created_at=NOW - 60,
               updated_at=NOW - 50, last_seq=3, next_due_at=NOW - 50, intent_by=intent_by)


def test_another_workers_submission_is_waited_out_before_it_is_looked_for() -> None:
    clock = FakeClock(NOW)
    action = RemoteLedger()
    runner = effects(action, clock)
    waited = runner.run(submitted("worker-a"), Effect.SUBMIT)
    assert isinstance(waited, RetryLater) and not waited.counted
    assert waited.after == 30.0 and "worker-a" in waited.reason
    assert action.submitted == []
    clock.advance(30.0)
    assert isinstance(runner.run(submitted("worker-a"), Effect.SUBMIT), InProgress)
    assert action.submitted == [True]  # resumed: the action looks for the earlier one first


def test_this_workers_own_submission_is_not_delayed() -> None:
    clock = FakeClock(NOW)
    action = RemoteLedger()
    assert isinstance(effects(action, clock).run(submitted("worker-b"), Effect.SUBMIT),
                      InProgress)
    assert action.submitted == [False]
