"""The machine's decisions, fed made-up outcomes: no network, no database, no clock."""

from __future__ import annotations

from dataclasses import replace

import pytest

from engine.decide import NoDecision, Policy, decide, step, submit_gate, tenacity_backoff
from engine.machine import JobState
from engine.outcomes import (
    Acknowledged,
    Cancelled,
    Deferred,
    Done,
    Expired,
    Failed,
    FailureType,
    InProgress,
    Refused,
    Rejected,
    Reported,
    RetryLater,
    RunDetails,
)
from engine.projection import Job, NewEvent

NOW = 1_000_000.0
POLICY = Policy(check_interval=30.0, max_attempts=3, continuation_timeout=600.0,
                time_budget=3600.0, backoff=lambda attempt: 10.0 * attempt)


def job(state: JobState, **changes: object) -> Job:
    base = Job(job_id="j", state=state, action="ledger", action_type="Test/Custom/Ledger/1",
               execution_id="x", created_at=NOW - 100, updated_at=NOW - 1, last_seq=5,
               next_due_at=NOW, nonce="n1")
    return replace(base, **changes)  # type: ignore[arg-type]


def types(events: list[NewEvent]) -> list[str]:
    return [e.type for e in events]


def test_an_acknowledged_new_job_records_the_intent_to_submit_before_anything() -> None:
    events, after = step(job(JobState.ACQUIRED), Acknowledged(), NOW, POLICY, "worker-a")
    assert types(events) == ["acknowledged", "submit_intended"]
    assert after.state is JobState.SUBMITTED and after.intent_by == "worker-a"
    assert after.next_due_at == NOW


def test_an_acknowledged_continuation_resumes_running_without_submitting() -> None:
    continuation = job(JobState.ACQUIRED, continues="j0", run={"run_id": "r"})
    events, after = step(continuation, Acknowledged(), NOW, POLICY)
    assert types(events) == ["acknowledged", "continuation_resumed"]
    assert after.state is JobState.RUNNING and after.run == {"run_id": "r"}


def test_a_malformed_job_fails_with_configuration_error_after_the_ack() -> None:
    events, after = step(job(JobState.ACQUIRED, problem="Owner is missing"), Acknowledged(),
                         NOW, POLICY)
    assert types(events) == ["acknowledged", "run_failed"]
    assert after.state is JobState.REPORTING_FAILURE
    assert after.pending is not None
    assert after.pending["failure_type"] == "ConfigurationError"
    assert after.pending["message"] == "Owner is missing"


def test_a_refused_ack_loses_the_job_with_its_reason() -> None:
    events, after = step(job(JobState.ACQUIRED), Refused("nonce taken"), NOW, POLICY)
    assert types(events) == ["job_lost"] and after.state is JobState.LOST
    assert after.reason == "nonce taken" and after.next_due_at is None


def test_a_started_run_is_durable_and_then_reported_as_progress() -> None:
    outcome = InProgress(RunDetails("b-7", "created", 0), {"request": 41})
    events, after = step(job(JobState.SUBMITTED), outcome, NOW, POLICY)
    assert types(events) == ["run_started", "progress_changed"]
    assert after.state is JobState.HANDING_ON
    assert after.external_id == "b-7" and after.run == {"request": 41}
    assert after.pending == {"details": {"external_id": "b-7", "summary": "created",
                                         "percent": 0}}
    assert after.run_started_at == NOW


def test_without_progress_reports_a_started_run_is_checked_at_the_interval() -> None:
    quiet = replace(POLICY, report_progress=False)
    events, after = step(job(JobState.SUBMITTED), InProgress(RunDetails("b")), NOW, quiet)
    assert types(events) == ["run_started"]
    assert after.state is JobState.RUNNING and after.next_due_at == NOW + 30.0


def test_an_unchanged_run_is_checked_again_when_the_action_asks() -> None:
    running = job(JobState.RUNNING, details={"external_id": "b", "summary": "started"},
                  run_started_at=NOW - 10)
    events, after = step(running, InProgress(RunDetails("b", "started", 40), check_in=5.0),
                         NOW, POLICY)
    assert types(events) == ["checked"] and after.next_due_at == NOW + 5.0


