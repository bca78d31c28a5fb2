"""The worker: the poller, the scheduler and the effect pool wired together, and its lifecycle.

Start-up reads the projection, not the histories: due rows are claimed and resumed where their
last event left them. SIGTERM/SIGINT stop the poller, let running effects finish within a grace
period, commit what they returned, and return 0.

Both loops are supervised: a round that fails is a unit of failure, not the end of the process.
A database that is away (locked, full, restarting) is waited for with backoff, said once when it
starts and once when it ends; an error that will not go away by waiting (a schema newer than
this code, credentials refused) stops the worker with one line and exit code 2; a loop thread
that dies stops it with exit code 3, rather than run half alive.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter as CountOf
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from engine import defaults, metrics
from engine.action import Action
from engine.artifacts import S3Settings
from engine.clock import Clock, SystemClock
from engine.codepipeline import CodePipeline
from engine.decide import Policy, stop_seen, tenacity_backoff
from engine.effects import Effects
from engine.errors import (
    ConcurrencyConflict,
    ConfigurationProblem,
    StoreFailure,
    StoreUnavailable,
)
from engine.events import ActionEvent, EventsListener
from engine.health import Health
from engine.intake import Intake
from engine.poller import Poller
from engine.projection import Event, Job, NewEvent
from engine.record import record
from engine.scheduler import IDLE_WAIT, Scheduler
from engine.secrets import SecretVault
from engine.store import Change, EventStore
from engine.store.sql import worker_id

log = logging.getLogger("cpworker")

EXIT_OK = 0
EXIT_PERMANENT = 2
"""A problem waiting cannot fix: a schema newer than this code, credentials refused."""
EXIT_THREAD_DIED = 3
"""A loop thread died: exit so a supervisor restarts the whole worker, not half of it."""
EXIT_NOT_POLLED = 4
"""--until-idle: CodePipeline could not be polled (for some action), so "nothing to do" is not
known: a cron job or a CI step must not go green."""
IDLE_CONFIRMS = 3
"""--until-idle: confirming polls that must fail in a row before the run exits EXIT_NOT_POLLED."""
EXIT_GAVE_UP = 5
"""--until-idle: this run gave up a job (a result it could not deliver), which needs a look."""

EAGER_POLLS = 3
"""Polls made EAGER_POLL_DELAY apart after a STARTED event whose job was not there yet: the
event and the job's availability are not ordered, and a missed job would wait a whole idle
interval (about 31 s)."""
EAGER_POLL_DELAY = 1.0


def _epoch(stamp: str) -> float | None:
    """An event's ISO 8601 `time` (2026-12-01T18:48:17Z) as epoch seconds; None if unreadable."""
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class Episode:
    """Trouble of one kind, from its first failure to its first success: one log line at each
    end and a capped, growing wait in between, so an outage is neither a flood nor silent."""

    def __init__(self, what: str, clock: Clock, initial: float, maximum: float) -> None:
        self.what = what
        self.clock = clock
        self.initial = initial
        self.maximum = max(initial, maximum)
        self.since: float | None = None
        self.failures = 0

    def failed(self, error: BaseException, *, traceback: bool = False) -> float:
        """Record a failure; returns how long to wait before trying again."""
        if self.since is None:
            self.since = self.clock.now()
            log.warning("%s failed (%s); retrying with backoff until it works, without "
                        "losing anything", self.what, _one_line(error), exc_info=traceback)
        self.failures += 1
        return float(min(self.maximum, self.initial * 2.0 ** min(self.failures - 1, 16)))

    def over(self) -> None:
        if self.since is None:
            return
        log.warning("%s works again after %.1f s and %d failed attempt(s)", self.what,
                    self.clock.now() - self.since, self.failures)
        self.since = None
        self.failures = 0


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())[:500] or type(error).__name__


