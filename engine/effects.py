"""Effects: the I/O the machine asks for, executed for one job at a time in a worker thread.

Nothing here decides anything. engine.decide.plan says what to call and how (a `Call`: whether
a report may have landed, whether the action's call resumes earlier work, its deadline, whether
only to look for another worker's submission); this module performs exactly that, and reports
the outcome and the facts it holds (which submissions this process called), from which the
machine chooses. Exceptions never escape: an action that raises is a failure of that job,
retried and recorded, never the end of the engine. Every outcome leaves through one gate that
scrubs the job's secrets from every text it carries.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import replace

from botocore.exceptions import BotoCoreError, ClientError

from engine.action import Action, ArtifactCredentials, JobContext
from engine.artifacts import JobArtifacts, S3Settings, UploadLedger
from engine.clock import Clock
from engine.codepipeline import CodePipeline, retry_of
from engine.decide import Call
from engine.jobdata import artifacts_of, configuration_of, credentials_of, encryption_key_of
from engine.machine import Effect
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
    """Runs effects; holds no per-job state beyond the bounded secret vault and the bounded
    memory of the submissions it called."""

    def __init__(
        self,
        codepipeline: CodePipeline,
        actions: Mapping[str, Action],
        vault: SecretVault,
        clock: Clock,
        polled_since: Callable[[str, float], bool] | None = None,
        s3: S3Settings | None = None,
        ledger: UploadLedger | None = None,
        worker: str | None = None,
    ) -> None:
        self.codepipeline = codepipeline
        self.s3 = s3 or S3Settings()
        self.ledger = ledger
        """Where uploaded artifacts are recorded (the state database)."""
        self.worker = worker
        self.actions = actions
        self.vault = vault
        self.clock = clock
        self.polled_since = polled_since or (lambda _action, _since: True)
        """Whether CodePipeline was polled successfully for an action since a moment."""
        self._called: OrderedDict[tuple[str, int], None] = OrderedDict()
        """Submissions this process called at (job, seq), a fact for engine.decide.plan: met
        again, the job is resumed (its outcome was never recorded). Bounded: only the last few
        thousand matter."""
        self._called_lock = threading.Lock()

    def run(self, job: Job, call: Call) -> Outcome:
        """Perform `call` for `job` and return its outcome, scrubbed; never raises."""
        if call.look is not None:
            return self._look(job, call, call.look)
        try:
            outcome = self._run(job, call)
        except Exception as error:  # one broken job must not stop the others
            message = f"{type(error).__name__}: {error}"
            if call.effect is Effect.CANCEL:
                outcome = Cancelled(False, message)
            else:
                outcome = RetryLater(f"{call.effect.value} raised {message}", transient=False)
            outcome = self._scrubbed(job, outcome)
            log.warning("job %s: %s failed: %s", job.job_id, call.effect.value,
                        getattr(outcome, "reason", None) or getattr(outcome, "message", ""))
            return outcome
        return self._scrubbed(job, outcome)

    def can_find(self, action_name: str) -> bool:
        """Whether the action can look for an earlier submission (overrides Action.find)."""
        action = self.actions.get(action_name)
        return action is not None and type(action).find is not Action.find

    def called(self, job: Job) -> bool:
        """Whether this process called the action's submit for `job` at its current seq."""
        with self._called_lock:
            return (job.job_id, job.last_seq) in self._called

    def _look(self, job: Job, call: Call, waiting: Deferred) -> Outcome:
        """Look for the run an earlier holder's submission started (Action.find), while its
        call may still land: found, the wait is over; not found, the wait goes on."""
        try:
            context = self._context(job, self.actions[job.action], call)
            if not isinstance(context, JobContext):
                return waiting
            found = self.actions[job.action].find(context)
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

    def _run(self, job: Job, call: Call) -> Outcome:
        cp = self.codepipeline
        effect = call.effect
        if effect is Effect.ACKNOWLEDGE:
            return cp.acknowledge(job.job_id, job.nonce)
        if effect is Effect.EXPIRE:
            return Expired(polled=self.polled_since(job.action, call.since))
        report = call.report
        if report is not None:
            if effect is Effect.REPORT_PROGRESS:
                return cp.report_progress(job.job_id, report.token, report.details,
                                          call.maybe_landed)
            if effect is Effect.REPORT_SUCCESS:
                return cp.report_success(job.job_id, report.details, report.output_variables,
                                         call.maybe_landed)
            if effect is Effect.REPORT_FAILURE:
                return cp.report_failure(job.job_id, report.failure_type,
                                         self.vault.scrub(report.message), report.external_id,
                                         call.maybe_landed)
        if effect not in (Effect.SUBMIT, Effect.CHECK, Effect.CANCEL):
            raise AssertionError(f"no executor for {call}")  # a report without its report
        action = self.actions[job.action]
        context = self._context(job, action, call)
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
            return self._with_uploads(action.submit(context), context)
        if effect is Effect.CHECK:
            return self._with_uploads(action.check(context), context)
        return action.cancel(context)

    @staticmethod
    def _with_uploads(outcome: Outcome, context: JobContext) -> Outcome:
        """A success carries the uploads recorded for its execution into its event."""
        if not isinstance(outcome, Done) or context.artifacts is None:
            return outcome
        made = context.artifacts.uploaded()
        if not made:
            return outcome
        return replace(outcome, uploads=tuple(u.to_json() for u in made))

    def _renewed(self, job: Job) -> ArtifactCredentials | None:
        """Fresh artifact credentials (S3 said the held ones expired): GetJobDetails again."""
        self.vault.forget(job.job_id)
        secrets = self._secrets(job)
        if not isinstance(secrets, JobSecrets):
            reason = getattr(secrets, "reason", None) or getattr(secrets, "message", "")
            raise RuntimeError(f"fresh artifact credentials could not be fetched: {reason}")
        return secrets.credentials

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

    def _context(self, job: Job, action: Action,
                 call: Call) -> JobContext | RetryLater | Rejected:
        secrets = self._secrets(job)
        if not isinstance(secrets, JobSecrets):
            return secrets
        inputs, outputs = artifacts_of(job.pipeline)
        artifacts = None
        if inputs or outputs:
            artifacts = JobArtifacts(
                job_id=job.job_id, execution_id=job.execution_id, inputs=inputs,
                outputs=outputs, encryption_key=encryption_key_of(job.pipeline),
                credentials=secrets.credentials, renew=lambda: self._renewed(job),
                ledger=self.ledger, s3=self.s3, clock=self.clock, worker=self.worker)
        return JobContext(
            job_id=job.job_id,
            execution_id=job.execution_id,
            pipeline=job.pipeline,
            configuration=secrets.configuration,
            run=job.run,
            details=RunDetails.from_json(job.details),
            attempt=job.attempt,
            resumed=call.resumed,
            clock=self.clock,
            artifact_credentials=secrets.credentials,
            input_artifacts=inputs,
            output_artifacts=outputs,
            deadline=call.deadline,
            intended_at=job.intended_at,
            artifacts=artifacts,
        )