def test_a_changed_summary_is_recorded_not_sent_by_default() -> None:
    running = job(JobState.RUNNING, details={"external_id": "b", "summary": "created"},
                  run_started_at=NOW - 10)
    events, after = step(running, InProgress(RunDetails("b", "started", 10)), NOW, POLICY)
    assert types(events) == ["checked"] and after.state is JobState.RUNNING
    # In the history and the row, so the next report (interval or result) shows it.
    assert events[0].data["details"] == {"external_id": "b", "summary": "started", "percent": 10}
    assert after.details == events[0].data["details"]
    again, _ = step(after, InProgress(RunDetails("b", "started", 10)), NOW + 30, POLICY)
    assert types(again) == ["checked"] and "details" not in again[0].data


def test_every_change_hands_the_job_on_at_a_new_summary() -> None:
    running = job(JobState.RUNNING, details={"external_id": "b", "summary": "created"},
                  run_started_at=NOW - 10)
    chatty = replace(POLICY, progress="every-change")
    events, after = step(running, InProgress(RunDetails("b", "started", 10)), NOW, chatty)
    assert types(events) == ["progress_changed"] and after.state is JobState.HANDING_ON


@pytest.mark.parametrize("progress", ["link", "every-change"])
def test_a_run_id_first_known_hands_the_job_on_in_either_mode(progress: str) -> None:
    pending = job(JobState.RUNNING, details={"external_id": None, "summary": "request 9 pending"},
                  run_started_at=NOW - 10)
    events, after = step(pending, InProgress(RunDetails("b-9", "created", 0)), NOW,
                         replace(POLICY, progress=progress))
    assert types(events) == ["progress_changed"] and after.state is JobState.HANDING_ON
    assert after.pending is not None
    assert after.pending["details"]["external_id"] == "b-9"


def test_a_summary_without_a_run_id_waits_by_default() -> None:
    events, after = step(job(JobState.SUBMITTED),
                         InProgress(RunDetails(None, "request 9 pending", 0)), NOW, POLICY)
    assert types(events) == ["run_started"] and after.state is JobState.RUNNING
    chatty = replace(POLICY, progress="every-change")
    events, after = step(job(JobState.SUBMITTED),
                         InProgress(RunDetails(None, "request 9 pending", 0)), NOW, chatty)
    assert types(events) == ["run_started", "progress_changed"]


def test_a_progress_mode_that_does_not_exist_is_refused() -> None:
    with pytest.raises(ValueError, match="link, every-change"):
        replace(POLICY, progress="sometimes")


def test_a_run_past_its_time_budget_is_cancelled_then_failed() -> None:
    running = job(JobState.RUNNING, run_started_at=NOW - 3600, details={"external_id": "b"})
    events, after = step(running, InProgress(RunDetails("b")), NOW, POLICY)
    assert types(events) == ["run_timed_out"] and after.state is JobState.TIMING_OUT
    events, after = step(after, Cancelled(True, "cancelled b"), NOW, POLICY)
    assert types(events) == ["run_cancelled"] and after.state is JobState.REPORTING_FAILURE
    assert after.pending is not None and after.pending["failure_type"] == "JobFailed"
    assert "1 h" in str(after.pending["message"]) and "cancelled" in str(after.pending["message"])


@pytest.mark.parametrize("state", [JobState.SUBMITTED, JobState.RUNNING])
def test_done_and_failed_lead_to_their_reports(state: JobState) -> None:
    _, after = step(job(state), Done(RunDetails("b", "passed", 100), {"BuildId": "b"}),
                         NOW, POLICY)
    assert after.state is JobState.REPORTING_SUCCESS
    assert after.pending is not None and after.pending["output_variables"] == {"BuildId": "b"}
    _, after = step(job(state), Failed(FailureType.PERMISSION_ERROR, "403"), NOW, POLICY)
    assert after.state is JobState.REPORTING_FAILURE
    assert after.pending is not None and after.pending["failure_type"] == "PermissionError"


def test_reports_end_in_the_final_states() -> None:
    assert step(job(JobState.REPORTING_SUCCESS), Reported(), NOW, POLICY)[1].state \
        is JobState.SUCCEEDED
    assert step(job(JobState.REPORTING_FAILURE), Reported(), NOW, POLICY)[1].state \
        is JobState.FAILED
    _, after = step(job(JobState.HANDING_ON), Reported(), NOW, POLICY)
    assert after.state is JobState.AWAITING_CONTINUATION and after.next_due_at == NOW + 600.0


