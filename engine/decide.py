"""The machine's decisions: given a job's row and the outcome of its last effect, what happens next.

Pure: no I/O, no clock reads (time is passed in), no randomness beyond the injected backoff. Two
questions, both answered from the job's row, its recorded times and facts passed in:

- `plan`: a job is due; what exactly is called for it (engine.effects executes the `Call` as
  given: whether a report may have landed already, whether the action's call resumes earlier
  work, by when a submission must land, whether to look for another worker's submission and
  wait), or what follows without a call (`NoCall`: a wait, an action this worker lacks, a step
  with no I/O);
- `decide`/`advance`: the events that follow the outcome, recorded through engine.record.

The scheduler executes what these return; tests call them with outcomes and facts they make up.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from tenacity import RetryCallState, Retrying, wait_exponential, wait_random

from engine import defaults, limits
from engine.degrade import smaller_report
from engine.jobdata import encode_token
from engine.machine import Effect, JobState, effect_of
from engine.outcomes import (
    JSON,
    Acknowledged,
    Cancelled,
    Deferred,
    Done,
    Expired,
    Failed,
    FailureType,
    InProgress,
    Outcome,
    Refused,
    Rejected,
    Reported,
    RetryLater,
    RunDetails,
)
from engine.projection import Job, NewEvent
from engine.record import Recorded, record


def tenacity_backoff(initial: float = defaults.BACKOFF_INITIAL,
                     maximum: float = defaults.BACKOFF_MAX) -> Callable[[int], float]:
    """Seconds to wait before attempt `n + 1`, from tenacity's exponential backoff with jitter."""
    wait = wait_exponential(multiplier=initial, max=maximum) + wait_random(0, initial)
    retrying = Retrying()

    def backoff(attempt: int) -> float:
        state = RetryCallState(retry_object=retrying, fn=None, args=(), kwargs={})
        state.attempt_number = max(1, attempt)
        return float(min(wait(state), maximum))

    return backoff


@dataclass(frozen=True)
class Policy:
    """How patient the machine is. Defaults live in engine.defaults; the CLI can change each."""

    check_interval: float = defaults.CHECK_INTERVAL
    max_attempts: int = defaults.MAX_ATTEMPTS
    continuation_timeout: float = defaults.CONTINUATION_TIMEOUT
    time_budget: float = defaults.TIME_BUDGET
    report_progress: bool = True
    progress: str = defaults.PROGRESS
    """When a job hands on besides the progress interval (PROGRESS_MODES): "link", once, when
    the external run's id, and so the console's link to it, is first known or changes;
    "every-change", also whenever the run's summary changes. Each hand-on costs a continuation
    job: a poll's share, an AcknowledgeJob and a PutJobSuccessResult."""
    progress_interval: float = defaults.PROGRESS_INTERVAL
    """Hand on at least this often while a run goes on: the console's summary stays fresh, and a
    stopped execution is noticed (its next report is refused) without waiting for the run's end."""
    backoff: Callable[[int], float] = field(default_factory=tenacity_backoff)
    submit_window: float = defaults.SUBMIT_WINDOW
    """A submission's call must start within this many seconds of its window opening (the
    intent, a re-arm, a retry's due time), or it does not start at all: what bounds, from the
    log alone, when a dead worker's call could have gone out."""
    submit_grace: float = defaults.SUBMIT_GRACE
    """The action's submit_grace: how long after its start a submit call may still land."""
    job_timeout: float = defaults.JOB_TIMEOUT
    """CodePipeline's timeout of a custom action's job (PROTOCOL A2: 24 h). Until it passes,
    CodePipeline may still take a result, so transient report failures are retried until then."""

    def __post_init__(self) -> None:
        if self.progress not in defaults.PROGRESS_MODES:
            raise ValueError(f"progress must be one of {', '.join(defaults.PROGRESS_MODES)}, "
                             f"not {self.progress!r}")


class NoDecision(Exception):
    """An outcome the machine has no rule for in this state: a bug in an effect, never input."""


