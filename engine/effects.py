"""Effects: the I/O the machine asks for, executed for one job at a time in a worker thread.

Nothing here decides anything: each effect returns an outcome and the machine (engine.decide)
chooses the events; whether a submission may call out at all is decided there too
(engine.decide.submit_gate, asked by the scheduler). Exceptions never escape: an action that
raises is a failure of that job, retried and recorded, never the end of the engine. Every
outcome leaves through one gate that scrubs the job's secrets from every text it carries.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import replace

from botocore.exceptions import BotoCoreError, ClientError

from engine.action import Action, JobContext
from engine.clock import Clock
from engine.codepipeline import CodePipeline, retry_of
from engine.jobdata import configuration_of, credentials_of, encode_token
from engine.machine import Effect, JobState
from engine.outcomes import (
    Cancelled,
    Deferred,
    Done,
    Expired,
    Failed,
    InProgress,
    Outcome,
    Rejected,
    RetryLater,
    RunDetails,
)
from engine.projection import Job
from engine.secrets import JobSecrets, SecretVault, scrub_outcome

log = logging.getLogger(__name__)


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
        polled_since: Callable[[str, float], bool] | None = None,
    ) -> None:
        self.codepipeline = codepipeline
        self.actions = actions
        self.vault = vault
        self.clock = clock
        self.worker = worker
        self.started_at = started_at
        self.polled_since = polled_since or (lambda _action, _since: True)
        """Whether CodePipeline was polled successfully for an action since a moment."""
        self._called: OrderedDict[tuple[str, int], None] = OrderedDict()
        """Submissions this process called at (job, seq): met again, the job is resumed (its
        outcome was never recorded). Bounded: only the last few thousand matter."""
        self._called_lock = threading.Lock()

    def run(self, job: Job, effect: Effect) -> Outcome:
        try:
            outcome = self._run(job, effect)
        except Exception as error:  # one broken job must not stop the others
            message = f"{type(error).__name__}: {error}"
            if effect is Effect.CANCEL:
                outcome = Cancelled(False, message)
            else:
                outcome = RetryLater(f"{effect.value} raised {message}", transient=False)
            outcome = self._scrubbed(job, outcome)
            log.warning("job %s: %s failed: %s", job.job_id, effect.value,
                        getattr(outcome, "reason", None) or getattr(outcome, "message", ""))
            return outcome
        return self._scrubbed(job, outcome)

    def can_find(self, action_name: str) -> bool:
        """Whether the action can look for an earlier submission (overrides Action.find)."""
        action = self.actions.get(action_name)
        return action is not None and type(action).find is not Action.find

    def find(self, job: Job, waiting: Deferred) -> Outcome:
        """Look for the run an earlier holder's submission started (Action.find), while its
        call may still land: found, the wait is over; not found, the wait goes on."""
        action = self.actions.get(job.action)
        if action is None:
            return waiting
        try:
            context = self._context(job, action)
            if not isinstance(context, JobContext):
                return waiting
            found = action.find(replace(context, resumed=True, deadline=None))
        except Exception as error:  # a failed look is no answer: keep waiting
            log.info("job %s: looking for the earlier submission failed: %s", job.job_id,
                     self.vault.scrub(f"{type(error).__name__}: {error}", job.job_id))
            return waiting
        if isinstance(found, (InProgress, Done, Failed)):
            return self._scrubbed(job, found)
        return waiting

    def _scrubbed(self, job: Job, outcome: Outcome) -> Outcome:
        """The one gate: whatever an action returns, its texts lose the job's secrets here,
        before they become an event, a log line or a CodePipeline message."""
        return scrub_outcome(outcome, lambda text: self.vault.scrub(text, job.job_id))

    def _run(self, job: Job, effect: Effect) -> Outcome:
        cp = self.codepipeline
        if effect is Effect.ACKNOWLEDGE:
            return cp.acknowledge(job.job_id, job.nonce)
        if effect is Effect.EXPIRE:
            due = job.next_due_at if job.next_due_at is not None else job.updated_at
            return Expired(polled=self.polled_since(job.action, due))
        maybe_landed = job.attempt > 0 or job.updated_at < self.started_at
        pending = job.pending or {}
        if effect is Effect.REPORT_PROGRESS:
            token = encode_token(job.job_id, job.run, job.details, job.run_started_at,
                                 short=bool(pending.get("short_token")))
            return cp.report_progress(job.job_id, token, pending.get("details"), maybe_landed)
        if effect is Effect.REPORT_SUCCESS:
            return cp.report_success(job.job_id, pending.get("details"),
                                     pending.get("output_variables") or {}, maybe_landed)
        if effect is Effect.REPORT_FAILURE:
            message = self.vault.scrub(str(pending.get("message") or job.reason or "failed"))
            # A degraded failure report says which external id to send, None included.
            external = pending.get("external_id", job.external_id)
            return cp.report_failure(job.job_id, str(pending.get("failure_type", "JobFailed")),
                                     message, None if external is None else str(external),
                                     maybe_landed)
        action = self.actions.get(job.action)
        if action is None:  # claims are filtered by action (engine.scheduler): never here
            return RetryLater(f"this worker does not run the action {job.action!r}; "
                              "left to a worker that does", transient=False, counted=False)
        context = self._context(job, action)
        if isinstance(context, Rejected):
            return context  # the job is over in CodePipeline: recorded, nothing retried
        if isinstance(context, RetryLater):
            if effect is Effect.CANCEL:  # cancelling is best effort: no retries for it
                return Cancelled(False, context.reason or "no job details")
            return context
        if effect is Effect.SUBMIT:
            with self._called_lock:
                self._called[(job.job_id, job.last_seq)] = None
                while len(self._called) > 4096:
                    self._called.popitem(last=False)
            return action.submit(context)
        if effect is Effect.CHECK:
            return action.check(context)
        if effect is Effect.CANCEL:
            return action.cancel(context)
        raise AssertionError(f"no executor for effect {effect.value}")

    def _secrets(self, job: Job) -> JobSecrets | RetryLater | Rejected:
        now = self.clock.now()
        held = self.vault.get(job.job_id, now)
        if held is not None:
            return held
        try:
            data = self.codepipeline.job_details(job.job_id)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code == "JobNotFoundException":
                # CodePipeline removes completed jobs after a while (PROTOCOL A2 "Job
                # retention", A5): the job ended without this worker (stopped, timed out, or
                # finished by an earlier report), and asking again cannot bring it back.
                return Rejected("GetJobDetails answered JobNotFoundException: CodePipeline no "
                                "longer knows the job (it ended without this worker: stopped, "
                                "timed out or already reported, then removed), so its "
                                "configuration and credentials cannot be fetched again; "
                                "nothing more is done for it")
            return retry_of(error, "GetJobDetails")
        except BotoCoreError as error:
            return retry_of(error, "GetJobDetails")
        _, configuration, _ = configuration_of(data)
        action = self.actions[job.action]
        self.vault.put(job.job_id, configuration, action.definition().secret_names,
                       credentials_of(data), now)
        found = self.vault.get(job.job_id, now)
        return found if found is not None else RetryLater("the secret vault is too small")

    def _context(self, job: Job, action: Action) -> JobContext | RetryLater | Rejected:
        secrets = self._secrets(job)
        if not isinstance(secrets, JobSecrets):
            return secrets
        with self._called_lock:
            called_before = (job.job_id, job.last_seq) in self._called
        # Anything but the first call of the window the intent opened may follow a call that
        # reached the external system: a retry, a re-armed window, another worker's intent.
        resumed = job.attempt > 0 or called_before or (
            job.state is JobState.SUBMITTED
            and (job.armings != 1 or job.intent_by != self.worker)
        )
        deadline = None
        if job.state is JobState.SUBMITTED and job.armed_until is not None:
            deadline = job.armed_until + action.submit_grace
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
            deadline=deadline,
            intended_at=job.intended_at,
        )
