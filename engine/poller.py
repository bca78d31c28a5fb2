"""The single poller: one loop asks CodePipeline for jobs of every registered action type.

It asks for no more jobs than the engine has room for, nor more than the poll batch
(maxBatchSize = min(free capacity, batch)); at once while batches come back full, more often
while jobs keep coming, backing off with jitter to the configured maximum when idle; and it
records every job durably (intake) before the scheduler may acknowledge it.

AWS documents no maximum batch size (PROTOCOL A2, A3). If CodePipeline answers a poll with
ValidationException, the batch for that action type is halved (down to 1) and the poll asked
again at once, said once per change, instead of every poll failing the same way.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from engine import defaults
from engine.action import Action
from engine.clock import Clock
from engine.codepipeline import CodePipeline, explain
from engine.errors import StoreUnavailable
from engine.intake import Intake

log = logging.getLogger(__name__)


@dataclass
class PollRound:
    found: int
    new: int
    errors: int
    full: bool = False
    """Some poll returned all it was asked for: CodePipeline probably holds more right now."""
    problem: str | None = None
    """The first failed poll of the round, said for an operator (engine.codepipeline.explain)."""


class Poller:
    def __init__(
        self,
        codepipeline: CodePipeline,
        actions: Mapping[str, Action],
        intake: Intake,
        clock: Clock,
        capacity: Callable[[], int],
        on_jobs: Callable[[], None],
        min_interval: float = defaults.POLL_INTERVAL_MIN,
        max_interval: float = defaults.POLL_INTERVAL,
        query: Mapping[str, Mapping[str, str]] | None = None,
        rng: random.Random | None = None,
        batch: int = defaults.POLL_BATCH,
    ) -> None:
        if batch < 1:
            raise ValueError(f"the poll batch must be at least 1, not {batch}")
        self.codepipeline = codepipeline
        self.actions = actions
        self.intake = intake
        self.clock = clock
        self.capacity = capacity
        self.on_jobs = on_jobs
        self.min_interval = min(min_interval, max_interval)
        self.max_interval = max_interval
        self.query = query or {}
        self.rng = rng or random.Random()
        self.batch = batch
        self._batches: dict[str, int] = {}
        """Per action type, the batch CodePipeline last accepted once it refused a larger one."""
        self.interval = self.min_interval
        self.rounds = 0
        self.last_round: PollRound | None = None
        self.last_success: dict[str, float] = {}
        """When each action type was last polled and its jobs recorded (clock time)."""
        self._unrecorded: list[tuple[str, Action, list[dict[str, Any]]]] = []
        """Batches polled but not recorded because the store was away: recorded first thing
        next round, while their nonces are still good, instead of left for CodePipeline to
        hand out again after its acknowledgement timeout."""

    def poll_once(self) -> PollRound:
        """One round over every action type, within the free capacity.

        One action type whose poll fails (an answer botocore or this worker cannot read) is
        counted as an error and the others are still polled; one bad job fails alone inside
        intake. What the store raises (StoreUnavailable: the database is briefly unavailable)
        ends the round and is the caller's to back off from; jobs recorded before it are
        still announced.
        """
        found = new = errors = 0
        full = False
        problem: str | None = None
        try:
            while self._unrecorded:
                name, action, jobs = self._unrecorded[0]
                new += self.intake.record(name, action, jobs)
                found += len(jobs)
                self._unrecorded.pop(0)
            for name, action in self.actions.items():
                free = self.capacity()
                if free <= 0:
                    break
                type_id = action.definition().type_id
                batch = self._batches.get(name, self.batch)
                asked = min(free, batch)
                asked_at = self.clock.now()
                try:
                    jobs, asked = self._poll(name, type_id.to_api(), asked)
                except (ClientError, BotoCoreError) as error:
                    errors += 1
                    problem = problem or f"PollForJobs for {type_id}: {explain(error)}"
                    log.warning("PollForJobs for %s failed: %s", type_id, explain(error))
                    continue
                except Exception as error:  # an answer nobody expected: this type, this round
                    errors += 1
                    problem = problem or f"PollForJobs for {type_id}: {explain(error)}"
                    log.error("PollForJobs for %s failed unexpectedly: %s: %s", type_id,
                              type(error).__name__, error)
                    continue
                if jobs:
                    found += len(jobs)
                    # Only a batch limited by the poll batch says "more waiting"; one limited by
                    # our own capacity says "we are full", and polling again at once would only
                    # trickle jobs in one small transaction (and fsync) at a time.
                    full = full or (asked == self._batches.get(name, self.batch)
                                    and len(jobs) >= asked)
                    try:
                        new += self.intake.record(name, action, jobs)
                    except StoreUnavailable:
                        self._unrecorded.append((name, action, jobs))
                        raise
                self.last_success[name] = asked_at
        finally:
            if found:
                self.on_jobs()  # even when the store failed midway: earlier jobs are recorded
        self.rounds += 1
        self.last_round = PollRound(found, new, errors, full, problem)
        return self.last_round

    def _poll(self, name: str, type_id: Mapping[str, str],
              asked: int) -> tuple[list[dict[str, Any]], int]:
        """PollForJobs, halving the batch at once while CodePipeline refuses it with
        ValidationException; returns the jobs and the batch that was accepted. A reduction is
        said in one line, whatever it took to find it."""
        first, refusal = asked, ""
        try:
            while True:
                try:
                    return self.codepipeline.poll(type_id, asked, self.query.get(name)), asked
                except ClientError as error:
                    code = error.response.get("Error", {}).get("Code", "")
                    if code != "ValidationException" or asked <= 1:
                        raise
                    refusal = error.response.get("Error", {}).get("Message", "") or code
                    asked = max(1, asked // 2)
                    self._batches[name] = asked
        finally:
            if asked < first:
                log.warning("PollForJobs for %s refused maxBatchSize=%d with "
                            "ValidationException (%s); asking for at most %d job(s) per poll "
                            "from now on", name, first, refusal, asked)

    def polled_since(self, action_name: str, moment: float) -> bool:
        """Whether a poll for the action, asked at or after `moment`, succeeded."""
        return self.last_success.get(action_name, float("-inf")) >= moment

    def next_interval(self, last: PollRound) -> float:
        """At once after a full batch (a backlog), halving while polls find jobs, doubling with
        jitter up to the maximum when idle or failing.

        A poll that found jobs without filling its batch emptied the queue: the next job is a
        new arrival, so polling at once again would mostly find nothing. Halving instead settles
        the poller near the rate jobs arrive at, about one poll per job found while they trickle
        in (each poll costs a request against CodePipeline's per-account quotas), and a burst
        still fills batches, which are swept without waiting.
        """
        if last.full and not last.errors:
            self.interval = self.min_interval
            return 0.0
        if last.found and not last.errors:
            self.interval = max(self.min_interval, self.interval / 2)
        else:
            self.interval = min(self.max_interval, max(self.min_interval, self.interval * 2))
        jitter = self.rng.uniform(0.8, 1.0) if self.interval < self.max_interval else \
            self.rng.uniform(0.9, 1.0)
        return self.interval * jitter
