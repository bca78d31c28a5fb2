"""Property 2: `step` decides, legally, in every working state for every outcome it can be
handed; and retries end within the policy's limits.

A job is put in a state by a random legal history (tests.property.strategies), so its row is
one the store can hold, not one made up field by field.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from engine import defaults, limits
from engine.decide import NoDecision, Policy, step
from engine.machine import Effect, JobState, effect_of
from engine.outcomes import Outcome, RetryLater
from engine.projection import Event, Job, NewEvent, fold
from tests.property.conftest import examples
from tests.property.strategies import (
    ANY_OUTCOME,
    OFFSET,
    WORKING,
    histories,
    receivable,
)

WORKER = "host:9:ffffff"

POLICIES = st.builds(
    Policy,
    check_interval=st.floats(0.0, 3600.0),
    max_attempts=st.integers(1, 8),
    continuation_timeout=st.floats(1.0, 7200.0),
    time_budget=st.floats(1.0, 48 * 3600.0),
    report_progress=st.booleans(),
    progress=st.sampled_from(defaults.PROGRESS_MODES),
    progress_interval=st.floats(0.0, 3600.0),
    backoff=st.sampled_from([lambda n: 2.0 ** min(n, 8), lambda n: 0.0, lambda n: 300.0]),
    submit_window=st.floats(0.0, 60.0),
    submit_grace=st.floats(0.0, 120.0),
    job_timeout=st.floats(1.0, 48 * 3600.0),
)


def stored(job: Job, events: Sequence[NewEvent], now: float) -> list[Event]:
    """The events as the scheduler stores them (engine.scheduler._commit)."""
    return [Event(job.job_id, job.last_seq + i, e.type, now, e.data, worker=WORKER)
            for i, e in enumerate(events, start=1)]


def assert_decided(history: list[Event], job: Job, outcome: Outcome | None, now: float,
                   policy: Policy) -> None:
    """`step` on the row `history` folds to: legal events, the row they fold to, JSON data,
    a due time for a working row and none for a final one, reports within CodePipeline's
    limits."""
    events, after = step(job, outcome, now, policy, WORKER)
    assert events, "a step that records nothing would run the same effect again at once"
    written = stored(job, events, now)
    assert fold(history + written) == after  # project() raised IllegalEvent on anything illegal
    for event in written:
        json.dumps(dict(event.data), allow_nan=False)  # what a JSON column can hold
    assert effect_of(after.state) is not Effect.DECIDE
    if after.final:
        assert after.next_due_at is None
    else:
        assert after.next_due_at is not None and after.next_due_at >= now
    if any("report" in e.data for e in events):
        assert_fits(after)


def assert_fits(job: Job) -> None:
    """The report fixed in the row is one CodePipeline can take (engine.limits): a failure
    sends its message (its details stay in the log), a success or progress its details and
    output variables."""
    report = job.pending or {}
    if "failure_type" in report:
        assert limits.FAILURE_MESSAGE.fits(str(report.get("message") or "failed"))
        return
    details = report.get("details") or {}
    if details.get("summary") is not None:
        assert limits.SUMMARY.fits(str(details["summary"]))
    if details.get("external_id") is not None:
        assert limits.EXTERNAL_ID.fits(str(details["external_id"]))
    if details.get("percent") is not None:
        assert limits.PERCENT_RANGE[0] <= details["percent"] <= limits.PERCENT_RANGE[1]
    variables = report.get("output_variables") or {}
    assert limits.output_variables_size(variables) <= limits.OUTPUT_VARIABLES.maximum
    assert all(limits.valid_output_key(k) for k in variables)


@pytest.mark.parametrize("state", WORKING, ids=lambda s: s.value)
@settings(max_examples=examples(20))
@given(data=st.data(), policy=POLICIES)
def test_step_decides_legally_on_every_outcome_the_state_can_be_handed(
    state: JobState, data: st.DataObject, policy: Policy,
) -> None:
    history = data.draw(histories(to=state), label="history")
    job = fold(history)
    assert job is not None and job.state is state
    now = job.updated_at + data.draw(OFFSET, label="later")
    outcome = data.draw(receivable(state, now), label="outcome")
    assert_decided(history, job, outcome, now, policy)


NO_FALLBACK = {
    JobState.ACKNOWLEDGED: "never a stored row: step() decides on through it, so no effect runs",
}
"""States where the scheduler's RetryLater in place of an outcome with no rule is not checked
by the next test (and why)."""


@pytest.mark.parametrize("state", WORKING, ids=lambda s: s.value)
@settings(max_examples=examples(20))
@given(data=st.data(), policy=POLICIES)
def test_any_outcome_in_any_state_is_decided_or_refused_as_no_decision(
    state: JobState, data: st.DataObject, policy: Policy,
) -> None:
    """Whatever an effect returns, `step` decides or raises NoDecision (never a TypeError or a
    KeyError from deep inside); the scheduler then steps with a RetryLater in its place."""
    history = data.draw(histories(to=state), label="history")
    job = fold(history)
    assert job is not None
    now = job.updated_at + data.draw(OFFSET, label="later")
    outcome = data.draw(ANY_OUTCOME, label="outcome")
    try:
        assert_decided(history, job, outcome, now, policy)
    except NoDecision as refused:
        if state not in NO_FALLBACK:
            assert_decided(history, job, RetryLater(str(refused)), now, policy)


@pytest.mark.parametrize("state", [s for s in WORKING if s is not JobState.ACKNOWLEDGED],
                         ids=lambda s: s.value)
@settings(max_examples=examples(5), phases=(Phase.explicit, Phase.reuse, Phase.generate))
@given(data=st.data(), policy=POLICIES)
def test_the_schedulers_fallback_is_decided_in_every_state(
    state: JobState, data: st.DataObject, policy: Policy,
) -> None:
    """The RetryLater the scheduler puts in place of an outcome `decide` has no rule for (an
    exception in an effect comes back as one too) is itself decided, in every stored state.
    Not shrunk: the one failure known (xfail) would take half a minute to shrink each run."""
    history = data.draw(histories(to=state), label="history")
    job = fold(history)
    assert job is not None
    now = job.updated_at + data.draw(OFFSET, label="later")
    assert_decided(history, job, RetryLater("no rule for this outcome"), now, policy)