def decide(
    job: Job, outcome: Outcome | None, now: float, policy: Policy, worker: str = ""
) -> list[NewEvent]:
    """The events that follow `outcome` for `job` (outcome None: a step with no I/O)."""
    state = job.state
    if isinstance(outcome, RetryLater):
        return _retry(job, outcome, now, policy, worker)
    if state is JobState.ACQUIRED:
        if isinstance(outcome, Acknowledged):
            return [NewEvent("acknowledged")]
        if isinstance(outcome, Refused):
            return [NewEvent("job_lost", {"reason": outcome.reason})]
    elif state is JobState.ACKNOWLEDGED and outcome is None:
        if job.problem:
            return [_failed(Failed(FailureType.CONFIGURATION_ERROR, job.problem))]
        if job.continues or job.continuation_token:
            return [NewEvent("continuation_resumed")]
        return [NewEvent("submit_intended", {
            "worker": worker, "armed_until": now + policy.submit_window})]
    elif state is JobState.SUBMITTED:
        if isinstance(outcome, Deferred):
            return [_deferred(job, outcome, now, policy, worker)]
        if isinstance(outcome, InProgress):
            started = NewEvent(
                "run_started", _progress_data(outcome, now, policy, details=outcome.details)
            )
            if _should_hand_on(job, outcome.details, policy):
                return [started, _hand_on(outcome.details)]
            return [started]
        if isinstance(outcome, Done):
            return [_succeeded(outcome)]
        if isinstance(outcome, Failed):
            return [_failed(outcome)]
    elif state is JobState.RUNNING:
        if isinstance(outcome, InProgress):
            if _out_of_time(job, now, policy):
                return [NewEvent("run_timed_out", {
                    "run": dict(outcome.data),
                    "reason": f"the action's time budget of {_duration(policy.time_budget)} "
                    "ran out",
                })]
            if _should_hand_on(job, outcome.details, policy) or _report_due(job, outcome, now,
                                                                            policy):
                return [_hand_on(outcome.details, outcome.data)]
            return [NewEvent("checked", _progress_data(outcome, now, policy,
                                                       details=_changed(job, outcome.details)))]
        if isinstance(outcome, Done):
            return [_succeeded(outcome)]
        if isinstance(outcome, Failed):
            return [_failed(outcome)]
    elif state is JobState.HANDING_ON:
        if isinstance(outcome, Reported):
            deadline = now + policy.continuation_timeout
            return [NewEvent("continuation_reported", {"due_at": deadline})]
        if isinstance(outcome, Rejected):
            return [NewEvent("job_rejected", {"reason": outcome.reason})]
        if isinstance(outcome, Failed):
            return _refused(job, outcome, now, policy, worker)
    elif state is JobState.AWAITING_CONTINUATION and isinstance(outcome, Expired):
        if not outcome.polled:
            return [NewEvent("continuation_postponed", {
                "reason": "CodePipeline could not be polled since the continuation job was due; "
                "it may be waiting there, so the execution is not given up yet",
                "due_at": now + min(policy.check_interval, policy.continuation_timeout),
                "continuation_deadline": continuation_deadline(job),
            })]
        return [NewEvent("continuation_missing", {
            "reason": "CodePipeline sent no continuation job within "
            f"{_duration(policy.continuation_timeout)}; the execution is given up",
        })]
    elif state in (JobState.REPORTING_SUCCESS, JobState.REPORTING_FAILURE):
        if isinstance(outcome, Reported):
            return [NewEvent("result_reported", {"note": outcome.note} if outcome.note else {})]
        if isinstance(outcome, Rejected):
            return [NewEvent("job_rejected", {"reason": outcome.reason})]
        if isinstance(outcome, Failed):
            return _refused(job, outcome, now, policy, worker)
    elif state in (JobState.CANCELLING, JobState.TIMING_OUT) and isinstance(outcome, Cancelled):
        return [_cancelled(job, outcome)]
    if state in _GONE_FROM and isinstance(outcome, Rejected):
        # GetJobDetails answered JobNotFoundException while the job's secrets were fetched
        # again (engine.effects): CodePipeline finished with the job long ago. Nothing can be
        # reported or cancelled without them, and asking again cannot bring the job back.
        return [NewEvent("job_rejected", {"reason": outcome.reason})]
    raise NoDecision(
        f"job {job.job_id}: no rule for outcome {type(outcome).__name__} in state {state.value!r}"
    )


