"""Intake: a polled job becomes an `acquired` event (durably, with its nonce) before anything else.

Also where bad input is caught: a job whose data cannot be worked is still recorded, with its
problem, so the machine fails it with ConfigurationError and a readable message after the ack.
One bad job fails alone: whatever goes wrong reading or recording it (a value that is not a
string, job data of an unexpected shape, a row the database refuses) becomes that job's
problem, or at worst a log line when it has no id, and never the loss of the rest of its batch,
which CodePipeline would otherwise hand out again and again after each ack timeout.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from engine import limits
from engine.action import Action, ActionDefinition
from engine.clock import Clock
from engine.errors import ConcurrencyConflict, CpworkerError, StoreFailure, StoreUnavailable
from engine.jobdata import (
    configuration_of,
    credentials_of,
    mapping,
    pipeline_of,
    read_token,
    recorded_configuration,
    text,
)
from engine.machine import JobState
from engine.outcomes import JSON
from engine.projection import Job, NewEvent
from engine.record import Recorded, record
from engine.secrets import REDACTED, SecretVault
from engine.store import Change, EventStore

log = logging.getLogger(__name__)

_CONFLICT_ATTEMPTS = 3
"""A conflict means the scheduler moved a job being handed over, which it does once or twice."""

_MAX_ERROR_TEXT = 500
"""Characters of an unexpected error kept in a job's problem: enough to name the cause."""

_NOT_ONE_JOB = (ConcurrencyConflict, StoreUnavailable)
"""Errors of a whole commit that say nothing about any one row, so it is never split job by job:
another writer came first (redo the poll's intake), or the database is briefly unavailable
(the poller backs off; the poll's jobs are handed out again after the ack timeout)."""


def _store_error(error: Exception) -> bool:
    """Raised by the database or the store on a read, rather than by one job's data: the
    poller's to back off from (or to stop on), never one job's problem."""
    return isinstance(error, (CpworkerError, SQLAlchemyError))


@dataclass
class _Read:
    """One polled job as read from its JobData: what its `acquired` event will say."""

    job_id: str
    nonce: str
    type_id: str
    data: dict[str, JSON]
    problems: list[str] = field(default_factory=list)
    shortened: str | None = None
    """The job a shortened continuation token names: its run data is read from the store."""

    def event_data(self) -> dict[str, JSON]:
        data = dict(self.data)
        if self.problems:
            data["problem"] = (f"the job for action {self.type_id} cannot be worked: "
                               + "; ".join(self.problems))
        return data


