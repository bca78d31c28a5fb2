"""Intake: a polled job becomes an `acquired` event (durably, with its nonce) before anything else.

Also where bad input is caught: a job whose data cannot be worked is still recorded, with its
problem, so the machine fails it with ConfigurationError and a readable message after the ack.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.action import Action
from engine.clock import Clock
from engine.codepipeline import decode_token
from engine.effects import credentials_from
from engine.errors import ConcurrencyConflict
from engine.machine import JobState
from engine.outcomes import JSON
from engine.projection import Event, Job, NewEvent, project
from engine.secrets import SecretVault, redact_configuration
from engine.store import Change, EventStore

log = logging.getLogger(__name__)

_CONFLICT_ATTEMPTS = 3
"""A conflict means the scheduler moved a job being handed over, which it does once or twice."""


@dataclass(frozen=True)
class Intake:
    """Records polled jobs for one action, in one transaction per poll."""

    store: EventStore
    vault: SecretVault
    clock: Clock
    worker: str | None = None

    def record(self, action_name: str, action: Action, polled: Sequence[Mapping[str, Any]]) -> int:
        """Returns how many jobs are new to this worker."""
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
        ids = [str(job.get("id", "")) for job in polled]
        known = self.store.get_many([i for i in ids if i])
        changes: list[Change] = []
        joined: dict[str, Job] = {}
        new = 0
        for raw in polled:
            job_id = str(raw.get("id", ""))
            if not job_id:
                log.error("CodePipeline returned a job without an id; it is ignored")
                continue
            data = raw.get("data") or {}
            configuration = dict((data.get("actionConfiguration") or {}).get("configuration")
                                 or {})
            definition = action.definition()
            self.vault.put(job_id, configuration, definition.secret_names,
                           credentials_from(data), now)
            existing = known.get(job_id)
            if existing is not None:
                changes.extend(self._redispatch(existing, str(raw.get("nonce", "")), now,
                                                self.worker))
                continue
            event_data = self._acquired_data(action_name, action, raw, data, configuration)
            event = Event(job_id, 1, "acquired", now, event_data, worker=self.worker)
            changes.append(Change([event], project(None, event), new=True))
            new += 1
            if "continuation_token" not in event_data:
                continue  # a first job joins nothing; only continuations hand over
            continues = event_data.get("continues")
            for previous in self.store.by_execution(str(event_data["execution_id"])):
                if previous.job_id in joined:
                    previous = joined[previous.job_id]
                if previous.state in (JobState.AWAITING_CONTINUATION, JobState.HANDING_ON) and (
                    continues in (None, previous.job_id)
                ):
                    change = _append(previous, NewEvent("continuation_joined", {"by": job_id}),
                                     now, self.worker)
                    joined[previous.job_id] = change.job  # handed on: a second one joins nothing
                    changes.append(change)
        if changes:
            self.store.commit(changes)
            for change in changes:
                log.info("job %s: %s -> %s", change.job.job_id,
                         ", ".join(e.type for e in change.events), change.job.state.value,
                         extra={"job_id": change.job.job_id, "state": change.job.state.value})
        return new

    @staticmethod
    def _redispatch(job: Job, nonce: str, now: float, worker: str | None) -> list[Change]:
        """The same job handed out again (a missed ack): same machine, new nonce.

        A job this worker lost (its ack refused) and is handed again is nobody's: CodePipeline
        would otherwise re-dispatch it to us and be ignored until its 24 h timeout.
        """
        if job.state in (JobState.ACQUIRED, JobState.LOST) and nonce and nonce != job.nonce:
            return [_append(job, NewEvent("redispatched", {"nonce": nonce}), now, worker)]
        log.info("job %s was handed out again while %s; nothing to do", job.job_id,
                 job.state.value)
        return []

    @staticmethod
    def _acquired_data(action_name: str, action: Action, raw: Mapping[str, Any],
                       data: Mapping[str, Any], configuration: Mapping[str, str]
                       ) -> dict[str, JSON]:
        definition = action.definition()
        problems: list[str] = []
        context = data.get("pipelineContext") or {}
        execution_id = (context.get("action") or {}).get("actionExecutionId")
        if not execution_id:
            problems.append("the job data has no pipelineContext.action.actionExecutionId")
            execution_id = str(raw.get("id"))
        type_id = data.get("actionTypeId") or {}
        if type_id and str(type_id.get("provider")) != definition.type_id.provider:
            problems.append(f"the job is for action type {type_id}, not {definition.type_id}")
        problems += definition.problems(configuration)
        event: dict[str, JSON] = {
            "nonce": str(raw.get("nonce", "")),
            "action": action_name,
            "action_type": str(definition.type_id),
            "execution_id": str(execution_id),
            "pipeline": {
                "account_id": raw.get("accountId"),
                "pipeline_name": context.get("pipelineName"),
                "stage": (context.get("stage") or {}).get("name"),
                "action_name": (context.get("action") or {}).get("name"),
                "pipeline_execution_id": context.get("pipelineExecutionId"),
                "pipeline_arn": context.get("pipelineArn"),
                "configuration": redact_configuration(configuration, definition.secret_names),
                "artifacts": {
                    "input": [_artifact(a) for a in data.get("inputArtifacts") or []],
                    "output": [_artifact(a) for a in data.get("outputArtifacts") or []],
                },
            },
        }
        token = data.get("continuationToken")
        if token:
            event["continuation_token"] = str(token)
            payload = decode_token(str(token))
            if payload is None:
                problems.append("the continuation token was not written by cpworker, so the "
                                "external run it refers to cannot be found")
            else:
                event["continues"] = payload.get("job")
                event["run"] = payload.get("run") or {}
                event["details"] = payload.get("details")
                event["run_started_at"] = payload.get("started")
        if problems:
            event["problem"] = (f"the job for action {definition.type_id} cannot be worked: "
                                + "; ".join(problems))
        return event


def _artifact(artifact: Mapping[str, Any]) -> dict[str, JSON]:
    location = (artifact.get("location") or {}).get("s3Location") or {}
    return {"name": artifact.get("name"), "revision": artifact.get("revision"),
            "bucket": location.get("bucketName"), "key": location.get("objectKey")}


def _append(job: Job, new: NewEvent, now: float, worker: str | None) -> Change:
    event = Event(job.job_id, job.last_seq + 1, new.type, now, new.data, worker=worker)
    return Change([event], project(job, event), new=False)