@dataclass(frozen=True)
class Settings:
    max_in_flight: int = defaults.MAX_IN_FLIGHT
    effect_threads: int = defaults.EFFECT_THREADS
    claim_depth: int = defaults.CLAIM_DEPTH
    poll_interval: float = defaults.POLL_INTERVAL
    poll_interval_min: float = defaults.POLL_INTERVAL_MIN
    poll_batch: int = defaults.POLL_BATCH
    check_interval: float = defaults.CHECK_INTERVAL
    max_attempts: int = defaults.MAX_ATTEMPTS
    backoff_initial: float = defaults.BACKOFF_INITIAL
    backoff_max: float = defaults.BACKOFF_MAX
    continuation_timeout: float = defaults.CONTINUATION_TIMEOUT
    time_budget: float = defaults.TIME_BUDGET
    shutdown_grace: float = defaults.SHUTDOWN_GRACE
    lease: float = defaults.LEASE
    secret_cache: int = defaults.SECRET_CACHE
    secret_max_age: float = defaults.SECRET_MAX_AGE
    report_progress: bool = True
    progress: str = defaults.PROGRESS
    """"link" or "every-change": when a job hands on before its progress interval (Policy)."""
    progress_interval: float = defaults.PROGRESS_INTERVAL
    submit_window: float = defaults.SUBMIT_WINDOW
    job_timeout: float = defaults.JOB_TIMEOUT
    health_stale: float = defaults.HEALTH_STALE
    query: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    s3_endpoint_url: str | None = None
    """Where the jobs' artifacts are (None: AWS's S3 for the region, or AWS_ENDPOINT_URL_S3)."""
    events_queue: str | None = None
    """An SQS queue URL that an EventBridge rule fills with CodePipeline's action events
    (engine.events): STARTED polls at once, ABANDONED/CANCELED/FAILED cancel at once."""


