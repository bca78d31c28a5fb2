"""Property 2, continued: retries end within the policy's limits, and a job's life keeps its
invariants whatever its effects answer.

The bound, from engine.decide (`_retry`, `_deadline`), for a job whose effect keeps answering
RetryLater, the clock moving each time to the due time decided (and a little past it):

- a retry counts against `max_attempts` when it is counted and either not transient or in a
  state without a deadline (cancelling, timing out): the streak ends on the outcome that
  brings `attempt` to `max_attempts`, so after at most `max_attempts - attempt` outcomes;
- in a state with a deadline (submitted, running: the run's start, or the job's creation, plus
  the time budget; acquired and the three reporting states: the job's creation plus CodePipeline's
  job timeout) no retry is ever due after the deadline, and the first outcome at or after it
  ends the streak, whatever kind of retry it is.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from engine import defaults
from engine.clock import FakeClock
from engine.decide import Policy, step
from engine.machine import FINAL, JobState, allowed_events, effect_of
from engine.outcomes import Acknowledged, Expired, Outcome, Reported, RetryLater
from engine.projection import Event, Job, fold, project
from tests.property.conftest import examples
from tests.property.strategies import (
    CANCELLED,
    DONE,
    IN_PROGRESS,
    TEXT,
    histories,
    receivable,
)

WORKER = "host:9:ffffff"

DEADLINE_FROM_RUN = frozenset({JobState.SUBMITTED, JobState.RUNNING})
DEADLINE_FROM_JOB = frozenset({JobState.ACQUIRED, JobState.HANDING_ON,
                               JobState.REPORTING_SUCCESS, JobState.REPORTING_FAILURE})
NO_DEADLINE = frozenset({JobState.CANCELLING, JobState.TIMING_OUT})
RETRYING = sorted(DEADLINE_FROM_RUN | DEADLINE_FROM_JOB | NO_DEADLINE, key=lambda s: s.value)
"""The states whose effect can answer RetryLater (engine.decide._EXHAUSTED_BY_STATE)."""

SHORTEST_WAIT = 0.5
"""The least a retry waits here (an `after` or the backoff), so that time moves: with a wait
of 0 a transient retry would come back at the same instant forever, on a fake clock."""

POLICIES = st.builds(
    Policy,
    check_interval=st.floats(1.0, 600.0),
    max_attempts=st.integers(1, 6),
    continuation_timeout=st.floats(1.0, 3600.0),
    time_budget=st.floats(10.0, 3600.0),
    progress=st.sampled_from(defaults.PROGRESS_MODES),
    progress_interval=st.floats(0.0, 600.0),
    backoff=st.tuples(st.floats(SHORTEST_WAIT, 10.0), st.floats(10.0, 300.0)).map(
        lambda bc: lambda n: min(bc[1], bc[0] * 2.0 ** min(n, 20))),
    job_timeout=st.floats(10.0, 3600.0),
)
"""Budgets of minutes, not hours, so a streak of retries ends in a few hundred steps."""

RETRIES = st.builds(RetryLater, TEXT, st.none() | st.floats(SHORTEST_WAIT, 900.0),
                    st.booleans(), transient=st.booleans())


def deadline(job: Job, policy: Policy) -> float | None:
    """Until when the state's effect is retried, restated from the module's docstring."""
    if job.state in DEADLINE_FROM_RUN:
        started = job.run_started_at if job.run_started_at is not None else job.created_at
        return started + policy.time_budget
    if job.state in DEADLINE_FROM_JOB:
        return job.created_at + policy.job_timeout
    return None


def by_count(job: Job, retry: RetryLater, policy: Policy) -> bool:
    return retry.counted and (not retry.transient or deadline(job, policy) is None)


@pytest.mark.parametrize("state", RETRYING, ids=lambda s: s.value)
@settings(max_examples=examples(15))
@given(data=st.data(), policy=POLICIES)
def test_a_streak_of_retries_ends_within_the_policys_limits(
    state: JobState, data: st.DataObject, policy: Policy,
) -> None:
    history = data.draw(histories(to=state), label="history")
    job = fold(history)
    assert job is not None
    clock = FakeClock(job.updated_at + data.draw(st.floats(0.0, 60.0), label="later"))
    # Without a deadline an uncounted retry would never end. Only Effects' "this worker does
    # not run the action" answers one to a cancel, and claims keep such jobs from it.
    retries = RETRIES.filter(lambda r: r.counted) if state in NO_DEADLINE else RETRIES
    ends_by = deadline(job, policy)
    first_attempt = job.attempt
    outcomes = 0
    limit = policy.max_attempts + (0 if ends_by is None else
                                   math.ceil(max(0.0, ends_by - clock.now()) / SHORTEST_WAIT))
    while True:
        retry = data.draw(retries, label=f"retry {outcomes + 1}")
        now = clock.now()
        counts = by_count(job, retry, policy)
        events, after = step(job, retry, now, policy, WORKER)
        outcomes += 1
        if [e.type for e in events] != ["attempt_failed"]:
            # Ended: by the attempts, or by the deadline; never before either.
            spent = counts and (job.attempt + 1) >= policy.max_attempts
            assert spent or (ends_by is not None and now >= ends_by), (events, job.attempt)
            break
        assert not (ends_by is not None and now >= ends_by), "retried past the deadline"
        if counts:
            assert after.attempt < policy.max_attempts
        assert after.next_due_at is not None
        if ends_by is not None:
            assert after.next_due_at <= max(now, ends_by)
        assert outcomes <= limit, f"still retrying after {outcomes} outcomes"
        history += [Event(job.job_id, job.last_seq + 1, "attempt_failed", now, events[0].data)]
        job = after
        clock.advance(after.next_due_at - now + data.draw(st.floats(0.0, 5.0), label="late"))
    if ends_by is None:  # every retry counted: the attempts alone end it
        assert outcomes <= max(1, policy.max_attempts - first_attempt)
    assert fold(history) == job


GOING_WELL: dict[JobState, st.SearchStrategy[Outcome]] = {
    JobState.ACQUIRED: st.just(Acknowledged()),
    JobState.SUBMITTED: IN_PROGRESS,
    JobState.RUNNING: IN_PROGRESS | DONE,
    JobState.HANDING_ON: st.builds(Reported),
    JobState.REPORTING_SUCCESS: st.builds(Reported),
    JobState.REPORTING_FAILURE: st.builds(Reported),
    JobState.AWAITING_CONTINUATION: st.builds(Expired, st.booleans()),
    JobState.TIMING_OUT: CANCELLED,
    JobState.CANCELLING: CANCELLED,
}


class JobLife(RuleBasedStateMachine):
    """One job from `acquired` on: each rule is an answer of its effect (any it can give, or a
    retry), the clock moving to the due time decided. Invariants: the row is the fold of the
    log; final is final; one intent, one run, one result; retries within their limits."""

    def __init__(self) -> None:
        super().__init__()
        self.history: list[Event] = []
        self.job: Job | None = None
        self.clock = FakeClock()
        self.policy = Policy()

    @initialize(first=histories(max_size=1), policy=POLICIES)
    def acquired(self, first: list[Event], policy: Policy) -> None:
        self.history = list(first)
        self.job = fold(first)
        self.clock = FakeClock(first[0].at)
        self.policy = policy

    @property
    def row(self) -> Job:
        assert self.job is not None
        return self.job

    def _step(self, outcome: Outcome | None, late: float) -> None:
        job, now = self.row, self.clock.now()
        events, after = step(job, outcome, now, self.policy, WORKER)
        self.history += [Event(job.job_id, job.last_seq + i, e.type, now, e.data, worker=WORKER)
                         for i, e in enumerate(events, start=1)]
        if isinstance(outcome, RetryLater):
            ends_by = deadline(job, self.policy)
            kinds = [e.type for e in events]
            if kinds == ["attempt_failed"]:
                assert ends_by is None or now < ends_by
                assert not by_count(job, outcome, self.policy) or (
                    after.attempt < self.policy.max_attempts)
                assert after.next_due_at is not None
                assert ends_by is None or after.next_due_at <= max(now, ends_by)
            else:
                assert (by_count(job, outcome, self.policy) and job.attempt + 1
                        >= self.policy.max_attempts) or (ends_by is not None and now >= ends_by)
        self.job = after
        if after.next_due_at is not None:
            self.clock.advance(max(0.0, after.next_due_at - now) + late)

    @precondition(lambda self: self.job is not None and not self.row.final)
    @rule(data=st.data(), late=st.floats(0.0, 30.0))
    def effect_answers(self, data: st.DataObject, late: float) -> None:
        self._step(data.draw(receivable(self.row.state, self.clock.now())), late)

    @precondition(lambda self: self.job is not None and self.row.state in GOING_WELL)
    @rule(data=st.data(), late=st.floats(0.0, 30.0))
    def effect_goes_well(self, data: st.DataObject, late: float) -> None:
        """The answer that moves the job on: without it most lives end at the first refusal."""
        self._step(data.draw(GOING_WELL[self.row.state]), late)

    @precondition(lambda self: self.job is not None and self.row.state in RETRYING)
    @rule(retry=RETRIES, late=st.floats(0.0, 5.0))
    def effect_fails(self, retry: RetryLater, late: float) -> None:
        if self.row.state in NO_DEADLINE and not retry.counted:
            retry = RetryLater(retry.reason, retry.after, True, retry.failure_type,
                               retry.transient)
        self._step(retry, late)

    @precondition(lambda self: self.job is not None and self.row.state is JobState.LOST)
    @rule(nonce=TEXT)
    def codepipeline_hands_it_back(self, nonce: str) -> None:
        """A lost job dispatched to this worker again (engine.intake: redispatched)."""
        job, now = self.row, self.clock.now()
        event = Event(job.job_id, job.last_seq + 1, "redispatched", now, {"nonce": nonce})
        self.history.append(event)
        self.job = project(job, event)

    @precondition(lambda self: self.job is not None)
    @rule(seconds=st.floats(0.0, 86400.0))
    def time_passes(self, seconds: float) -> None:
        """Nothing happens to a final job however long it waits; a working one is only late."""
        before = self.row
        self.clock.advance(seconds)
        assert self.row == before

    @invariant()
    def the_row_is_the_fold_of_the_log(self) -> None:
        if self.job is not None:
            assert fold(self.history) == self.job

    @invariant()
    def final_is_final(self) -> None:
        if self.job is not None and self.row.final:
            assert self.row.next_due_at is None and effect_of(self.row.state) is None
            # Only CodePipeline handing a lost job back to this worker can move it again.
            assert set(allowed_events(self.row.state)) <= {"redispatched"}
        elif self.job is not None:
            assert self.row.next_due_at is not None

    @invariant()
    def one_intent_one_run_one_result(self) -> None:
        kinds = [e.type for e in self.history]
        for once in ("submit_intended", "run_started", "result_reported"):
            assert kinds.count(once) <= 1, kinds
        if self.job is not None and self.row.state in FINAL - {JobState.LOST}:
            assert kinds[-1] not in ("attempt_failed", "checked")


JobLife.TestCase.settings = settings(max_examples=examples(25), stateful_step_count=40)
test_a_jobs_life = JobLife.TestCase
