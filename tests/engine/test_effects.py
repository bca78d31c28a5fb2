"""Effects: a Call is executed exactly as engine.decide.plan gave it, and what effects did (the
submissions this process called) is reported back as a fact."""

from __future__ import annotations

from typing import Any

from engine.action import Action, JobContext
from engine.clock import FakeClock
from engine.decide import Call, Report
from engine.effects import Effects
from engine.machine import Effect, JobState
from engine.outcomes import ActionOutcome, Deferred, InProgress, Reported, RetryLater, RunDetails
from engine.projection import Job
from engine.secrets import REDACTED, SecretVault
from tests.actions.ledger import LedgerAction

NOW = 1_800_000_000.0


class RemoteLedger(LedgerAction):
    """A ledger whose submissions travel over a network: they may land up to 30 s late."""

    submit_grace = 30.0

    def __init__(self) -> None:
        self.seen: list[JobContext] = []

    def submit(self, job: JobContext) -> ActionOutcome:
        self.seen.append(job)
        if job.configuration.get("Outcome") == "raise":
            raise RuntimeError(f"broke with {job.configuration['Token']}")
        return InProgress()


def effects(action: RemoteLedger, clock: FakeClock, outcome: str = "pass") -> Effects:
    vault = SecretVault()
    vault.put("j", {"Token": "ledger-secret-x", "Outcome": outcome}, {"Token"}, None,
              clock.now())
    codepipeline: Any = None  # never called: the secrets are in the vault
    return Effects(codepipeline, {"ledger": action}, vault, clock)


def submitted(intent_by: str, armings: int = 1, attempt: int = 0) -> Job:
    return Job(job_id="j", state=JobState.SUBMITTED, action="ledger",
               action_type="Test/Custom/Ledger/1", execution_id="x", created_at=NOW - 60,
               updated_at=NOW - 1, last_seq=3, next_due_at=NOW - 1, intent_by=intent_by,
               armed_until=NOW + 9, armings=armings, attempt=attempt)


SUBMIT = Call(Effect.SUBMIT)


def test_the_call_is_made_as_planned() -> None:
    clock = FakeClock(NOW)
    action = RemoteLedger()
    runner = effects(action, clock)
    assert isinstance(runner.run(submitted("worker-b"), SUBMIT), InProgress)
    runner.run(submitted("worker-a", armings=2), Call(Effect.SUBMIT, resumed=True,
                                                      deadline=NOW + 39))
    assert [(c.resumed, c.deadline) for c in action.seen] == [(False, None), (True, NOW + 39)]


def test_a_submission_called_is_remembered_at_its_seq() -> None:
    """The fact plan() needs when an outcome's commit was lost: the job comes back at the same
    seq to this worker."""
    clock = FakeClock(NOW)
    runner = effects(RemoteLedger(), clock)
    job = submitted("worker-b")
    assert not runner.called(job)
    runner.run(job, SUBMIT)
    assert runner.called(job)
    assert not runner.called(Job(**{**job.__dict__, "last_seq": 9}))


def test_an_action_that_raises_is_not_transient_and_leaks_nothing() -> None:
    clock = FakeClock(NOW)
    action = RemoteLedger()
    outcome = effects(action, clock, outcome="raise").run(submitted("worker-b"), SUBMIT)
    assert isinstance(outcome, RetryLater) and not outcome.transient
    assert "ledger-secret-x" not in outcome.reason and "RuntimeError" in outcome.reason


class FindingLedger(RemoteLedger):
    def __init__(self, found: ActionOutcome | None) -> None:
        super().__init__()
        self.found = found
        self.looked: list[JobContext] = []

    def find(self, job: JobContext) -> ActionOutcome | None:
        self.looked.append(job)
        return self.found


def test_a_waiting_submission_ends_its_wait_when_the_earlier_run_is_found() -> None:
    clock = FakeClock(NOW)
    waiting = Deferred("worker-a may have a call in flight", until=NOW + 30)
    found = InProgress(RunDetails("run-1", "running ledger-secret-x"), {"run_id": "run-1"})
    action = FindingLedger(found)
    runner = effects(action, clock)
    assert runner.can_find("ledger")
    outcome = runner.run(submitted("worker-a", armings=1), Call(Effect.SUBMIT, resumed=True,
                                                                look=waiting))
    assert isinstance(outcome, InProgress) and outcome.data == {"run_id": "run-1"}
    assert outcome.details is not None and "ledger-secret-x" not in str(outcome.details.summary)
    assert action.seen == []  # submit() was never called
    assert [c.resumed for c in action.looked] == [True]


def test_a_waiting_submission_that_finds_nothing_keeps_waiting() -> None:
    clock = FakeClock(NOW)
    waiting = Deferred("worker-a may have a call in flight", until=NOW + 30)
    for found in (None, RetryLater("pending: cannot tell yet")):
        action = FindingLedger(found)
        look = Call(Effect.SUBMIT, resumed=True, look=waiting)
        assert effects(action, clock).run(submitted("worker-a"), look) is waiting
        assert action.seen == []


class BlindAction(RemoteLedger):
    find = Action.find  # an action that cannot look for earlier work


def test_an_action_without_find_is_not_asked() -> None:
    assert not effects(BlindAction(), FakeClock(NOW)).can_find("ledger")
    assert effects(RemoteLedger(), FakeClock(NOW)).can_find("ledger")  # the ledger can


class RecordingCodePipeline:
    """Takes every report and remembers its arguments."""

    def __init__(self) -> None:
        self.calls: list[tuple[object, ...]] = []

    def report_failure(self, *args: object) -> Reported:
        self.calls.append(args)
        return Reported()


def test_a_report_is_sent_as_planned_its_message_scrubbed() -> None:
    clock = FakeClock(NOW)
    vault = SecretVault()
    vault.put("j", {"Token": "ledger-secret-x"}, {"Token"}, None, clock.now())
    cp = RecordingCodePipeline()
    fake: Any = cp
    runner = Effects(fake, {"ledger": RemoteLedger()}, vault, clock)
    report = Report(failure_type="ConfigurationError", message="bad ledger-secret-x",
                    external_id=None)
    failing = Job(**{**submitted("worker-b").__dict__, "state": JobState.REPORTING_FAILURE})
    outcome = runner.run(failing, Call(Effect.REPORT_FAILURE, maybe_landed=True, report=report))
    assert isinstance(outcome, Reported)
    assert cp.calls == [("j", "ConfigurationError", f"bad {REDACTED}", None, True)]