def test_a_rejected_progress_report_cancels_the_run_and_abandons_the_job() -> None:
    _, after = step(job(JobState.HANDING_ON), Rejected("stopped"), NOW, POLICY)
    assert after.state is JobState.CANCELLING and after.reason == "stopped"
    _, after = step(after, Cancelled(True, "ok"), NOW, POLICY)
    assert after.state is JobState.ABANDONED


def test_a_rejected_final_report_abandons_the_job() -> None:
    _, after = step(job(JobState.REPORTING_SUCCESS), Rejected("timed out"), NOW, POLICY)
    assert after.state is JobState.ABANDONED and after.reason == "timed out"


def test_a_continuation_that_never_comes_is_given_up_and_the_run_cancelled() -> None:
    events, after = step(job(JobState.AWAITING_CONTINUATION), Expired(), NOW, POLICY)
    assert types(events) == ["continuation_missing"] and after.state is JobState.CANCELLING
    assert "no continuation job within 10 min" in str(after.reason)


def test_retries_are_recorded_one_by_one_then_fail_with_the_outcomes_type() -> None:
    current = job(JobState.SUBMITTED)
    delays = []
    for attempt in (1, 2):
        events, current = step(current, RetryLater("HTTP 503", transient=False), NOW, POLICY)
        assert types(events) == ["attempt_failed"] and current.attempt == attempt
        assert events[0].data["error"] == "HTTP 503"
        assert current.next_due_at is not None
        delays.append(current.next_due_at - NOW)
    assert delays == [10.0, 20.0]
    events, current = step(current, RetryLater("HTTP 503", failure_type=FailureType.JOB_FAILED,
                                               transient=False), NOW, POLICY)
    assert current.state is JobState.REPORTING_FAILURE
    assert current.pending is not None and current.pending["failure_type"] == "JobFailed"
    assert "gave up after 3 attempts to submit: HTTP 503" in str(current.pending["message"])


def test_uncounted_retries_wait_as_told_until_the_time_budget_ends() -> None:
    current = job(JobState.RUNNING, run_started_at=NOW - 100)
    for _ in range(10):
        _, current = step(current, RetryLater("limit", after=120.0, counted=False), NOW,
                               POLICY)
        assert current.state is JobState.RUNNING and current.attempt == 0
        assert current.next_due_at == NOW + 120.0
    late = replace(current, run_started_at=NOW - 3600)
    _, after = step(late, RetryLater("limit", counted=False), NOW, POLICY)
    assert after.state is JobState.REPORTING_FAILURE
    assert "out of time" in str(after.reason)


def test_transient_failures_are_retried_for_as_long_as_the_result_can_matter() -> None:
    """Throttling spends no budget of attempts: a quarter of an hour of outage is retried
    through, with capped backoff, until the state's deadline."""
    current = job(JobState.REPORTING_SUCCESS, created_at=NOW)
    now = NOW
    while now < NOW + 15 * 60:
        events, current = step(current, RetryLater("ThrottlingException"), now, POLICY)
        assert types(events) == ["attempt_failed"], (now, events)
        assert current.next_due_at is not None
        now = current.next_due_at
    assert current.attempt > POLICY.max_attempts
    events, after = step(current, Reported(), now, POLICY)
    assert after.state is JobState.SUCCEEDED


def test_a_report_is_given_up_only_when_codepipeline_can_no_longer_take_it() -> None:
    current = job(JobState.REPORTING_SUCCESS, created_at=NOW - POLICY.job_timeout + 5, attempt=9)
    events, after = step(current, RetryLater("throttled"), NOW, POLICY)
    assert types(events) == ["attempt_failed"]
    assert after.next_due_at == NOW + 5  # never planned past the deadline
    events, after = step(after, RetryLater("throttled"), NOW + 5, POLICY)
    assert types(events) == ["gave_up"] and after.state is JobState.ABANDONED
    assert "CodePipeline's job timeout of 24 h" in str(after.reason)


def test_failures_nobody_expected_still_end_after_the_attempts() -> None:
    current = job(JobState.REPORTING_SUCCESS, attempt=2)
    events, after = step(current, RetryLater("report_success raised KeyError: 'x'",
                                             transient=False), NOW, POLICY)
    assert types(events) == ["gave_up"] and after.state is JobState.ABANDONED