def advance(job: Job, outcome: Outcome | None, now: float, policy: Policy,
            worker: str = "", took_over_from: str | None = None) -> Recorded:
    """decide(), then keep deciding through states that need no I/O: the events to append,
    numbered and stamped (engine.record), and the row they lead to. `took_over_from`: see
    engine.record.record.

    The row is what the store will hold once the events are appended, so the scheduler can
    plan the next effect without a read.
    """
    first = record(job, decide(job, outcome, now, policy, worker), now, worker,
                   took_over_from=took_over_from)
    if effect_of(first.job.state) is not Effect.DECIDE:
        return first  # the common case: one decision, no state that decides on by itself
    current = Recorded(first.events, first.job, new=False)
    pending: Outcome | None = None
    while True:
        more = record(current.job, decide(current.job, pending, now, policy, worker), now,
                      worker, took_over_from=None if current.events else took_over_from)
        current = Recorded(current.events + more.events, more.job, new=False)
        pending = None
        if effect_of(current.job.state) is not Effect.DECIDE:
            return current


def step(
    job: Job, outcome: Outcome | None, now: float, policy: Policy, worker: str = ""
) -> tuple[list[NewEvent], Job]:
    """advance(), as the decided events and the row they lead to."""
    done = advance(job, outcome, now, policy, worker)
    return [NewEvent(event.type, event.data) for event in done.events], done.job


UNKNOWN_HOLDER = "?"
"""submit_gate's `held_by` when the caller cannot tell who held the job before its claim."""


def submit_gate(job: Job, now: float, policy: Policy, worker: str,
                held_by: str | None = UNKNOWN_HOLDER) -> Deferred | None:
    """May this worker call the action's submit() for `job` now? None: yes.

    Exactly-once rests on one rule: a submission's call starts only inside a call window that
    the log records (opened by the intent, a re-arm or a retry, `armed_until`), so any call a
    worker made lands by `armed_until + submit_grace`, which every other worker can read. A
    worker that did not open the window waits until then and opens one of its own; it never
    measures from its own start, so a worker restarting every few seconds still gets there.

    `held_by` is the job's lease owner just before this worker claimed it. None means nobody
    claimed the job since its last event was committed: every call made for it has returned
    (its outcome is that event) or never started, so nothing is in flight and there is nothing
    to wait out, whoever opened the window.
    """
    if job.state is not JobState.SUBMITTED:
        return None
    if job.intent_by == worker and job.armed_until is not None and now <= job.armed_until:
        return None
    if held_by is None and job.intent_by != worker:
        return Deferred(f"no worker has held the job since its last recorded step (worker "
                        f"{job.intent_by or '?'}'s), so none of its calls can be in flight; "
                        "opening a call window to look for the run, then submit if absent")
    opened = job.armed_until if job.armed_until is not None else (
        job.updated_at + policy.submit_window)
    settled = opened + policy.submit_grace
    if job.intent_by != worker and now < settled:
        closes = (f"its call window closed {now - opened:.1f} s ago" if now >= opened
                  else f"its call window closes in {opened - now:.1f} s")
        return Deferred(
            f"worker {job.intent_by or '?'} may have a submission in flight for "
            f"{settled - now:.1f} s more ({closes}, and a call lands within the action's grace "
            f"of {policy.submit_grace:g} s); unless the run is found now, waiting before "
            "submitting", until=settled)
    if job.intent_by == worker:
        return Deferred("the call window passed before the submission could start; "
                        "opening a new one")
    return Deferred(f"anything worker {job.intent_by or '?'} sent has landed by now; "
                    "opening a call window to look for it, then submit if absent")


# --- what to call when a job is due -------------------------------------------------------------


