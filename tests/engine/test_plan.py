"""engine.decide.plan: every choice about a due job's call is made from its row, the clock and
the worker's facts, before engine.effects does anything."""

from __future__ import annotations

from dataclasses import replace

from engine.decide import Call, NoCall, Policy, WorkerFacts, plan, step
from engine.jobdata import decode_token
from engine.machine import Effect, JobState
from engine.outcomes import Deferred, Expired, RetryLater
from engine.projection import Job

NOW = 1_800_000_000.0
STARTED = NOW - 600
POLICY = Policy(submit_window=10.0, submit_grace=30.0)
ME = WorkerFacts("worker-b", STARTED, {"ledger": True, "blind": False})


def job(state: JobState, **changes: object) -> Job:
    base = Job(job_id="j", state=state, action="ledger", action_type="Test/Custom/Ledger/1",
               execution_id="x", created_at=NOW - 60, updated_at=NOW - 1, last_seq=3,
               next_due_at=NOW - 1, nonce="n")
    return replace(base, **changes)  # type: ignore[arg-type]


def submitted(intent_by: str = "worker-b", armings: int = 1, attempt: int = 0,
              **changes: object) -> Job:
    return job(JobState.SUBMITTED, intent_by=intent_by, armed_until=NOW + 9, armings=armings,
               attempt=attempt, **changes)


def call(planned: Call | NoCall | None) -> Call:
    assert isinstance(planned, Call), planned
    return planned


def test_the_first_call_of_the_intents_own_window_is_not_resumed_and_has_a_deadline() -> None:
    made = call(plan(submitted(), NOW, POLICY, ME, held_by=None))
    assert made == Call(Effect.SUBMIT, resumed=False, deadline=NOW + 9 + 30.0)


def test_every_other_call_resumes() -> None:
    assert call(plan(submitted(armings=2), NOW, POLICY, ME)).resumed  # a re-armed window
    assert call(plan(submitted(attempt=1), NOW, POLICY, ME)).resumed  # a retry
    # The same step called before by this process: its outcome's commit was lost.
    assert call(plan(submitted(), NOW, POLICY, ME, called=True)).resumed
    assert call(plan(job(JobState.RUNNING, attempt=1), NOW, POLICY, ME)).resumed
    assert not call(plan(job(JobState.RUNNING), NOW, POLICY, ME)).resumed


def test_another_workers_window_is_waited_out_looking_when_the_action_can() -> None:
    theirs = submitted("worker-a", updated_at=NOW - 1)
    looked = call(plan(theirs, NOW, POLICY, ME))
    assert looked.resumed and looked.deadline is None
    assert isinstance(looked.look, Deferred) and looked.look.until == NOW + 9 + 30.0
    blind = plan(replace(theirs, action="blind"), NOW, POLICY, ME)
    assert isinstance(blind, NoCall) and isinstance(blind.outcome, Deferred)
    # Their call has landed by now, or never will: open a window of this worker's own first.
    later = plan(replace(theirs, armed_until=NOW - 100), NOW, POLICY, ME)
    assert isinstance(later, NoCall) and isinstance(later.outcome, Deferred)
    assert later.outcome.until is None


def test_an_action_this_worker_does_not_run_is_left_to_one_that_does() -> None:
    for state in (JobState.SUBMITTED, JobState.RUNNING, JobState.CANCELLING):
        planned = plan(job(state, action="other"), NOW, POLICY, ME)
        assert isinstance(planned, NoCall) and isinstance(planned.outcome, RetryLater)
        assert not planned.outcome.counted and "other" in planned.outcome.reason
    # Reports need CodePipeline only.
    pending = {"failure_type": "JobFailed", "message": "no"}
    assert call(plan(job(JobState.REPORTING_FAILURE, action="other", pending=pending), NOW,
                     POLICY, ME)).effect is Effect.REPORT_FAILURE


def test_a_report_may_have_landed_if_written_before_this_process_or_retried() -> None:
    fresh = job(JobState.REPORTING_SUCCESS, updated_at=STARTED + 1)
    assert not call(plan(fresh, NOW, POLICY, ME)).maybe_landed
    assert call(plan(replace(fresh, updated_at=STARTED - 1), NOW, POLICY, ME)).maybe_landed
    assert call(plan(replace(fresh, attempt=2), NOW, POLICY, ME)).maybe_landed