@dataclass(frozen=True)
class Intake:
    """Records polled jobs for one action, in one transaction per poll."""

    store: EventStore
    vault: SecretVault
    clock: Clock
    worker: str | None = None

    def record(self, action_name: str, action: Action, polled: Sequence[Mapping[str, Any]]) -> int:
        """Returns how many jobs are new to this worker.

        Raises only what the store raises for the whole batch (StoreUnavailable, or a
        ConcurrencyConflict that persisted): the poller backs off and polls again.
        """
        attempt = 1
        while True:
            try:
                return self._record(action_name, action, polled)
            except ConcurrencyConflict:
                # The scheduler appended to a job this poll hands over (its progress report was
                # recorded meanwhile): read again and redo. Giving up would leave the polled
                # jobs unrecorded until CodePipeline dispatches them again.
                if attempt >= _CONFLICT_ATTEMPTS:
                    raise
                attempt += 1

    def _record(self, action_name: str, action: Action,
                polled: Sequence[Mapping[str, Any]]) -> int:
        now = self.clock.now()
        definition = action.definition()
        read = [r for raw in polled
                if (r := self._read(action_name, definition, raw, now)) is not None]
        known = self.store.get_many([r.job_id for r in read])
        groups: list[tuple[_Read, list[Change]]] = []
        joined: dict[str, Job] = {}
        for item in read:
            existing = known.get(item.job_id)
            if existing is not None:
                groups.append((item, self._redispatch(existing, item.nonce, now)))
                continue
            try:
                groups.append((item, self._acquire(item, joined, now)))
            except Exception as error:
                if _store_error(error):
                    raise
                groups.append((item, [self._broken(item, error, now)]))
        written = self._commit(groups, now)
        said = log.isEnabledFor(logging.INFO)
        for change in written:
            if change.job.final:  # handed on to its continuation: its secrets are done with
                self.vault.forget(change.job.job_id)
            if said:
                log.info("job %s: %s -> %s", change.job.job_id,
                         ", ".join(e.type for e in change.events), change.job.state.value,
                         extra={"job_id": change.job.job_id, "state": change.job.state.value})
        return sum(1 for change in written if change.new)

    # --- reading -------------------------------------------------------------------------------

    def _read(self, action_name: str, definition: ActionDefinition, raw: Any,
              now: float) -> _Read | None:
        """The job's event data and problems; never raises. None: no id to record it under."""
        job_id = text(raw.get("id")) if isinstance(raw, Mapping) else None
        if job_id is None:
            # Nothing can be recorded or answered without an id; CodePipeline fails the job at
            # its own timeout. (An id the database cannot store counts as none.)
            log.error("CodePipeline returned a job without a usable id (%s); it is ignored",
                      type(raw).__name__)
            return None
        nonce = text(raw.get("nonce")) or ""
        type_id = str(definition.type_id)
        try:
            return self._read_data(action_name, definition, job_id, nonce, raw, now)
        except Exception as error:  # one job's data, whatever its shape, fails that job alone
            item = _Read(job_id, nonce, type_id, _minimal(action_name, type_id, nonce, job_id))
            item.problems.append(self._unreadable(job_id, error))
            log.warning("job %s: its job data cannot be read (%s); it is recorded with that "
                        "problem and will be failed", job_id, item.problems[-1],
                        extra={"job_id": job_id})
            return item

    def _read_data(self, action_name: str, definition: ActionDefinition, job_id: str,
                   nonce: str, raw: Mapping[str, Any], now: float) -> _Read:
        data = mapping(raw.get("data"))
        configuration, texts, problems = configuration_of(data)
        # Secrets first, before anything could print them: from here on they are scrubbed.
        self.vault.put(job_id, configuration, definition.secret_names, credentials_of(data), now)
        execution_id, pipeline = pipeline_of(raw, data, recorded_configuration(
            configuration, definition.secret_names, REDACTED))
        if execution_id is None:
            problems.append("the job data has no pipelineContext.action.actionExecutionId")
            execution_id = job_id
        type_id = data.get("actionTypeId")
        if isinstance(type_id, Mapping) and type_id.get("provider") != definition.type_id.provider:
            problems.append(f"the job is for action type {dict(type_id)}, not "
                            f"{definition.type_id}")
        wrong = {k for k in configuration if k not in texts}
        problems += [p for p in definition.problems(texts)
                     if not any(f"property {name} " in p for name in wrong)]
        event: dict[str, JSON] = {
            "nonce": nonce,
            "action": action_name,
            "action_type": str(definition.type_id),
            "execution_id": execution_id,
            "pipeline": pipeline,
        }
        item = _Read(job_id, nonce, str(definition.type_id), event, problems)
        token = data.get("continuationToken")
        if token is not None:
            self._read_token(item, token)
        return item

    @staticmethod
    def _read_token(item: _Read, token: Any) -> None:
        """What a continuation token says about the run this job resumes (engine.jobdata)."""
        read = read_token(token)
        item.data.update(read.data)
        if read.problem is not None:
            item.problems.append(read.problem)
        item.shortened = read.shortened

    def _unreadable(self, job_id: str, error: Exception) -> str:
        what = error.message if isinstance(error, CpworkerError) else str(error)
        said = self.vault.scrub(f"{type(error).__name__}: {what}", job_id)
        said = said.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")
        if len(said) > _MAX_ERROR_TEXT:
            said = said[:_MAX_ERROR_TEXT] + " [...cut]"
        return (f"cpworker could not read its job data ({said}). Fix: check the action's "
                "configuration in the pipeline, then retry the stage")

    # --- recording -----------------------------------------------------------------------------

    def _acquire(self, item: _Read, joined: dict[str, Job], now: float) -> list[Change]:
        """The job's `acquired` event, and `continuation_joined` on the job it continues."""
        if item.shortened is not None:
            self._resume_from(item, self.store.get(item.shortened))
        data = item.event_data()
        changes = [_change(record(None, [NewEvent("acquired", data)], now, self.worker,
                                  item.job_id))]
        if "continuation_token" not in data:
            return changes  # a first job joins nothing; only continuations hand over
        continues = data.get("continues")
        for previous in self.store.by_execution(str(data["execution_id"])):
            if previous.job_id in joined:
                previous = joined[previous.job_id]
            if previous.state in (JobState.AWAITING_CONTINUATION, JobState.HANDING_ON) and (
                continues in (None, previous.job_id)
            ):
                change = _append(previous, NewEvent("continuation_joined", {"by": item.job_id}),
                                 now, self.worker)
                joined[previous.job_id] = change.job  # handed on: a second one joins nothing
                changes.append(change)
        return changes

    @staticmethod
    def _resume_from(item: _Read, previous: Job | None) -> None:
        """A shortened token: the run, its details and start are those of the job it continues."""
        if previous is None:
            item.problems.append(
                f"its continuation token was shortened to the id of the job it continues "
                f"({item.shortened}) because the run data passed "
                f"{limits.CONTINUATION_TOKEN.describe()} (or CodePipeline refused the longer "
                "token), and that job is not in this worker's database, so the external run "
                "cannot be found. Fix: run the workers of this action on one shared database, "
                "then retry the stage")
            return
        item.data["run"] = dict(previous.run)
        item.data["details"] = None if previous.details is None else dict(previous.details)
        item.data["run_started_at"] = previous.run_started_at

    def _broken(self, item: _Read, error: Exception, now: float) -> Change:
        """The job recorded with nothing but what the machine needs to fail it: its nonce and
        why. What made its full record fail stays out of the log."""
        data = _minimal(str(item.data.get("action", "")), item.type_id, item.nonce,
                        str(item.data.get("execution_id") or item.job_id))
        problem = self._unreadable(item.job_id, error)
        log.warning("job %s: it cannot be recorded as polled (%s); it is recorded with that "
                    "problem and will be failed", item.job_id, problem,
                    extra={"job_id": item.job_id})
        broken = _Read(item.job_id, item.nonce, item.type_id, data, [problem])
        return _change(record(None, [NewEvent("acquired", broken.event_data())], now,
                              self.worker, item.job_id))

    def _commit(self, groups: Sequence[tuple[_Read, list[Change]]], now: float) -> list[Change]:
        """All jobs in one transaction; if the database refuses it for a reason that is not
        the whole batch's (a conflict, the store unavailable), job by job, so one bad row
        cannot sink the others. Returns the changes written."""
        changes = [c for _, group in groups for c in group]
        if not changes:
            return []
        try:
            self.store.commit(changes)
            return changes
        except _NOT_ONE_JOB:
            raise
        except Exception as error:
            log.warning("recording %d polled job(s) in one transaction failed (%s: %s); "
                        "recording them one by one", len(groups), type(error).__name__,
                        self.vault.scrub(str(error))[:_MAX_ERROR_TEXT])
        written: list[Change] = []
        for item, group in groups:
            if not group:
                continue
            try:
                self.store.commit(group)
                written += group
                continue
            except _NOT_ONE_JOB:
                raise
            except Exception as error:
                if not group[0].new:
                    log.error("job %s: its redispatch cannot be recorded (%s); it is left as it "
                              "was", item.job_id, type(error).__name__,
                              extra={"job_id": item.job_id})
                    continue
                fallback = self._broken(item, error, now)
            try:
                self.store.commit([fallback])
                written.append(fallback)
            except (*_NOT_ONE_JOB, StoreFailure):
                raise  # a row of a nonce and a problem must fit: the store itself is failing
            except Exception as error:
                log.error("job %s: it cannot be recorded at all (%s); CodePipeline hands it "
                          "out again after its ack timeout", item.job_id, type(error).__name__,
                          extra={"job_id": item.job_id})
        return written

    def _redispatch(self, job: Job, nonce: str, now: float) -> list[Change]:
        """The same job handed out again (a missed ack): same machine, new nonce.

        A job this worker lost (its ack refused) and is handed again is nobody's: CodePipeline
        would otherwise re-dispatch it to us and be ignored until its 24 h timeout.
        """
        if job.state in (JobState.ACQUIRED, JobState.LOST) and nonce and nonce != job.nonce:
            return [_append(job, NewEvent("redispatched", {"nonce": nonce}), now, self.worker)]
        if nonce and nonce == job.nonce:
            return []  # recorded already, by an attempt of this same poll that was redone
        log.info("job %s was handed out again while %s; nothing to do", job.job_id,
                 job.state.value)
        return []


def _minimal(action_name: str, type_id: str, nonce: str, execution_id: str) -> dict[str, JSON]:
    """An `acquired` event's least: enough to acknowledge the job and fail it."""
    return {"nonce": nonce, "action": action_name, "action_type": type_id,
            "execution_id": execution_id, "pipeline": {}}


def _append(job: Job, new: NewEvent, now: float, worker: str | None) -> Change:
    return _change(record(job, [new], now, worker))


def _change(recorded: Recorded) -> Change:
    return Change(recorded.events, recorded.job, recorded.new)