@dataclass(frozen=True)
class WorkerFacts:
    """What the deciding worker knows beyond a job's row."""

    worker: str
    started_at: float
    """When this process started: a report whose row is older may have been sent by an
    earlier process whose outcome was never recorded."""
    actions: Mapping[str, bool]
    """The actions this worker runs, each with whether it can look for an earlier holder's
    submission (it overrides Action.find)."""


@dataclass(frozen=True)
class Report:
    """A report to CodePipeline as it is to be sent (the pending report, fixed by decide)."""

    details: Mapping[str, JSON] | None = None
    output_variables: Mapping[str, str] = field(default_factory=dict)
    token: str = ""
    """A progress report's continuation token."""
    failure_type: str = FailureType.JOB_FAILED.value
    message: str = ""
    external_id: str | None = None


@dataclass(frozen=True)
class Call:
    """One effect, with everything decided about it: engine.effects executes exactly this."""

    effect: Effect
    maybe_landed: bool = False
    """A report: an earlier call of it may have reached CodePipeline (so a refusal may mean it
    was taken)."""
    resumed: bool = False
    """The action's call may follow one that reached its system (JobContext.resumed)."""
    deadline: float | None = None
    """A submission's call must land by then (JobContext.deadline)."""
    look: Deferred | None = None
    """Only look for the run an earlier holder's submission started (Action.find); not found,
    the outcome is this wait."""
    since: float = 0.0
    """An expiry: whether CodePipeline was polled since then decides between waiting on and
    giving up."""
    report: Report | None = None


@dataclass(frozen=True)
class NoCall:
    """Nothing to call: `outcome` (None: a step with no I/O) goes straight to decide."""

    outcome: Outcome | None


_REPORT_EFFECTS = frozenset({Effect.REPORT_PROGRESS, Effect.REPORT_SUCCESS,
                             Effect.REPORT_FAILURE})


def plan(job: Job, now: float, policy: Policy, facts: WorkerFacts,
         held_by: str | None = UNKNOWN_HOLDER, called: bool = False) -> Call | NoCall | None:
    """What to do for a due `job` (None: nothing, it is final).

    `held_by`: the job's lease owner just before this worker claimed it (submit_gate).
    `called`: this process already called the action's submit for the job at its current
    `last_seq`, and the outcome was never recorded (a lost commit brought it back).
    """
    effect = effect_of(job.state)
    if effect is None:
        return None
    if effect is Effect.DECIDE:
        return NoCall(None)
    if effect is Effect.ACKNOWLEDGE:
        return Call(effect)
    if effect is Effect.EXPIRE:
        return Call(effect, since=continuation_deadline(job))
    if effect in _REPORT_EFFECTS:
        # Written before this process started, retried, or taken from a holder whose lease ran
        # out (it may have sent the report and died, or lost the database, before recording).
        maybe_landed = (job.attempt > 0 or job.updated_at < facts.started_at
                        or held_by not in (None, UNKNOWN_HOLDER, facts.worker))
        return Call(effect, maybe_landed=maybe_landed, report=_report(job, effect))
    can_find = facts.actions.get(job.action)
    if can_find is None:  # claims are filtered by action (engine.scheduler): a safety net
        return NoCall(RetryLater(f"this worker does not run the action {job.action!r}; left "
                                 "to a worker that does", transient=False, counted=False))
    # Anything but the first call of the window the intent opened may follow a call that
    # reached the external system: a retry, a re-armed window, another worker's intent.
    resumed = job.attempt > 0 or called or (
        job.state is JobState.SUBMITTED
        and (job.armings != 1 or job.intent_by != facts.worker))
    if effect is not Effect.SUBMIT:
        return Call(effect, resumed=resumed)
    waiting = submit_gate(job, now, policy, facts.worker, held_by)
    if waiting is not None:
        if waiting.until is not None and can_find:
            return Call(effect, resumed=True, look=waiting)  # look, read-only, then wait
        return NoCall(waiting)
    deadline = None if job.armed_until is None else job.armed_until + policy.submit_grace
    return Call(effect, resumed=resumed, deadline=deadline)