def test_reports_are_fixed_before_the_call() -> None:
    progress = job(JobState.HANDING_ON, run={"build": "b-1"}, details={"external_id": "b-1"},
                   pending={"details": {"summary": "s"}}, run_started_at=5.0)
    made = call(plan(progress, NOW, POLICY, ME))
    assert made.report is not None and made.report.details == {"summary": "s"}
    assert decode_token(made.report.token) == {"v": 1, "job": "j", "run": {"build": "b-1"},
                                               "details": {"external_id": "b-1"},
                                               "started": 5.0}
    short = call(plan(replace(progress, pending={"short_token": True}), NOW, POLICY, ME))
    assert short.report is not None and decode_token(short.report.token) == {"v": 1, "job": "j"}
    failing = job(JobState.REPORTING_FAILURE, external_id="b-1", reason="broke",
                  pending={"failure_type": "ConfigurationError", "external_id": None})
    report = call(plan(failing, NOW, POLICY, ME)).report
    assert report is not None
    assert (report.failure_type, report.message, report.external_id) == (
        "ConfigurationError", "broke", None)


def test_steps_without_io_and_timers() -> None:
    assert plan(job(JobState.ACKNOWLEDGED), NOW, POLICY, ME) == NoCall(None)
    assert plan(job(JobState.SUCCEEDED), NOW, POLICY, ME) is None
    assert plan(job(JobState.ACQUIRED), NOW, POLICY, ME) == Call(Effect.ACKNOWLEDGE)
    expiry = call(plan(job(JobState.AWAITING_CONTINUATION, next_due_at=NOW - 5), NOW, POLICY,
                       ME))
    assert expiry == Call(Effect.EXPIRE, since=NOW - 5)


def test_a_postponed_continuation_wait_still_counts_polls_from_its_first_deadline() -> None:
    """Postponed because CodePipeline could not be polled, the wait ends at the first poll
    after the continuation job was due, not after each postponement's own due time (a check
    runs right at its due time, so no poll could ever start in between: a livelock)."""
    deadline = NOW - 5.0
    waiting = Job(job_id="j", state=JobState.AWAITING_CONTINUATION, action="ledger",
                  action_type="Test/Custom/Ledger/1", execution_id="x", created_at=NOW - 60,
                  updated_at=NOW - 20, last_seq=6, next_due_at=deadline)
    first = plan(waiting, NOW, POLICY, ME)
    assert isinstance(first, Call) and first.since == deadline
    events, postponed = step(waiting, Expired(polled=False), NOW, POLICY)
    assert [e.type for e in events] == ["continuation_postponed"]
    assert postponed.next_due_at is not None and postponed.next_due_at > NOW
    again = plan(postponed, postponed.next_due_at, POLICY, ME)
    assert isinstance(again, Call) and again.since == deadline
    events, twice = step(postponed, Expired(polled=False), postponed.next_due_at, POLICY)
    assert plan(twice, NOW + 100, POLICY, ME) == Call(Effect.EXPIRE, since=deadline)


def test_a_report_taken_from_a_holder_whose_lease_ran_out_may_have_landed() -> None:
    """Seen in chaos b: a worker sent the success, lost the database before recording it, and a
    peer that took the job over sent it again; CodePipeline's 'already has a result' must then
    read as this job's own report landing, not as a refusal that abandons it."""
    reporting = Job(job_id="j", state=JobState.REPORTING_SUCCESS, action="ledger",
                    action_type="Test/Custom/Ledger/1", execution_id="x", created_at=NOW - 60,
                    updated_at=NOW - 1, last_seq=5, next_due_at=NOW - 1,
                    pending={"details": None, "output_variables": {}})
    assert ME.started_at < reporting.updated_at
    own = plan(reporting, NOW, POLICY, ME, held_by=None)
    taken = plan(reporting, NOW, POLICY, ME, held_by="host:9:gone")
    assert isinstance(own, Call) and not own.maybe_landed
    assert isinstance(taken, Call) and taken.maybe_landed
