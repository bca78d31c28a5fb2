"""The scheduler loop: claim due machines, run their effects in a bounded pool, group-commit.

Ordering is the point: the events that lead to an effect are committed before the effect runs
(the intent to submit is durable before the submit; the run id is durable before it is
reported), and the outcomes of many effects are committed together, one transaction per round.
The loop sleeps until the earliest due time or a wake-up; it never busy-waits.

The scheduler decides nothing itself: for each claimed job engine.decide.plan says what to call
(or what follows without a call), engine.effects performs it, and engine.decide.advance turns
the outcome into events and the next row (engine.record), committed here.

A round that fails (the database is away) loses nothing: the outcomes it took off the queue are
kept and committed by the next round that can, and their jobs stay in flight, so nobody, this
worker included, claims them again meanwhile. Only jobs of this worker's actions are claimed,
and the leases of jobs in flight are renewed while they wait, so workers sharing one database
never take each other's jobs.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from engine import crashpoints, defaults, metrics
from engine.clock import Clock
from engine.decide import (
    UNKNOWN_HOLDER,
    Call,
    NoCall,
    NoDecision,
    Policy,
    WorkerFacts,
    advance,
    plan,
    submit_gate,
)
from engine.effects import Effects
from engine.errors import ConcurrencyConflict, CpworkerError
from engine.machine import Effect
from engine.outcomes import Outcome, RetryLater
from engine.pool import EffectPool
from engine.projection import Event, Job
from engine.store import Change, EventStore
from engine.store.sql import ClaimRequest

log = logging.getLogger(__name__)

IDLE_WAIT = 5.0
"""Longest sleep with nothing due: the store may gain due jobs from another process."""


@dataclass
class RoundStats:
    committed: int = 0
    started: int = 0


class Scheduler:
    def __init__(
        self,
        store: EventStore,
        effects: Effects,
        clock: Clock,
        policy_for: Callable[[str], Policy],
        owner: str,
        pool_size: int = defaults.EFFECT_THREADS,
        lease_for: float = defaults.LEASE,
        claim_depth: int = defaults.CLAIM_DEPTH,
        on_event: Callable[[Job, list[Event]], None] | None = None,
        actions: Sequence[str] | None = None,
        started_at: float | None = None,
    ) -> None:
        self.store = store
        self.effects = effects
        self.clock = clock
        self.policy_for = policy_for
        self.owner = owner
        self.pool_size = pool_size
        self.claim_depth = claim_depth
        self.lease_for = lease_for
        self.on_event = on_event
        self.actions = None if actions is None else sorted(actions)
        """The actions whose jobs this worker claims (None: every job, for tests)."""
        self.facts = WorkerFacts(
            owner, clock.now() if started_at is None else started_at,
            {name: effects.can_find(name) for name in effects.actions})
        """What plan() is told about this worker, beside each job's row."""
        self.renew_every = min(5.0, lease_for / 10)
        self._last_renewal = clock.now()
        self._unsaved: list[tuple[Job, Outcome | None]] = []
        """Outcomes taken off the queue whose commit failed: the next round commits them."""
        self.wake = threading.Event()
        self._done: queue.SimpleQueue[tuple[Job, Outcome | None]] = queue.SimpleQueue()
        self._in_flight: set[str] = set()
        self._took_over: dict[str, str] = {}
        """Claimed jobs whose lease another worker still held (it stopped renewing): said on
        the first event this worker records for them. Only the round's thread (claims and
        commits) touches it, so it needs no lock."""
        self._running = 0
        self._lock = threading.Lock()
        self._pool = EffectPool(pool_size, "effect")

    @property
    def running(self) -> int:
        """Effects started and not yet returned (their outcomes may still await a commit)."""
        with self._lock:
            return self._running

    @property
    def in_flight(self) -> int:
        with self._lock:
            return len(self._in_flight)

    def in_flight_ids(self) -> list[str]:
        """The jobs claimed and not yet committed: what resumes at the next start if the
        process ends now."""
        with self._lock:
            return sorted(self._in_flight)

    def run_round(self, claim: bool = True) -> RoundStats:
        """Commit finished effects and claim the next due machines in one transaction, then
        start their effects. Returns what it did; a store error propagates (the worker retries
        the round) with every outcome kept for the next one."""
        stats = RoundStats()
        outcomes, self._unsaved = self._unsaved, []
        while True:
            try:
                outcomes.append(self._done.get_nowait())
            except queue.Empty:
                break
        # A job stays "in flight" from its claim until its outcome is committed (below, in the
        # same transaction as the next claim): released any earlier, a round could claim it
        # again while its outcome waits, and run its effect twice.
        committing = {job.job_id for job, _ in outcomes}
        with self._lock:
            busy = [job_id for job_id in self._in_flight if job_id not in committing]
        request: ClaimRequest | None = None
        room = self.pool_size * self.claim_depth - len(busy)
        try:
            self._renew()
            holders: dict[str, str | None] = {}
            if claim and room > 0:
                request = ClaimRequest(self.clock.now(), room, self.owner, self.lease_for, busy,
                                       self.actions, holders)
            stats.committed, claimed = self._commit(outcomes, request)
        except BaseException:
            self._unsaved = outcomes + self._unsaved
            raise
        with self._lock:
            self._in_flight.difference_update(committing)
        foreign = [job.job_id for job in claimed
                   if self.actions is not None and job.action not in self.actions]
        if foreign:  # the claim filters by action; a row that slipped through goes back
            self.store.release(foreign, self.owner)
        for job in claimed:
            if job.job_id in foreign:
                continue
            holder = holders.get(job.job_id, UNKNOWN_HOLDER)
            if isinstance(holder, str) and holder not in (UNKNOWN_HOLDER, self.owner):
                # A live worker renews its leases and clears them with each step: a lease
                # still held by another means that worker stopped renewing (died or hung).
                self._took_over[job.job_id] = holder
            planned = plan(job, self.clock.now(), self.policy_for(job.action), self.facts,
                           holder, self.effects.called(job))
            if planned is None:
                continue
            if isinstance(planned, NoCall):
                self._decided(job, planned.outcome)  # decided and committed next round
            elif planned.effect is Effect.EXPIRE:  # a timer: no I/O, no thread
                self._decided(job, self.effects.run(job, planned))
            else:
                self._start(job, planned)
                stats.started += 1
        return stats

    def _decided(self, job: Job, outcome: Outcome | None) -> None:
        with self._lock:
            self._in_flight.add(job.job_id)
        self._done.put((job, outcome))

    def _renew(self) -> None:
        """Extend the leases of the jobs this worker holds, so a job waiting in the effect
        queue, or in a long effect, is never taken by a peer as if this worker were gone."""
        now = self.clock.now()
        if now - self._last_renewal < self.renew_every:
            return
        with self._lock:
            held = sorted(self._in_flight)
        if held:
            kept = self.store.renew(held, self.owner, self.lease_for, now)
            if kept < len(held):
                log.warning("%d of %d lease(s) had run out and been taken by another worker; "
                            "their outcomes here will lose the race to that worker's",
                            len(held) - kept, len(held))
        self._last_renewal = now

    def _commit(
        self, outcomes: list[tuple[Job, Outcome | None]], claim: ClaimRequest | None
    ) -> tuple[int, list[Job]]:
        if not outcomes and claim is None:
            return 0, []
        now = self.clock.now()
        if claim is not None and claim.now < now:
            # Claim as of the commit's own time: the machines this commit makes due now are
            # then leased in the same transaction instead of costing another one next round.
            claim = replace(claim, now=now)
        changes: list[Change] = []
        for job, outcome in outcomes:
            policy = self.policy_for(job.action)
            holder = self._took_over.get(job.job_id)
            try:
                done = advance(job, outcome, now, policy, self.owner, holder)
            except NoDecision as error:
                log.error("%s; the outcome is dropped and the job retried", error)
                done = advance(job, RetryLater(str(error)), now, policy, self.owner, holder)
            changes.append(Change(done.events, done.job, new=False))
        try:
            claimed = self.store.commit(changes, claim)
            written = changes
        except ConcurrencyConflict:
            lost = self.store.commit_each(changes)
            for change in lost:
                log.warning("job %s: another writer moved it first; this outcome is dropped",
                            change.job.job_id)
            written = [c for c in changes if c not in lost]
            claimed = self.store.commit([], claim) if claim is not None else []
        for change in changes if self._took_over else ():
            self._took_over.pop(change.job.job_id, None)  # said (or lost the race: moot)
        if written:
            crashpoints.reached("after_commit")
        if self.on_event is not None:
            for change in written:
                self.on_event(change.job, list(change.events))
        return len(written), claimed

    def _start(self, job: Job, call: Call) -> None:
        with self._lock:
            self._in_flight.add(job.job_id)
            self._running += 1

        def work() -> None:
            crashpoints.reached(f"before:{call.effect.value}")
            started = self.clock.now()
            if job.next_due_at is not None:
                metrics.LATENESS.observe(max(0.0, started - job.next_due_at))
            # A submission that waited in the queue past its call window does not call out
            # (the window is what others wait out): decided again as the call starts.
            late = submit_gate(job, started, self.policy_for(job.action), self.owner) \
                if call.effect is Effect.SUBMIT and call.look is None else None
            outcome = late if late is not None else self.effects.run(job, call)
            metrics.child(metrics.EFFECT_SECONDS, call.effect.value, job.action,
                          type(outcome).__name__).observe(max(0.0, self.clock.now() - started))
            if isinstance(outcome, RetryLater):
                metrics.child(metrics.RETRIES, call.effect.value).inc()
            crashpoints.reached(f"after:{call.effect.value}")
            self._done.put((job, outcome))
            with self._lock:
                self._running -= 1
            self.wake.set()

        self._pool.submit(job.job_id, work)

    def wait(self, max_wait: float) -> None:
        """Sleep until the earliest due machine, a finished effect or a wake-up from the poller."""
        if not self._done.empty():
            return
        room = self.in_flight < self.pool_size * self.claim_depth
        due = self.store.earliest_due(self.clock.now(), self.actions) if room else None
        timeout = max_wait
        if due is not None:
            timeout = min(timeout, max(0.0, due - self.clock.now()))
        if self.in_flight:  # wake up to renew the leases of what waits in the effect queue
            timeout = min(timeout, max(0.0, self._last_renewal + self.renew_every
                                       - self.clock.now()))
        if timeout > 0:
            self.clock.wait(self.wake, timeout)
        self.wake.clear()

    def drain(self, grace: float) -> None:
        """Let running effects finish (at most `grace` seconds) and commit what they return."""
        deadline = self.clock.now() + grace
        while True:
            try:
                self.run_round(claim=False)
            except CpworkerError as error:
                if self.clock.now() >= deadline:
                    log.warning("could not record %d outcome(s) before stopping (%s); their "
                                "jobs resume at the next start from the log",
                                len(self._unsaved), error)
                    break
            if not self.in_flight or self.clock.now() >= deadline:
                break
            self.clock.wait(self.wake, min(0.2, max(0.0, deadline - self.clock.now())))
            self.wake.clear()
        if self.in_flight:
            log.warning("%d effect(s) still running after %.0f s; their jobs resume at the next "
                        "start from the log", self.in_flight, grace)

    def close(self) -> None:
        """Stop the pool; effects still queued never start, and their leases are given back
        so another worker (on another host, say) need not wait for them to expire."""
        never_started = self._pool.close()
        if never_started:
            try:
                self.store.release(never_started, self.owner)
            except CpworkerError as error:
                log.warning("could not give back the leases of %d job(s) (%s); they are free "
                            "again when the leases expire", len(never_started), error)
                return
            log.info("gave back the leases of %d job(s) whose effects never started",
                     len(never_started))