def _report(job: Job, effect: Effect) -> Report:
    pending = job.pending or {}
    details = pending.get("details")
    if effect is Effect.REPORT_PROGRESS:
        token = encode_token(job.job_id, job.run, job.details, job.run_started_at,
                             short=bool(pending.get("short_token")))
        return Report(details=details, token=token)
    if effect is Effect.REPORT_SUCCESS:
        return Report(details=details, output_variables=pending.get("output_variables") or {})
    # A degraded failure report says which external id to send, None included.
    external = pending.get("external_id", job.external_id)
    return Report(failure_type=str(pending.get("failure_type") or FailureType.JOB_FAILED.value),
                  message=str(pending.get("message") or job.reason or "failed"),
                  external_id=None if external is None else str(external))


# --- helpers ------------------------------------------------------------------------------------


def _deferred(job: Job, outcome: Deferred, now: float, policy: Policy, worker: str) -> NewEvent:
    if outcome.until is not None:
        return NewEvent("submit_deferred", {"reason": outcome.reason, "holder": job.intent_by,
                                            "due_at": max(now, outcome.until)})
    return NewEvent("submit_armed", {"reason": outcome.reason, "worker": worker,
                                     "armed_until": now + policy.submit_window, "due_at": now})


def _progress_data(
    outcome: InProgress, now: float, policy: Policy, details: RunDetails | None
) -> dict[str, JSON]:
    interval = policy.check_interval if outcome.check_in is None else outcome.check_in
    data: dict[str, JSON] = {"due_at": now + max(0.0, interval)}
    if outcome.data:
        data["run"] = dict(outcome.data)
    if details is not None:
        data["details"] = details.to_json()
    return data


def _should_hand_on(job: Job, details: RunDetails | None, policy: Policy) -> bool:
    """Report progress (a continuation) now, before the progress interval is up?

    By default ("link") only when the external run's id is new: the console links to the run
    from then on, and what changes later (the summary, the percentage) waits for the interval or
    the result, recorded in the history meanwhile. A short build so costs one hand-on, two jobs
    in all. "every-change" also hands on for each new summary, as cpworker did first.
    """
    if not policy.report_progress or details is None:
        return False
    if details.external_id is None and details.summary is None:
        return False
    previous = RunDetails.from_json(job.details)
    if policy.progress == "every-change":
        return previous is None or (previous.external_id, previous.summary) != (
            details.external_id, details.summary
        )
    return details.external_id is not None and (
        previous is None or previous.external_id != details.external_id)


def _changed(job: Job, details: RunDetails | None) -> RunDetails | None:
    """A check's details when they differ from the job's: kept in the history (and the row, so
    the next report carries them), and not repeated while nothing changes."""
    if details is None or details.to_json() == dict(job.details or {}):
        return None
    return details


def _report_due(job: Job, outcome: InProgress, now: float, policy: Policy) -> bool:
    """A job older than the progress interval hands on even with nothing new to say."""
    return (policy.report_progress and outcome.details is not None
            and now - job.created_at >= policy.progress_interval)


def _hand_on(details: RunDetails | None, run: Mapping[str, JSON] | None = None) -> NewEvent:
    shown, notes = limits.fit_details(details.to_json() if details else None)
    data: dict[str, JSON] = {"report": {"details": shown}}
    if details is not None:
        data["details"] = details.to_json()
    if run:
        data["run"] = dict(run)
    return NewEvent("progress_changed", _noted(data, notes))


def _succeeded(outcome: Done) -> NewEvent:
    """The success report, fixed here and fitted to CodePipeline's limits (engine.limits): what
    had to be cut or dropped is said in the event, so `inspect` shows it."""
    details = outcome.details.to_json() if outcome.details else None
    shown, notes = limits.fit_details(details)
    variables, dropped = limits.fit_output_variables(outcome.output_variables)
    data: dict[str, JSON] = {"report": {"details": shown, "output_variables": variables}}
    if details:
        data["details"] = details
    if outcome.data:
        data["run"] = dict(outcome.data)
    if outcome.uploads:
        data["uploads"] = [dict(u) for u in outcome.uploads]
    return NewEvent("run_succeeded", _noted(data, notes + dropped))