def test_a_continuation_is_not_given_up_while_codepipeline_cannot_be_polled() -> None:
    waiting = job(JobState.AWAITING_CONTINUATION, next_due_at=NOW)
    events, after = step(waiting, Expired(polled=False), NOW, POLICY)
    assert types(events) == ["continuation_postponed"]
    assert after.state is JobState.AWAITING_CONTINUATION and after.next_due_at == NOW + 30
    events, after = step(after, Expired(polled=True), NOW + 30, POLICY)
    assert types(events) == ["continuation_missing"] and after.state is JobState.CANCELLING


# --- the submission's call window ---------------------------------------------------------------

WINDOWED = replace(POLICY, submit_window=10.0, submit_grace=25.0)


def test_the_intent_opens_a_call_window_its_own_worker_calls_in() -> None:
    _, after = step(job(JobState.ACKNOWLEDGED), None, NOW, WINDOWED, "worker-a")
    assert after.state is JobState.SUBMITTED
    assert after.intent_by == "worker-a" and after.armed_until == NOW + 10 and after.armings == 1
    assert submit_gate(after, NOW, WINDOWED, "worker-a") is None
    assert submit_gate(after, NOW + 10, WINDOWED, "worker-a") is None
    late = submit_gate(after, NOW + 10.5, WINDOWED, "worker-a")
    assert isinstance(late, Deferred) and late.until is None  # too late to call: re-arm first
    events, rearmed = step(after, late, NOW + 10.5, WINDOWED, "worker-a")
    assert types(events) == ["submit_armed"] and rearmed.armed_until == NOW + 20.5
    assert rearmed.armings == 2 and rearmed.next_due_at == NOW + 10.5


def test_another_worker_waits_until_the_window_closed_plus_the_grace() -> None:
    _, intended = step(job(JobState.ACKNOWLEDGED), None, NOW, WINDOWED, "worker-a")
    wait = submit_gate(intended, NOW + 3, WINDOWED, "worker-b")
    assert isinstance(wait, Deferred) and wait.until == NOW + 35
    assert "worker-a" in wait.reason
    events, waiting = step(intended, wait, NOW + 3, WINDOWED, "worker-b")
    assert types(events) == ["submit_deferred"] and waiting.next_due_at == NOW + 35
    assert waiting.intent_by == "worker-a" and waiting.armed_until == NOW + 10
    arm = submit_gate(waiting, NOW + 35, WINDOWED, "worker-b")
    assert isinstance(arm, Deferred) and arm.until is None
    _, armed = step(waiting, arm, NOW + 35, WINDOWED, "worker-b")
    assert submit_gate(armed, NOW + 35, WINDOWED, "worker-b") is None


def test_a_crash_loop_does_not_push_the_wait_back() -> None:
    """Workers that live 2 s each, over and over: the wait is anchored on the log, so it ends
    when the first worker's call can have landed, not 35 s after the latest worker started."""
    _, current = step(job(JobState.ACKNOWLEDGED), None, NOW, WINDOWED, "worker-0")
    born, n = NOW + 2, 0  # worker-0 called, then died before recording anything
    called_at = None
    while called_at is None and born < NOW + 300:
        n += 1
        worker, now = f"worker-{n}", born
        while now < born + 2:  # one life: every round while the job is due
            if current.next_due_at is None or now < current.next_due_at:
                break
            gate = submit_gate(current, now, WINDOWED, worker)
            if gate is None:
                called_at = now
                break
            _, current = step(current, gate, now, WINDOWED, worker)
            now += 0.05  # the next round
        born += 2
    assert called_at is not None
    assert called_at <= NOW + 35 + 2, f"worker {n} called only at +{called_at - NOW:.1f} s"


def test_a_job_nobody_held_since_its_last_step_has_nothing_in_flight() -> None:
    """Its lease was free at the claim: no worker claimed it after the last event, so every
    call made for it returned or never started: no wait, whoever opened the window."""
    _, intended = step(job(JobState.ACKNOWLEDGED), None, NOW, WINDOWED, "worker-a")
    _, retrying = step(intended, RetryLater("HTTP 429", after=60.0), NOW + 1, WINDOWED,
                       "worker-a")
    assert retrying.next_due_at == NOW + 61 and retrying.intent_by == "worker-a"
    # worker-a died before its retry was due; worker-b claims the job at the due time.
    unknown = submit_gate(retrying, NOW + 61, WINDOWED, "worker-b")
    assert isinstance(unknown, Deferred) and unknown.until == NOW + 61 + 10 + 25
    free = submit_gate(retrying, NOW + 61, WINDOWED, "worker-b", held_by=None)
    assert isinstance(free, Deferred) and free.until is None  # open a window and go
    held = submit_gate(retrying, NOW + 61, WINDOWED, "worker-b", held_by="worker-a")
    assert isinstance(held, Deferred) and held.until == NOW + 61 + 10 + 25


