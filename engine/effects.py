"""Effects: the I/O the machine asks for, executed for one job at a time in a worker thread.

Nothing here decides anything: each effect returns an outcome and the machine (engine.decide)
chooses the events. Exceptions never escape: an action that raises is a transient failure of
that job, retried and recorded, never the end of the engine.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from engine.action import Action, ArtifactCredentials, JobContext
from engine.clock import Clock
from engine.codepipeline import CodePipeline, encode_token
from engine.machine import Effect, JobState
from engine.outcomes import (
    Cancelled,
    Expired,
    Failed,
    FailureType,
    Outcome,
    Refused,
    RetryLater,
    RunDetails,
)
from engine.projection import Job
from engine.secrets import JobSecrets, SecretVault

log = logging.getLogger(__name__)


def credentials_from(data: Mapping[str, Any]) -> ArtifactCredentials | None:
    creds = data.get("artifactCredentials")
    if not isinstance(creds, Mapping):
        return None
    return ArtifactCredentials(str(creds.get("accessKeyId", "")),
                               str(creds.get("secretAccessKey", "")),
                               str(creds.get("sessionToken", "")))


class Effects:
    """Runs effects; holds no per-job state beyond the bounded secret vault."""

    def __init__(
        self,
        codepipeline: CodePipeline,
        actions: Mapping[str, Action],
        vault: SecretVault,
        clock: Clock,
        worker: str,
        started_at: float,
    ) -> None:
        self.codepipeline = codepipeline
        self.actions = actions
        self.vault = vault
        self.clock = clock
        self.worker = worker
        self.started_at = started_at

    def run(self, job: Job, effect: Effect) -> Outcome:
        try:
            return self._run(job, effect)
        except Exception as error:  # one broken job must not stop the others
            message = self.vault.scrub(f"{type(error).__name__}: {error}")
            log.warning("job %s: %s failed: %s", job.job_id, effect.value, message)
            if effect is Effect.CANCEL:
                return Cancelled(False, message)
            return RetryLater(f"{effect.value} raised {message}")

    def _run(self, job: Job, effect: Effect) -> Outcome:
        cp = self.codepipeline
        if effect is Effect.ACKNOWLEDGE:
            return cp.acknowledge(job.job_id, job.nonce)
        if effect is Effect.EXPIRE:
            return Expired()
        maybe_landed = job.attempt > 0 or job.updated_at < self.started_at
        pending = job.pending or {}
        if effect is Effect.REPORT_PROGRESS:
            token = encode_token(job.job_id, job.run, job.details, job.run_started_at)
            return cp.report_progress(job.job_id, token, pending.get("details"), maybe_landed)
        if effect is Effect.REPORT_SUCCESS:
            return cp.report_success(job.job_id, pending.get("details"),
                                     pending.get("output_variables") or {}, maybe_landed)
        if effect is Effect.REPORT_FAILURE:
            message = self.vault.scrub(str(pending.get("message") or job.reason or "failed"))
            return cp.report_failure(job.job_id, str(pending.get("failure_type", "JobFailed")),
                                     message, job.external_id, maybe_landed)
        action = self.actions.get(job.action)
        if action is None:
            return Failed(FailureType.CONFIGURATION_ERROR,
                          f"this worker does not run the action {job.action!r}")
        context = self._context(job, action)
        if isinstance(context, (RetryLater, Failed, Refused)):
            if effect is Effect.CANCEL:
                return Cancelled(False, getattr(context, "reason", "") or "no job details")
            if isinstance(context, Refused):
                return Failed(FailureType.SYSTEM_UNAVAILABLE, context.reason)
            return context
        if effect is Effect.SUBMIT:
            wait = self._grace_left(job, action)
            if wait > 0:
                return RetryLater(
                    f"waiting {wait:.1f} s before looking for the submission of worker "
                    f"{job.intent_by}, which stopped: a call it had in flight may still land",
                    after=wait, counted=False)
            return action.submit(context)
        if effect is Effect.CHECK:
            return action.check(context)
        if effect is Effect.CANCEL:
            return action.cancel(context)
        raise AssertionError(f"no executor for effect {effect.value}")

    def _grace_left(self, job: Job, action: Action) -> float:
        """Seconds until another worker's submission can no longer be in flight (0: none).

        That worker stopped before this one started, so its calls ended, or never will land,
        within the action's submit_grace of this worker's start.
        """
        if job.state is not JobState.SUBMITTED or job.intent_by in (None, self.worker):
            return 0.0
        return max(0.0, self.started_at + action.submit_grace - self.clock.now())

    def _secrets(self, job: Job) -> JobSecrets | RetryLater | Refused:
        now = self.clock.now()
        held = self.vault.get(job.job_id, now)
        if held is not None:
            return held
        try:
            data = self.codepipeline.job_details(job.job_id)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code == "JobNotFoundException":
                return Refused("GetJobDetails: CodePipeline no longer knows the job, so its "
                               "configuration and credentials cannot be fetched again")
            return RetryLater(f"GetJobDetails failed: {code}")
        except BotoCoreError as error:
            return RetryLater(f"GetJobDetails failed: cannot reach CodePipeline: {error}")
        configuration = dict(data.get("actionConfiguration", {}).get("configuration", {}) or {})
        action = self.actions[job.action]
        self.vault.put(job.job_id, configuration, action.definition().secret_names,
                       credentials_from(data), now)
        found = self.vault.get(job.job_id, now)
        return found if found is not None else RetryLater("the secret vault is too small")

    def _context(self, job: Job, action: Action) -> JobContext | RetryLater | Failed | Refused:
        secrets = self._secrets(job)
        if not isinstance(secrets, JobSecrets):
            return secrets
        resumed = job.attempt > 0 or (
            job.state is JobState.SUBMITTED and job.intent_by != self.worker
        )
        artifacts = job.pipeline.get("artifacts") or {}
        return JobContext(
            job_id=job.job_id,
            execution_id=job.execution_id,
            pipeline=job.pipeline,
            configuration=secrets.configuration,
            run=job.run,
            details=RunDetails.from_json(job.details),
            attempt=job.attempt,
            resumed=resumed,
            clock=self.clock,
            artifact_credentials=secrets.credentials,
            input_artifacts=tuple(artifacts.get("input", []) if isinstance(artifacts, Mapping)
                                  else []),
            output_artifacts=tuple(artifacts.get("output", []) if isinstance(artifacts, Mapping)
                                   else []),
        )