def _failed(outcome: Failed) -> NewEvent:
    details = outcome.details.to_json() if outcome.details else None
    message = outcome.message or "failed"
    fitted = limits.FAILURE_MESSAGE.fit(message)
    notes = [] if fitted == message else [
        f"message cut from {limits.FAILURE_MESSAGE.measure(message):,} to "
        f"{limits.FAILURE_MESSAGE.describe()}"]
    data: dict[str, JSON] = {
        "reason": outcome.message,
        "report": {
            "failure_type": outcome.failure_type.value,
            "message": fitted,
            "details": details,
        },
    }
    if details:
        data["details"] = details
    return NewEvent("run_failed", _noted(data, notes))


def _noted(data: dict[str, JSON], notes: list[str]) -> dict[str, JSON]:
    if notes:
        data["note"] = "to fit CodePipeline's limits: " + "; ".join(notes)
    return data


# --- reports CodePipeline refuses ---------------------------------------------------------------

_REPORT_KIND = {JobState.HANDING_ON: "progress", JobState.REPORTING_SUCCESS: "success",
                JobState.REPORTING_FAILURE: "failure"}

_GONE_FROM = frozenset({JobState.SUBMITTED, JobState.RUNNING, JobState.TIMING_OUT,
                        JobState.CANCELLING})
"""States whose effect needs the job's secrets, so may learn that CodePipeline forgot the job."""


def _refused(job: Job, outcome: Failed, now: float, policy: Policy,
             worker: str) -> list[NewEvent]:
    """CodePipeline refused the report as it is, for good (engine.codepipeline answers a
    permanent refusal as Failed): send less, and when nothing is left to drop, say it otherwise.

    Each step is recorded (report_degraded: what was dropped, and the refusal that made it), so
    `inspect` shows why the pipeline saw less than the action said. A success that cannot be
    said at all becomes a ConfigurationError failure naming the refusal; a progress report, a
    failure of the job after its run is cancelled; the shortest failure report, refused too, is
    retried as a failure nobody expected (bounded by the attempts, then gave_up).
    """
    kind = _REPORT_KIND[job.state]
    refusal = limits.fit_refusal(outcome.message)
    report = dict(job.pending or {})
    lesser = smaller_report(kind, report, job.external_id, refusal)
    if lesser is not None:
        smaller, dropped = lesser
        return [NewEvent("report_degraded", {
            "reason": f"CodePipeline refused the {kind} report ({refusal}); sending it again "
                      f"with {'; '.join(dropped)}",
            "refused": refusal, "dropped": dropped, "report": smaller})]
    if kind == "success":
        message = (f"The external run succeeded{_run_named(job)}, but CodePipeline refused to "
                   "take that as a success, even without output variables and execution "
                   f"details: {refusal}. Fix: see `cpworker inspect {job.job_id}`; retrying "
                   "the stage runs the action again")
        return [NewEvent("success_undeliverable", {
            "reason": message,
            "report": {"failure_type": FailureType.CONFIGURATION_ERROR.value,
                       "message": limits.FAILURE_MESSAGE.fit(message), "details": None}})]
    if kind == "progress":
        message = (f"CodePipeline refused every form of the progress report{_run_named(job)} "
                   f"({refusal}), so the job cannot hand on to a continuation")
        return [NewEvent("progress_undeliverable", {
            "reason": message,
            "report": {"failure_type": FailureType.CONFIGURATION_ERROR.value,
                       "message": limits.FAILURE_MESSAGE.fit(message), "details": None}})]
    return _retry(job, RetryLater(f"CodePipeline refused even the shortest failure report: "
                                  f"{refusal}", transient=False,
                                  failure_type=FailureType.CONFIGURATION_ERROR),
                  now, policy, worker)


def _run_named(job: Job) -> str:
    return f" ({job.external_id})" if job.external_id else ""