def test_a_submit_that_failed_retries_in_a_window_of_its_own() -> None:
    _, intended = step(job(JobState.ACKNOWLEDGED), None, NOW, WINDOWED, "worker-a")
    _, retrying = step(intended, RetryLater("HTTP 503"), NOW + 1, WINDOWED, "worker-a")
    assert retrying.next_due_at == NOW + 11 and retrying.armed_until == NOW + 21
    assert retrying.armings == 2 and retrying.intent_by == "worker-a"
    assert submit_gate(retrying, NOW + 11, WINDOWED, "worker-a") is None


def test_an_outcome_with_no_rule_is_a_bug_not_input() -> None:
    with pytest.raises(NoDecision, match="no rule for outcome Reported in state 'running'"):
        decide(job(JobState.RUNNING), Reported(), NOW, POLICY)


def test_tenacity_backoff_grows_and_stays_bounded() -> None:
    backoff = tenacity_backoff(initial=1.0, maximum=60.0)
    samples = [backoff(n) for n in range(1, 12)]
    assert samples[0] < 3.0 and max(samples) <= 60.0
    assert samples[-1] > samples[1]


# --- reports CodePipeline refuses for good -------------------------------------------------------

EMOJI = "\U0001f600"
REFUSED = Failed(FailureType.CONFIGURATION_ERROR,
                 "PutJobSuccessResult (success report) refused: ValidationException: 1 "
                 "validation error detected")


def test_a_success_too_big_for_codepipeline_is_fitted_before_it_is_sent_and_says_so() -> None:
    done = Done(RunDetails("b-1", EMOJI * 3000, 100),
                {"Big": "x" * 200_000, "RunId": "b-1", "no spaces!": "y"})
    events, after = step(job(JobState.RUNNING), done, NOW, POLICY)
    assert types(events) == ["run_succeeded"]
    assert after.pending is not None
    assert after.pending["output_variables"] == {"RunId": "b-1"}
    assert len(after.pending["details"]["summary"]) < 1030
    note = str(events[0].data["note"])
    assert "summary cut from 6,000 to 2,048 UTF-16 code units" in note
    assert "Big" in note and "no spaces!" in note
    assert after.details is not None and after.details["summary"] == EMOJI * 3000  # as said


def test_a_refused_success_is_sent_with_less_then_delivered_as_a_failure() -> None:
    _, current = step(job(JobState.RUNNING, external_id="b-1"),
                      Done(RunDetails("b-1", EMOJI * 3000, 100), {"RunId": "b-1"}), NOW, POLICY)
    dropped = []
    for _ in range(3):
        events, current = step(current, REFUSED, NOW, POLICY)
        assert types(events) == ["report_degraded"], events
        assert current.state is JobState.REPORTING_SUCCESS and current.next_due_at == NOW
        assert "ValidationException" in str(current.reason)
        dropped.append(events[0].data["dropped"])
    # The console's texts go before the variables later actions may read.
    assert "fitted in UTF-8 bytes" in str(dropped[0])
    assert "execution details" in str(dropped[1])
    assert "output variable(s) dropped" in str(dropped[2]) and current.pending is not None
    assert current.pending["details"] is None and current.pending["output_variables"] == {}
    events, current = step(current, REFUSED, NOW, POLICY)
    assert types(events) == ["success_undeliverable"]
    assert current.state is JobState.REPORTING_FAILURE and current.pending is not None
    assert current.pending["failure_type"] == "ConfigurationError"
    message = str(current.pending["message"])
    assert message.startswith("The external run succeeded (b-1), but CodePipeline refused")
    assert "ValidationException" in message and "cpworker inspect j" in message
    _, current = step(current, Reported(), NOW, POLICY)
    assert current.state is JobState.FAILED  # delivered: never abandoned


