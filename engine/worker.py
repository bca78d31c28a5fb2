"""The worker: the poller, the scheduler and the effect pool wired together, and its lifecycle.

Start-up reads the projection, not the histories: due rows are claimed and resumed where their
last event left them. SIGTERM/SIGINT stop the poller, let running effects finish within a grace
period, commit what they returned, and return 0.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

from engine import defaults
from engine.action import Action
from engine.clock import Clock, SystemClock
from engine.codepipeline import CodePipeline
from engine.decide import Policy, tenacity_backoff
from engine.effects import Effects
from engine.intake import Intake
from engine.poller import Poller
from engine.projection import Event, Job
from engine.scheduler import IDLE_WAIT, Scheduler
from engine.secrets import SecretVault
from engine.store import EventStore
from engine.store.sql import worker_id

log = logging.getLogger("cpworker")


@dataclass(frozen=True)
class Settings:
    max_in_flight: int = defaults.MAX_IN_FLIGHT
    effect_threads: int = defaults.EFFECT_THREADS
    claim_depth: int = defaults.CLAIM_DEPTH
    poll_interval: float = defaults.POLL_INTERVAL
    poll_interval_min: float = defaults.POLL_INTERVAL_MIN
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
    progress_interval: float = defaults.PROGRESS_INTERVAL
    query: Mapping[str, Mapping[str, str]] = field(default_factory=dict)


class Worker:
    def __init__(
        self,
        store: EventStore,
        codepipeline: CodePipeline,
        actions: Mapping[str, Action],
        settings: Settings | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.store = store
        self.settings = settings or Settings()
        self.clock = clock or SystemClock()
        self.actions = dict(actions)
        self.owner = worker_id()
        self.stop_event = threading.Event()
        self.vault = SecretVault(self.settings.secret_cache, self.settings.secret_max_age)
        backoff = tenacity_backoff(self.settings.backoff_initial, self.settings.backoff_max)
        self._policies = {
            name: Policy(
                check_interval=action.check_interval or self.settings.check_interval,
                max_attempts=self.settings.max_attempts,
                continuation_timeout=self.settings.continuation_timeout,
                time_budget=action.time_budget or self.settings.time_budget,
                report_progress=self.settings.report_progress,
                progress_interval=self.settings.progress_interval,
                backoff=backoff,
            )
            for name, action in self.actions.items()
        }
        self._default_policy = Policy(
            check_interval=self.settings.check_interval, max_attempts=self.settings.max_attempts,
            continuation_timeout=self.settings.continuation_timeout,
            time_budget=self.settings.time_budget, backoff=backoff,
        )
        self.effects = Effects(codepipeline, self.actions, self.vault, self.clock, self.owner,
                               self.clock.now())
        self.scheduler = Scheduler(
            store, self.effects, self.clock, self.policy_for, self.owner,
            pool_size=self.settings.effect_threads, lease_for=self.settings.lease,
            claim_depth=self.settings.claim_depth,
            on_event=self._log_events,
        )
        self.intake = Intake(store, self.vault, self.clock, self.owner)
        self.poller = Poller(
            codepipeline, self.actions, self.intake, self.clock,
            capacity=self.free_capacity, on_jobs=self.scheduler.wake.set,
            min_interval=self.settings.poll_interval_min,
            max_interval=self.settings.poll_interval, query=self.settings.query,
        )
        self._poll_lock = threading.Lock()

    def policy_for(self, action: str) -> Policy:
        return self._policies.get(action, self._default_policy)

    def free_capacity(self) -> int:
        return max(0, self.settings.max_in_flight - self.store.count_active())

    def stop(self) -> None:
        """Ask the loops to stop (safe from a signal handler)."""
        self.stop_event.set()
        self.scheduler.wake.set()

    def poll_now(self) -> int:
        with self._poll_lock:
            return self.poller.poll_once().found

    def run(self, until_idle: bool = False) -> int:
        """Run until stopped (or, with until_idle, until nothing is owed); returns an exit code."""
        released = self.store.release_dead_leases()
        if released:
            log.info("took over %d job(s) leased by a worker that is gone", released)
        active = self.store.count_active()
        log.info("worker %s starting: %d unfinished job(s) to resume, actions: %s", self.owner,
                 active, ", ".join(f"{n} ({a.definition().type_id})"
                                   for n, a in self.actions.items()))
        poller = threading.Thread(target=self._poll_loop, name="poller", daemon=True)
        poller.start()
        try:
            while not self.stop_event.is_set():
                self.scheduler.run_round()
                if until_idle and self._idle():
                    log.info("nothing in flight and nothing to poll: exiting (--until-idle)")
                    break
                self.scheduler.wait(IDLE_WAIT if not until_idle else 1.0)
        finally:
            self.stop_event.set()
            poller.join(timeout=self.settings.shutdown_grace)
            self.scheduler.drain(self.settings.shutdown_grace)
            self.scheduler.close()
            for action in self.actions.values():
                action.close()
            log.info("worker %s stopped; %d unfinished job(s) will resume at the next start",
                     self.owner, self.store.count_active())
        return 0

    def _poll_loop(self) -> None:
        while not self.stop_event.is_set():
            if self.free_capacity() <= 0:
                self.clock.wait(self.stop_event, self.poller.min_interval)
                continue
            try:
                with self._poll_lock:
                    last = self.poller.poll_once()
            except Exception:
                log.exception("poll round failed")
                continue
            self.clock.wait(self.stop_event, self.poller.next_interval(last))

    def _idle(self) -> bool:
        if self.scheduler.in_flight or self.store.count_active():
            return False
        # Nothing owed: confirm with a fresh poll that CodePipeline has nothing for us either.
        if self.poll_now():
            return False
        return self.scheduler.in_flight == 0 and self.store.count_active() == 0

    def _log_events(self, job: Job, events: list[Event]) -> None:
        reasons = [str(e.data.get("reason") or e.data.get("error") or "") for e in events]
        reason = next((r for r in reversed(reasons) if r), "")
        log.info("job %s: %s -> %s%s", job.job_id, ", ".join(e.type for e in events),
                 job.state.value, f" ({reason})" if reason else "",
                 extra={"job_id": job.job_id, "events": [e.type for e in events],
                        "state": job.state.value})