def _cancelled(job: Job, outcome: Cancelled) -> NewEvent:
    data: dict[str, JSON] = {"ok": outcome.ok, "message": outcome.message}
    if job.state is JobState.TIMING_OUT:
        reason = job.reason or "the action's time budget ran out"
        # A refused progress report left its failure type pending (progress_undeliverable);
        # a spent time budget left none: the run failed.
        pending = job.pending or {}
        kind = pending.get("failure_type") or FailureType.JOB_FAILED.value
        data["report"] = {
            "failure_type": kind,
            "message": limits.FAILURE_MESSAGE.fit(
                f"{reason}; the external run was "
                + ("cancelled" if outcome.ok else f"not cancelled ({outcome.message})")),
            "details": dict(job.details) if job.details else None,
        }
    return NewEvent("run_cancelled", data)


def _out_of_time(job: Job, now: float, policy: Policy) -> bool:
    started = job.run_started_at if job.run_started_at is not None else job.created_at
    return now - started >= policy.time_budget


_EXHAUSTED_BY_STATE = {
    JobState.ACQUIRED: "job_lost",
    JobState.SUBMITTED: "run_failed",
    JobState.RUNNING: "run_failed",
    JobState.HANDING_ON: "gave_up",
    JobState.REPORTING_SUCCESS: "gave_up",
    JobState.REPORTING_FAILURE: "gave_up",
    JobState.CANCELLING: "run_cancelled",
    JobState.TIMING_OUT: "run_cancelled",
}


def continuation_deadline(job: Job) -> float:
    """When the continuation job was due: what a successful poll must come after before the
    execution is given up. Kept across postponements (in the row's pending data), so a wait
    postponed because CodePipeline could not be polled ends at the first poll after the
    deadline, rather than needing a poll to start in the moment before each new check."""
    kept = (job.pending or {}).get("continuation_deadline")
    if isinstance(kept, (int, float)) and not isinstance(kept, bool):
        return float(kept)
    return job.next_due_at if job.next_due_at is not None else job.updated_at


def _expiry_failed(job: Job, outcome: RetryLater, now: float, policy: Policy) -> NewEvent:
    """The continuation timer's check failed (it does no I/O of its own, so only a bug or a
    failing lookup of the poller's health gets here): look again later, as when CodePipeline
    could not be polled, until CodePipeline's job timeout makes the wait pointless."""
    if now >= job.created_at + policy.job_timeout:
        return NewEvent("continuation_missing", {
            "reason": f"the wait for the continuation job could not be checked ({outcome.reason})"
            f" and CodePipeline's job timeout of {_duration(policy.job_timeout)} has passed; "
            "the execution is given up"})
    return NewEvent("continuation_postponed", {
        "reason": f"the wait for the continuation job could not be checked ({outcome.reason}); "
        "looking again later",
        "due_at": now + min(policy.check_interval, policy.continuation_timeout),
        "continuation_deadline": continuation_deadline(job),
    })


def _deadline(job: Job, policy: Policy) -> float | None:
    """Until when retrying the state's effect can still matter (None: bounded by attempts)."""
    if job.state in (JobState.SUBMITTED, JobState.RUNNING):
        started = job.run_started_at if job.run_started_at is not None else job.created_at
        return started + policy.time_budget
    if job.state in (JobState.ACQUIRED, JobState.HANDING_ON, JobState.REPORTING_SUCCESS,
                     JobState.REPORTING_FAILURE):
        return job.created_at + policy.job_timeout
    return None  # cancelling is best effort: a few attempts, then the report goes on