class Worker:
    def __init__(
        self,
        store: EventStore,
        codepipeline: CodePipeline,
        actions: Mapping[str, Action],
        settings: Settings | None = None,
        clock: Clock | None = None,
        sqs: Any = None,
    ) -> None:
        self.store = store
        self.sqs = sqs
        """The SQS client the events queue is read with (settings.events_queue)."""
        self.settings = settings or Settings()
        self.clock = clock or SystemClock()
        self.health = Health(self.clock, self.settings.health_stale)
        """Heartbeats of the loops and the database, for /healthz and /readyz."""
        self._failed_confirms = 0
        """--until-idle: confirming polls that failed in a row."""
        self.given_up: list[str] = []
        """Jobs this run gave up (a result it could not deliver): --until-idle says so."""
        self.actions = dict(actions)
        self.owner = worker_id()
        self.stop_event = threading.Event()
        self._poll_wake = threading.Event()
        """Set to poll now: stopping, or an action event said a job was created."""
        self._eager_polls = 0
        """Quick follow-up polls left after a wake-up that found nothing yet."""
        self.events: EventsListener | None = None
        self.vault = SecretVault(self.settings.secret_cache, self.settings.secret_max_age)
        backoff = tenacity_backoff(self.settings.backoff_initial, self.settings.backoff_max)
        self._policies = {
            name: Policy(
                check_interval=action.check_interval or self.settings.check_interval,
                max_attempts=self.settings.max_attempts,
                continuation_timeout=self.settings.continuation_timeout,
                time_budget=action.time_budget or self.settings.time_budget,
                report_progress=self.settings.report_progress,
                progress=self.settings.progress,
                progress_interval=self.settings.progress_interval,
                backoff=backoff,
                submit_window=self.settings.submit_window,
                submit_grace=action.submit_grace,
                job_timeout=self.settings.job_timeout,
            )
            for name, action in self.actions.items()
        }
        self._default_policy = Policy(
            check_interval=self.settings.check_interval, max_attempts=self.settings.max_attempts,
            continuation_timeout=self.settings.continuation_timeout,
            time_budget=self.settings.time_budget, backoff=backoff,
            submit_window=self.settings.submit_window, job_timeout=self.settings.job_timeout,
        )
        region = getattr(getattr(getattr(codepipeline, "client", None), "meta", None),
                         "region_name", None)
        self.effects = Effects(codepipeline, self.actions, self.vault, self.clock,
                               polled_since=lambda name, since: self.poller.polled_since(name,
                                                                                        since),
                               s3=S3Settings(self.settings.s3_endpoint_url, region),
                               ledger=store, worker=self.owner)
        self.scheduler = Scheduler(
            store, self.effects, self.clock, self.policy_for, self.owner,
            pool_size=self.settings.effect_threads, lease_for=self.settings.lease,
            claim_depth=self.settings.claim_depth,
            on_event=self._log_events, actions=list(self.actions), started_at=self.clock.now(),
        )
        self.intake = Intake(store, self.vault, self.clock, self.owner)
        self.poller = Poller(
            codepipeline, self.actions, self.intake, self.clock,
            capacity=self.free_capacity, on_jobs=self.scheduler.wake.set,
            min_interval=self.settings.poll_interval_min,
            max_interval=self.settings.poll_interval, query=self.settings.query,
            batch=self.settings.poll_batch,
        )
        self._poll_lock = threading.Lock()
        store.on_commit = self._committed
        self.gauges = metrics.WorkerGauges(
            in_flight=lambda: self.scheduler.in_flight,
            leases_held=lambda: self.store.count_leased(self.owner),
            jobs_by_state=lambda: self.store.count_by_state(list(self.actions)))

    def policy_for(self, action: str) -> Policy:
        return self._policies.get(action, self._default_policy)

    def free_capacity(self) -> int:
        return max(0, self.settings.max_in_flight - self.store.count_active(list(self.actions)))

    def stop(self) -> None:
        """Ask the loops to stop (safe from a signal handler)."""
        self.stop_event.set()
        self._poll_wake.set()
        self.scheduler.wake.set()

    # --- the events queue: hints, never the truth -------------------------------------------------

    def _job_started(self, event: ActionEvent) -> None:
        """CodePipeline created a job of ours: poll now (the event carries no nonce, so the job
        is still taken with PollForJobs and AcknowledgeJob), and again shortly if it was not
        there yet (the event may come before the job can be polled)."""
        log.debug("action event: %s %s/%s started; polling now", event.pipeline, event.stage,
                  event.action)
        self._eager_polls = EAGER_POLLS
        self._poll_wake.set()

    def _job_ended(self, event: ActionEvent) -> bool:
        """CodePipeline says an action execution ended without us: each unfinished job of it
        here does what engine.decide.stop_seen says, committed before the message goes (True).
        False keeps the message for later: a submission in flight, or another writer first."""
        at = _epoch(event.time)
        done = True
        for job in self.store.unfinished_in_pipeline_execution(event.pipeline_execution_id):
            pipeline = job.pipeline
            if (job.action not in self.actions or pipeline.get("stage") != event.stage
                    or pipeline.get("action_name") != event.action
                    or pipeline.get("pipeline_name") != event.pipeline):
                continue
            decided = stop_seen(job, event.state, at)
            if decided is None:
                continue
            if not isinstance(decided, NewEvent):
                done = False  # STOP_LATER: its run is not known yet
                continue
            recorded = record(job, [decided], self.clock.now(), self.owner)
            try:
                self.store.commit([Change(recorded.events, recorded.job, recorded.new)])
            except ConcurrencyConflict:
                done = False  # moved meanwhile: the message comes back, and is judged again
                continue
            self._log_events(recorded.job, list(recorded.events))
            self.scheduler.wake.set()
        return done

    def _start_events(self) -> None:
        if not self.settings.events_queue or self.sqs is None:
            return
        types = [(t.category, t.provider, t.version)
                 for t in (a.definition().type_id for a in self.actions.values())]
        self.events = EventsListener(self.sqs, self.settings.events_queue, types,
                                     self._job_started, self._job_ended, clock=self.clock)
        self.events.start()
        log.info("reading CodePipeline's action events from %s", self.settings.events_queue)

    def poll_now(self) -> int:
        with self._poll_lock:
            last = self.poller.poll_once()
        self.health.polled(last.problem if last.errors else None)
        return last.found

    def run(self, until_idle: bool = False) -> int:
        """Run until stopped (or, with until_idle, until nothing is owed); returns an exit code."""
        code = self._supervised(self._start_up)
        if code is not None:
            return code
        self.health.started()
        metrics.METRICS.register(self.gauges)
        self._start_events()  # first: a job created during the first poll still wakes it
        poller = threading.Thread(target=self._poll_loop, name="poller", daemon=True)
        poller.start()
        trouble = Episode("the state database", self.clock, 0.2, 10.0)
        failing = Episode("a scheduler round", self.clock, 0.2, 10.0)
        code = EXIT_OK
        try:
            while not self.stop_event.is_set():
                if not poller.is_alive():
                    log.error("the poller thread died; stopping (exit %d) so that a supervisor "
                              "restarts the whole worker", EXIT_THREAD_DIED)
                    code = EXIT_THREAD_DIED
                    break
                try:
                    self.scheduler.run_round()
                    self.health.store_answered()
                    self.health.beat("scheduler")
                    if until_idle and self._idle():
                        code = self._idle_exit()
                        break
                    # Never longer than a third of --health-stale: a live loop must beat in time.
                    self.scheduler.wait(min(IDLE_WAIT if not until_idle else 1.0,
                                            self.settings.health_stale / 3))
                except StoreUnavailable as error:
                    self.health.store_failed(error)
                    self.health.beat("scheduler")
                    metrics.LOOP_ERRORS.labels("scheduler").inc()
                    self.clock.wait(self.stop_event, trouble.failed(error))
                    continue
                except (StoreFailure, ConfigurationProblem) as error:
                    log.error("cpworker: %s", error)
                    code = EXIT_PERMANENT
                    break
                except Exception as error:  # a bug in a round must not end every job's worker
                    self.health.beat("scheduler")
                    metrics.LOOP_ERRORS.labels("scheduler").inc()
                    self.clock.wait(self.stop_event, failing.failed(error, traceback=True))
                    continue
                trouble.over()
                failing.over()
        finally:
            self.health.stopping()
            self.stop_event.set()
            self._poll_wake.set()
            if self.events is not None:
                self.events.stop(timeout=1.0)  # stateless: a receive cut short loses nothing
            poller.join(timeout=self.settings.shutdown_grace)
            self.scheduler.drain(self.settings.shutdown_grace)
            self.scheduler.close()
            for action in self.actions.values():
                action.close()
            try:
                left = f"{self.store.count_active(list(self.actions))} unfinished job(s)"
            except Exception:
                left = "unfinished jobs"
            log.info("worker %s stopped; %s will resume at the next start", self.owner, left)
            with suppress(KeyError):  # never registered: stopped before it started
                metrics.METRICS.unregister(self.gauges)
        return code

    def _idle_exit(self) -> int:
        """--until-idle's exit code: 0 only when CodePipeline was polled and nothing was given
        up, so a cron job or a CI step never goes green with nothing done."""
        last = self.poller.last_round
        if last is not None and last.errors:
            problem = last.problem or "see the warnings above"
            log.error("cpworker: CodePipeline could not be polled (%s); exiting %d with nothing "
                      "known to be left to do", problem, EXIT_NOT_POLLED)
            return EXIT_NOT_POLLED
        if self.given_up:
            shown = ", ".join(self.given_up[:10]) + (" ..." if len(self.given_up) > 10 else "")
            log.error("cpworker: %d job(s) were given up by this run (a result CodePipeline "
                      "would not take): %s; see `cpworker inspect <job>`; exiting %d",
                      len(self.given_up), shown, EXIT_GAVE_UP)
            return EXIT_GAVE_UP
        log.info("nothing in flight and nothing to poll: exiting (--until-idle)")
        return EXIT_OK

    def _committed(self, changes: Sequence[Change], seconds: float) -> None:
        counted = CountOf(event.type for change in changes for event in change.events)
        for event_type, count in counted.items():
            metrics.child(metrics.TRANSITIONS, event_type).inc(count)
        metrics.COMMIT_JOBS.observe(len(changes))
        metrics.COMMIT_SECONDS.observe(seconds)

    def _start_up(self) -> None:
        released = self.store.release_dead_leases()
        if released:
            log.info("took over %d job(s) leased by a worker that is gone", released)
        active = self.store.count_active(list(self.actions))
        log.info("worker %s starting: %d unfinished job(s) to resume, actions: %s", self.owner,
                 active, ", ".join(f"{n} ({a.definition().type_id})"
                                   for n, a in self.actions.items()))

    def _supervised(self, step: Callable[[], None]) -> int | None:
        """Run `step` until it works (None), waiting out a database that is away; an exit code
        when it cannot work or the worker is stopped meanwhile."""
        trouble = Episode("the state database", self.clock, 0.2, 10.0)
        while not self.stop_event.is_set():
            try:
                step()
            except StoreUnavailable as error:
                self.clock.wait(self.stop_event, trouble.failed(error))
                continue
            except (StoreFailure, ConfigurationProblem) as error:
                log.error("cpworker: %s", error)
                return EXIT_PERMANENT
            trouble.over()
            return None
        return EXIT_OK

    def _poll_loop(self) -> None:
        trouble = Episode("polling for jobs", self.clock, self.poller.min_interval,
                          self.poller.max_interval)
        while not self.stop_event.is_set():
            try:
                if self.free_capacity() <= 0:
                    delay = self.poller.min_interval
                else:
                    with self._poll_lock:
                        last = self.poller.poll_once()
                    self.health.polled(last.problem if last.errors else None)
                    delay = self.poller.next_interval(last)
                    if last.found:
                        self._eager_polls = 0
                    elif self._eager_polls > 0:  # woken by an event: the job may come soon
                        self._eager_polls -= 1
                        delay = min(delay, EAGER_POLL_DELAY)
                trouble.over()
            except Exception as error:  # the poller never dies of one bad round
                metrics.LOOP_ERRORS.labels("poller").inc()
                delay = trouble.failed(error, traceback=not isinstance(error, StoreUnavailable))
            self.health.beat("poller")
            self.clock.wait(self._poll_wake, delay)
            self._poll_wake.clear()
            if self.stop_event.is_set():
                break

    def _idle(self) -> bool:
        mine = list(self.actions)
        if self.scheduler.in_flight or self.store.count_active(mine):
            return False
        # Nothing owed: confirm with a fresh poll that CodePipeline has nothing for us either.
        if self.poll_now():
            return False
        last = self.poller.last_round
        if last is not None and last.errors:
            # A confirming poll that failed proves nothing: try again (one throttled answer
            # must not fail a run), and give up only after a few failures in a row.
            self._failed_confirms += 1
            if self._failed_confirms < IDLE_CONFIRMS:
                return False
        else:
            self._failed_confirms = 0
        return self.scheduler.in_flight == 0 and self.store.count_active(mine) == 0

    def _log_events(self, job: Job, events: list[Event]) -> None:
        if any(e.type == "gave_up" for e in events):
            self.given_up.append(job.job_id)
        if job.final:
            self.vault.forget(job.job_id)  # its secrets are needed no more: drop them now
        if not log.isEnabledFor(logging.INFO):
            return  # the line's reasons, joins and extra cost more than the rest of this
        reasons = [str(e.data.get("reason") or e.data.get("error") or "") for e in events]
        reason = next((r for r in reversed(reasons) if r), "")
        log.info("job %s: %s -> %s%s", job.job_id, ", ".join(e.type for e in events),
                 job.state.value, f" ({reason})" if reason else "",
                 extra={"job_id": job.job_id, "events": [e.type for e in events],
                        "state": job.state.value})