def test_variables_the_service_cannot_take_are_dropped_first() -> None:
    _, current = step(job(JobState.RUNNING),
                      Done(RunDetails("b-1", EMOJI * 3000, 100), {"RunId": "b-1"}), NOW, POLICY)
    too_big = Failed(FailureType.CONFIGURATION_ERROR, "PutJobSuccessResult (success report) "
                     "refused: OutputVariablesSizeExceededException: Exceeded the total size")
    events, current = step(current, too_big, NOW, POLICY)
    assert events[0].data["dropped"] == ["its 1 output variable(s) dropped (15 bytes)"]
    assert current.pending is not None and current.pending["details"]["summary"]


def test_a_refused_failure_report_is_shortened_then_retried_by_attempts() -> None:
    failing = job(JobState.REPORTING_FAILURE, external_id="\u00e9" * 1400,
                  pending={"failure_type": "JobFailed", "message": "\u00e9" * 4000,
                           "details": None})
    events, current = step(failing, REFUSED, NOW, POLICY)
    assert types(events) == ["report_degraded"] and current.pending is not None
    assert len(str(current.pending["message"]).encode()) <= 5000
    assert len(str(current.pending["external_id"]).encode()) <= 1500
    events, current = step(current, REFUSED, NOW, POLICY)
    assert types(events) == ["report_degraded"] and current.pending is not None
    assert str(current.pending["message"]).isascii()
    assert current.pending["external_id"] is None
    for attempt in (1, 2):
        events, current = step(current, REFUSED, NOW, POLICY)
        assert types(events) == ["attempt_failed"] and current.attempt == attempt
    events, current = step(current, REFUSED, NOW, POLICY)
    assert types(events) == ["gave_up"] and current.state is JobState.ABANDONED
    assert "refused even the shortest failure report" in str(current.reason)


def test_a_short_failure_refused_skips_the_rungs_that_change_nothing() -> None:
    failing = job(JobState.REPORTING_FAILURE,
                  pending={"failure_type": "JobFailed", "message": "it broke", "details": None})
    events, _ = step(failing, REFUSED, NOW, POLICY)
    assert types(events) == ["attempt_failed"]


def test_a_refused_progress_report_ends_in_a_cancelled_run_and_a_delivered_failure() -> None:
    _, current = step(job(JobState.RUNNING, run_started_at=NOW - 10, external_id="b-1"),
                      InProgress(RunDetails("b-1", "building")), NOW, POLICY)
    assert current.state is JobState.HANDING_ON
    seen = []
    while current.state is JobState.HANDING_ON:
        events, current = step(current, REFUSED, NOW, POLICY)
        seen += types(events)
    assert seen == ["report_degraded", "report_degraded", "progress_undeliverable"]
    assert current.state is JobState.TIMING_OUT
    events, current = step(current, Cancelled(True, "cancelled"), NOW, POLICY)
    assert current.state is JobState.REPORTING_FAILURE and current.pending is not None
    assert current.pending["failure_type"] == "ConfigurationError"
    assert "refused every form of the progress report" in str(current.pending["message"])
    assert "the external run was cancelled" in str(current.pending["message"])


@pytest.mark.parametrize("state", [JobState.SUBMITTED, JobState.RUNNING, JobState.TIMING_OUT,
                                   JobState.CANCELLING])
def test_a_job_codepipeline_forgot_is_recorded_as_over_without_retries(state: JobState) -> None:
    gone = Rejected("GetJobDetails answered JobNotFoundException")
    events, after = step(job(state), gone, NOW, POLICY)
    assert types(events) == ["job_rejected"] and after.state is JobState.ABANDONED
    assert after.reason == gone.reason and after.next_due_at is None


def test_a_failed_expiry_check_postpones_the_wait_and_ends_with_the_job_timeout() -> None:
    """Found by tests/property: the scheduler answers an outcome with no rule by a RetryLater,
    which in awaiting_continuation had no rule either and escaped the commit."""
    waiting = Job(job_id="j", state=JobState.AWAITING_CONTINUATION, action="ledger",
                  action_type="t", execution_id="x", created_at=0.0, updated_at=1.0, last_seq=6,
                  next_due_at=900.0)
    policy = Policy()
    events, after = step(waiting, RetryLater("effect raised"), 1000.0, policy)
    assert [e.type for e in events] == ["continuation_postponed"]
    assert after.state is JobState.AWAITING_CONTINUATION and after.next_due_at == 1030.0
    assert "effect raised" in str(events[0].data["reason"])
    late = policy.job_timeout + 1
    events, after = step(waiting, RetryLater("effect raised"), late, policy)
    assert [e.type for e in events] == ["continuation_missing"]
    assert after.state is JobState.CANCELLING