def _retry(job: Job, outcome: RetryLater, now: float, policy: Policy,
           worker: str = "") -> list[NewEvent]:
    """Another attempt later, each one in the history; past the budget, the state's way out.

    Transient failures (throttling, 5xx, lost connections) are measured in time, not attempts:
    they are retried with capped backoff for as long as the result can matter (the run's time
    budget, CodePipeline's job timeout for reports), so an outage of a quarter of an hour costs
    a late result, never a wrong one. Other failures also end after `max_attempts`.
    """
    effect = effect_of(job.state)
    if job.state is JobState.AWAITING_CONTINUATION:
        return [_expiry_failed(job, outcome, now, policy)]
    if effect is None or job.state not in _EXHAUSTED_BY_STATE:
        raise NoDecision(f"job {job.job_id}: nothing to retry in state {job.state.value!r}")
    attempt = job.attempt + 1 if outcome.counted else job.attempt
    deadline = _deadline(job, policy)
    by_count = deadline is None or not outcome.transient
    exhausted = (by_count and outcome.counted and attempt >= policy.max_attempts) or (
        deadline is not None and now >= deadline)
    if not exhausted:
        delay = outcome.after if outcome.after is not None else policy.backoff(attempt)
        due = now + max(0.0, delay)
        if deadline is not None:
            due = min(due, max(now, deadline))
        data: dict[str, JSON] = {
            "effect": effect.value,
            "attempt": attempt,
            "counted": outcome.counted,
            "error": outcome.reason,
            "due_at": due,
        }
        if job.state is JobState.SUBMITTED:
            # The call returned: nothing of it is in flight. The next one opens a new window.
            data["worker"] = worker
            data["armed_until"] = due + policy.submit_window
        return [NewEvent("attempt_failed", data)]
    if deadline is not None and now >= deadline:
        limit = (f"CodePipeline's job timeout of {_duration(policy.job_timeout)}"
                 if job.state not in (JobState.SUBMITTED, JobState.RUNNING)
                 else f"the action's time budget of {_duration(policy.time_budget)}")
        why = f"out of time ({limit} passed) to {effect.value.replace('_', ' ')}: " \
              f"{outcome.reason}"
    else:
        why = f"gave up after {attempt} attempts to {effect.value.replace('_', ' ')}: " \
              f"{outcome.reason}"
    way_out = _EXHAUSTED_BY_STATE[job.state]
    if way_out == "run_failed":
        return [_failed(Failed(outcome.failure_type, why))]
    if way_out == "run_cancelled":
        return [_cancelled(job, Cancelled(False, why))]
    return [NewEvent(way_out, {"reason": why})]


def _duration(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{int(seconds // 3600)} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{int(seconds // 60)} min"
    return f"{seconds:g} s"


# --- CodePipeline's own word that an action execution ended (events queue) ----------------------

EVENT_SKEW = 30.0
"""How much earlier than a job's first record an event may be stamped and still be about it:
the clocks of AWS and of this worker differ a little. Anything older is about an earlier
attempt of the same pipeline execution's action (a retried stage runs it again under the same
pipeline execution id) and must not stop the new one."""

STOP_LATER = "later"
"""stop_seen's answer for a submission in flight: apply the event once the run is known."""


def stop_seen(job: Job, state: str, event_at: float | None) -> NewEvent | str | None:
    """What a job does on hearing that its action execution ended in CodePipeline (ABANDONED,
    CANCELED, FAILED), an EventBridge event read from the events queue.

    A job that started nothing is abandoned; a run going on is cancelled now (instead of when
    the next report is refused, up to the progress interval later). A submission in flight is
    answered STOP_LATER: cancelling before its run is known could miss it, so the event waits
    for the run. Reports, cancels and timeouts already under way are left to finish: None, as
    for final jobs and for events older than the job (an earlier attempt's).
    """
    if job.final or (event_at is not None and event_at < job.created_at - EVENT_SKEW):
        return None
    if job.state is JobState.SUBMITTED:
        return STOP_LATER
    if job.state in (JobState.ACQUIRED, JobState.ACKNOWLEDGED, JobState.RUNNING,
                     JobState.HANDING_ON, JobState.AWAITING_CONTINUATION):
        started = job.state not in (JobState.ACQUIRED, JobState.ACKNOWLEDGED)
        return NewEvent("execution_stopped", {
            "state": state,
            "reason": f"CodePipeline says the action execution is {state}"
                      + (": cancelling the external run" if started else
                         ": nothing was started for it"),
        })
    return None
