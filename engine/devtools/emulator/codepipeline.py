"""An emulator of the CodePipeline custom-action job API, for boto3 and the AWS CLI over HTTP.

It speaks AWS JSON 1.1 on `POST /` (SigV4 required, errors as `{"__type", "message"}`), holds
custom action types, pipeline executions and their jobs in memory, and plays the job lifecycle
of PROTOCOL.md part A: Queued -> Dispatched (nonce) -> InProgress -> Succeeded/Failed/TimedOut,
re-dispatch of unacknowledged jobs with a new nonce, continuation jobs, per-job timeouts and
"stop and abandon". Time only moves through the injected Clock and every deadline is evaluated
lazily at the next call, so a FakeClock drives a day of CodePipeline time in a test.

Where AWS documents nothing (PROTOCOL.md marks it NOT FOUND) the emulator picks the strict reading
and makes the timing a constructor argument; the choices are listed in CodePipelineEmulator.
"""

from __future__ import annotations

import copy
import hmac
import logging
import random
import re
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from engine.clock import Clock, SystemClock
from engine.devtools.emulator import _cp_admin, _cp_model, _cp_s3, _sigv4
from engine.devtools.emulator._aws_json import (
    ACCEPTED_CONTENT_TYPES,
    AwsError,
    error_response,
    new_request_id,
    ok_response,
)
from engine.devtools.emulator._cp_action_types import (
    ActionTypeRegistry,
    checked_configuration,
    parse_type,
)
from engine.devtools.emulator._cp_events import EventPublisher
from engine.devtools.emulator._cp_jobs import (
    TERMINAL,
    CredentialIssuer,
    Execution,
    ExecutionStatus,
    Grant,
    Job,
    JobStatus,
    artifacts,
    execution_view,
    job_data,
    job_view,
)
from engine.devtools.emulator._cp_refusals import Refusals
from engine.devtools.emulator._http import Faults, Request, Response, real_sleep

log = logging.getLogger(__name__)

OUTPUT_VARIABLES_LIMIT = 122_880
"""Bytes of output variables (keys plus values) one action may set [UG-LIM]."""
_NAME = re.compile(r"[A-Za-z0-9.@\-_]{1,100}")


class _AnswerLost(Exception):
    """The call was carried out (or refused) as usual; its answer never reaches the client."""


class CodePipelineEmulator:
    """The CodePipeline job API as a custom-action worker sees it, plus an admin side that
    plays CodePipeline itself (start and stop executions, inspect jobs, inject faults).

    AWS side (`POST /`, SigV4): CreateCustomActionType, ListActionTypes, DeleteCustomActionType,
    PollForJobs, AcknowledgeJob, GetJobDetails, PutJobSuccessResult, PutJobFailureResult. Every
    request body is validated against botocore's model before anything else looks at it.

    S3 side (any other path without X-Amz-Target, path-style `/<bucket>/<key>`, on this same
    port): the artifact store (_cp_s3), when moto is installed (`pip install
    'cpworker[emulator]'`) or `s3_endpoint` names an S3 to put behind it; otherwise artifacts
    are locations only and S3 calls answer 501. Input artifacts are stored at their locations
    (a zip naming the revision, or `input_content`); a worker reads them and writes its outputs
    with the job's artifactCredentials (boto3: endpoint_url=<this URL>, path-style, s3v4),
    which reach only that job's artifacts and last `credentials_ttl` seconds (900: PROTOCOL A3
    finds no documented lifetime, the Jenkins plugin says 15 minutes). Uploads need
    SSE-KMS, as the artifact bucket's policy demands; each execution's view shows what reached
    its outputs (`outputArtifacts[].upload`: size, eTag, versionId, kmsKeyId, kmsKeyMatches,
    puts, multipartUploads, jobIds). `artifact_store.kms_key_id` is a KMS key made in moto,
    for start_execution(encryption_key=...); `artifact_store.moto_url` the moto server.

    Admin HTTP side (no SigV4, no faults; bodies and answers are JSON; snake_case keys mirror the
    Python methods; bad input answers 400 {"error": "..."}, unknown ids 404):

    - `GET  /_emulator/health` -> {"status": "ok", "service": "codepipeline", ...}
    - `POST /_emulator/executions` {"action_type": "Test/Custom/Travis/1" or {...},
      "configuration": {...}, "pipeline_name", "stage", "action", "input_artifacts" (a count,
      names, or {"name", "revision"} objects), "output_artifacts", "encryption_key",
      "revision", "input_content": {"ArtifactName": "<base64>"}} -> 201 start_execution()'s
      answer
    - `GET  /_emulator/executions`, `GET /_emulator/executions/{id}`
    - `POST /_emulator/executions/{id}/stop` {"abandon": true, "reason": "..."} -> the execution
    - `GET  /_emulator/jobs[?status=Queued]` -> {"jobs": [...]}, `GET /_emulator/jobs/{id}`
    - `GET  /_emulator/action-types` -> {"actionTypes": [...]} (deleted ones included, flagged)
    - `GET  /_emulator/calls` -> {"calls": {"PollForJobs": 3, ...}, "faults": {"throttle": 1,
      "error": 0, "lost": 2, "refused": 0}} (faults injected, calls refused by outages)
    - `GET|POST /_emulator/faults` {"throttle_rate", "error_rate", "lost_rate", "latency",
      "outage", "seed"} (see Faults; "outage": "unreachable" resets every connection,
      "unavailable" answers 503 ServiceUnavailableException, false ends it)
    - `POST /_emulator/executions/{id}/tamper` {"configuration": {...}}: see tamper()
    - `GET|POST /_emulator/refusals` {"operation", "code", "message", "times"}: see refuse()
    - `POST /_emulator/clock/advance` {"seconds": 60} (only with a clock that has advance())
    - `GET|POST /_emulator/events` {"queue_url": URL or null, "delay", "loss_rate",
      "duplicate_rate", "abandoned_state"}: the action events published to an SQS queue, as
      EventBridge would (see _cp_events; `events_queue_url` and `event_*` in the constructor)
    - `POST /_emulator/credentials/expire` {"job_id": optional} -> {"expired": n}: see
      expire_credentials()
    - `GET  /_emulator/artifact-store` -> {"enabled", "bucket", "kmsKeyId", "motoUrl", ...}
    - `GET  /_emulator/executions/{id}/artifacts/{name}` -> the artifact's bytes
    - `POST /_emulator/reset`

    Choices where AWS documents nothing (PROTOCOL.md part A, "NOT FOUND"):

    - An unacknowledged dispatch lapses after `ack_timeout`: the job goes back to the queue, its
      nonce stops working at once, and the next poll hands it out with a new nonce, same job id.
    - A continuation job is Created at once and Queued `continuation_delay` seconds later.
    - `job_timeout` runs per job from its creation (a continuation job gets a fresh 24 h).
    - AcknowledgeJob with the current nonce of a job that already finished answers its status
      instead of an error, so a worker sees "not InProgress" and stops.
    - A completed job (succeeded, failed, timed out, abandoned) is forgotten `job_retention`
      seconds after it completed: every call naming it then answers JobNotFoundException, as
      AWS's example says completed jobs are removed "after a short period" [NET-EX; PROTOCOL A2
      "Job retention", A5]. How short is NOT FOUND: an hour by default; None keeps them. The
      admin views keep every job, forgotten ones flagged with `forgottenAt`.
    - PollForJobs' maxBatchSize has a minimum of 1 and no maximum in the model, and AWS
      documents none: by default none is enforced; `max_batch_size` sets one, above which a
      poll is refused with ValidationException in Coral's words.
    - The model's string lengths are counted in `length_unit`: "utf16" (UTF-16 code units, as a
      Java service's String.length() counts) by default, "code_points" (Smithy's definition of
      a string's length) or "utf8" (bytes, the strictest reading) to test a worker against the
      others (engine.limits explains the worker's side).
    - Output variables are measured as the UTF-8 bytes of their keys and values against the
      122,880-byte quota [UG-LIM]; the worker measures more (engine.limits).
    - A request body shorter than its Content-Length is refused with 400
      SerializationException, the error Coral gives a body it cannot deserialize (observed:
      `{"__type": "com.amazon.coral.service#SerializationException"}`, aws-sdk-unity issue
      54), before authentication, and the connection is closed (RFC 9112 section 6.3; _http).
    """

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        ack_timeout: float = 30.0,
        continuation_delay: float = 30.0,
        job_timeout: float = 86400.0,
        account_id: str = "111111111111",
        region: str = "us-east-1",
        credentials: tuple[str, str] | None = None,
        seed: int = 0,
        job_retention: float | None = 3600.0,
        max_batch_size: int | None = None,
        length_unit: str = "utf16",
        events_queue_url: str | None = None,
        event_delay: float = 0.0,
        event_loss_rate: float = 0.0,
        event_duplicate_rate: float = 0.0,
        credentials_ttl: float = 900.0,
        s3_endpoint: str | None = None,
    ) -> None:
        if not re.fullmatch(r"[0-9]{12}", account_id):
            raise ValueError(
                f"account_id must be 12 digits, as AWS account ids are, not {account_id!r}"
            )
        for name, value in (
            ("ack_timeout", ack_timeout),
            ("continuation_delay", continuation_delay),
            ("job_timeout", job_timeout),
            ("job_retention", job_retention or 0.0),
            ("credentials_ttl", credentials_ttl),
        ):
            if value < 0:
                raise ValueError(f"{name} must be >= 0 seconds, not {value}")
        if max_batch_size is not None and max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1 (the model's minimum) or None, not "
                             f"{max_batch_size}")
        if length_unit not in _cp_model.LENGTH_UNITS:
            raise ValueError(f"length_unit must be one of {sorted(_cp_model.LENGTH_UNITS)}, "
                             f"not {length_unit!r}")
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.ack_timeout = ack_timeout
        self.continuation_delay = continuation_delay
        self.job_timeout = job_timeout
        self.job_retention = job_retention
        self.max_batch_size = max_batch_size
        self.length_unit = length_unit
        self.account_id = account_id
        self.region = region
        self.credentials = credentials
        self.seed = seed
        self.faults = Faults(seed)
        self.events = EventPublisher(
            clock=self.clock, account_id=account_id, region=region, seed=seed,
            queue_url=events_queue_url, delay=event_delay, loss_rate=event_loss_rate,
            duplicate_rate=event_duplicate_rate)
        self._lock = threading.RLock()
        self.credentials_ttl = credentials_ttl
        self.artifact_store: _cp_s3.ArtifactStore | None = None
        """S3 behind the artifact locations (see _cp_s3); None without moto and s3_endpoint."""
        if s3_endpoint is not None or _cp_s3.moto_installed():
            self.artifact_store = _cp_s3.ArtifactStore(
                bucket=f"codepipeline-{region}-{account_id}", region=region,
                account_id=account_id, clock=self.clock, grants=self._grant,
                s3_endpoint=s3_endpoint)
        self._handlers: dict[str, Callable[[dict[str, Any]], dict[str, Any] | None]] = {
            "CreateCustomActionType": lambda body: self._types.create(body),
            "ListActionTypes": lambda body: self._types.list_types(body),
            "DeleteCustomActionType": lambda body: self._types.delete(body),
            "PollForJobs": self._poll_for_jobs,
            "AcknowledgeJob": self._acknowledge_job,
            "GetJobDetails": self._get_job_details,
            "PutJobSuccessResult": self._put_job_success_result,
            "PutJobFailureResult": self._put_job_failure_result,
        }
        self._clear()

    def _clear(self) -> None:
        self._rng = random.Random(self.seed)
        self._types = ActionTypeRegistry(self.account_id, self.region)
        self._executions: dict[str, Execution] = {}
        self._jobs: dict[str, Job] = {}
        self._calls: Counter[str] = Counter()
        self.refusals = Refusals()
        self._issuer = CredentialIssuer(self._rng, self.credentials_ttl)

    # ----------------------------------------------------------------- HTTP entry point

    def incomplete_body(self, request: Request) -> Response:
        """A body shorter than its Content-Length (see the class docstring; _http calls this)."""
        return error_response(AwsError(
            "SerializationException",
            f"The request body ended after {len(request.body)} of the {request.declared_length} "
            "bytes its Content-Length announced; it cannot be deserialized"), new_request_id())

    def __call__(self, request: Request) -> Response:
        if request.path == "/_emulator" or request.path.startswith("/_emulator/"):
            return _cp_admin.handle(self, request)
        if request.path.strip("/") and not request.header("x-amz-target"):
            return _cp_s3.serve(self.artifact_store, request)  # S3, path-style: /bucket/key
        request_id = new_request_id()
        outage = self.faults.in_outage()
        if outage == "unavailable":
            # What AWS's front end answers while the service behind it is down; botocore and the
            # SDKs classify it as transient.
            return error_response(AwsError(
                "ServiceUnavailableException", "Service Unavailable. Please try again later.",
                503), request_id)
        if outage is not None:
            return Response.dropped()
        try:
            return ok_response(self._serve(request), request_id)
        except _AnswerLost:
            return Response.dropped()
        except AwsError as error:
            return error_response(error, request_id)
        except Exception:  # a bug here must still reach the client as an AWS-shaped 500
            log.exception("CodePipeline emulator failed on %s", request.header("x-amz-target"))
            bug = AwsError("InternalFailure", "emulator bug; see the emulator's log", 500)
            return error_response(bug, request_id)

    def _serve(self, request: Request) -> dict[str, Any] | None:
        """AWS's order: route, authenticate, throttle, validate, act. A call refused at any step
        after routing still counts, and a refused result call is still recorded on its job."""
        operation = self._operation(request)
        with self._lock:
            self._calls[operation] += 1
        _sigv4.verify(
            request,
            service=_cp_model.SERVICE_NAME,
            region=self.region,
            credentials=self.credentials,
        )
        body = self._parse_body(request)
        fault = self.faults.draw()
        real_sleep(self.faults.latency)  # outside the lock: a slow call does not stall the others
        with self._lock:
            try:
                refusal = self._fault_error(fault)
                if refusal is not None:
                    raise refusal
                _cp_model.validate_input(operation, body, self.length_unit)
                self.refusals.check(operation)
                payload = self._handlers[operation](body)
            except AwsError as error:
                self._record_result(operation, body, error.code)
                if fault == "lost":
                    raise _AnswerLost from error
                raise
            self._record_result(operation, body, None)
        if fault == "lost":
            # Done and recorded (a result call counts as accepted): only the answer goes missing.
            raise _AnswerLost
        return payload

    @staticmethod
    def _fault_error(fault: str | None) -> AwsError | None:
        """The refusal a drawn fault stands for; None when the call is to be carried out."""
        if fault == "throttle":
            return AwsError("ThrottlingException", "Rate exceeded")
        if fault == "error":
            return AwsError(
                "InternalFailure",
                "The request processing has failed because of an unknown error, exception or "
                "failure.",
                500,
            )
        return None

    def _operation(self, request: Request) -> str:
        usage = (
            f"AWS JSON calls are POST / with X-Amz-Target: {_cp_model.target_prefix()}.<Operation> "
            "and Content-Type: application/x-amz-json-1.1"
        )
        if request.method != "POST" or request.path != "/":
            raise AwsError(
                "UnknownOperationException",
                f"No operation at {request.method} {request.path}; {usage}",
            )
        content_type = request.header("content-type").split(";")[0].strip().lower()
        if content_type not in ACCEPTED_CONTENT_TYPES:
            raise AwsError(
                "UnknownOperationException", f"Unsupported Content-Type {content_type!r}; {usage}"
            )
        prefix, _, name = request.header("x-amz-target").partition(".")
        if prefix != _cp_model.target_prefix() or _cp_model.operation_model(name) is None:
            raise AwsError(
                "UnknownOperationException", f"Unknown operation {name or prefix!r}; {usage}"
            )
        if name not in self._handlers:
            raise AwsError(
                "UnknownOperationException",
                f"{name} is a CodePipeline operation this emulator does not implement; it "
                f"implements {', '.join(self._handlers)}",
            )
        return name

    @staticmethod
    def _parse_body(request: Request) -> Any:
        try:
            return request.json()
        except (ValueError, UnicodeDecodeError) as error:
            raise AwsError(
                "SerializationException", f"The request body is not JSON: {error}"
            ) from None

    def _record_result(self, operation: str, body: Any, error: str | None) -> None:
        """Keep every result call a job received, refused ones too, so a test of the worker can
        assert what it reported and how often it retried. Called with the lock held."""
        if operation not in ("PutJobSuccessResult", "PutJobFailureResult"):
            return
        if not isinstance(body, dict) or not isinstance(body.get("jobId"), str):
            return
        job = self._jobs.get(body["jobId"])
        if job is not None:
            job.results.append(
                {
                    "operation": operation,
                    "at": self.clock.now(),
                    "accepted": error is None,
                    "error": error,
                    "request": copy.deepcopy(body),
                }
            )

    # ----------------------------------------------------------------- lifecycle

    def _tick(self) -> float:
        """Apply every deadline that has passed: nothing runs in the background."""
        now = self.clock.now()
        for job in self._jobs.values():
            if job.status in TERMINAL:
                continue
            deadline = job.created_at + self.job_timeout
            if now >= deadline:
                job.status = JobStatus.TIMED_OUT
                job.completed_at = deadline
                job.status_reason = f"no result within job_timeout ({self.job_timeout:g} s)"
                self._finish(job.execution, ExecutionStatus.FAILED, deadline)
                log.info("job %s timed out", job.id)
            elif job.status is JobStatus.CREATED and now >= job.available_at:
                job.status = JobStatus.QUEUED
            elif (
                job.status is JobStatus.DISPATCHED
                and job.dispatched_at is not None
                and now >= job.dispatched_at + self.ack_timeout
            ):
                job.status = JobStatus.QUEUED
                if job.nonce is not None:
                    job.past_nonces.append(job.nonce)
                job.nonce = None
                log.info(
                    "job %s not acknowledged within %g s; back in the queue",
                    job.id,
                    self.ack_timeout,
                )
        return now

    def _finish(self, execution: Execution, status: ExecutionStatus, at: float) -> None:
        if execution.finished:
            return
        self.events.action_changed(execution, status.value.upper(), at)  # SUCCEEDED, FAILED
        # "Stop and wait" lets the running action end, and the execution then reads Stopped.
        execution.status = (
            ExecutionStatus.STOPPED if execution.status is ExecutionStatus.STOPPING else status
        )
        execution.ended_at = at

    def _new_job(self, execution: Execution, now: float, delay: float, token: str | None) -> Job:
        job = Job(
            id=self._uuid(),
            execution=execution,
            created_at=now,
            available_at=now + delay,
            continuation_token=token,
            status=JobStatus.QUEUED if delay <= 0 else JobStatus.CREATED,
        )
        self._jobs[job.id] = job
        execution.job_ids.append(job.id)
        return job

    def _job(self, job_id: str) -> Job:
        job = self._jobs.get(job_id)
        forgotten = None if job is None else self._forgotten_at(job)
        if job is None or (forgotten is not None and self.clock.now() >= forgotten):
            kept = ("forgets a completed job after its retention of "
                    f"{self.job_retention:g} s" if self.job_retention is not None
                    else "keeps completed jobs until reset")
            raise AwsError(
                "JobNotFoundException",
                f"Job {job_id} not found in account {self.account_id}; job ids come from "
                f"PollForJobs (this emulator {kept})",
            )
        return job

    def _forgotten_at(self, job: Job) -> float | None:
        """When CodePipeline forgets the job (see job_retention); None: not yet planned."""
        if self.job_retention is None or job.status not in TERMINAL or job.completed_at is None:
            return None
        return job.completed_at + self.job_retention

    def _require_in_progress(self, job: Job, operation: str) -> None:
        if job.status is JobStatus.IN_PROGRESS:
            return
        why = {
            JobStatus.CREATED: "it is a continuation job not yet queued; poll and acknowledge it",
            JobStatus.QUEUED: "it has not been acknowledged; poll, then AcknowledgeJob first",
            JobStatus.DISPATCHED: "it was polled but not acknowledged; call AcknowledgeJob first",
            JobStatus.SUCCEEDED: "it already has a result, and a job takes exactly one",
            JobStatus.FAILED: "it already has a result, and a job takes exactly one",
        }.get(job.status, job.status_reason)
        raise AwsError(
            "InvalidJobStateException",
            f"{operation} refused: job {job.id} is {job.status.value}, not InProgress: {why}",
        )

    # ----------------------------------------------------------------- jobs

    def _poll_for_jobs(self, body: dict[str, Any]) -> dict[str, Any]:
        type_id = body["actionTypeId"]
        if type_id["owner"] != "Custom":
            raise AwsError(
                "ValidationException",
                f"ActionType with owner '{type_id['owner']}' is not supported",
            )
        action_type = self._types.find(type_id["category"], type_id["provider"], type_id["version"])
        query = body.get("queryParam") or {}
        queryable = action_type.queryable
        name = action_type.name
        if queryable is None and query:
            raise AwsError(
                "ValidationException",
                f"Action type {name} has no queryable property; poll without queryParam",
            )
        if queryable is not None and queryable not in query:
            raise AwsError(
                "ValidationException",
                f"Action type {name} has the queryable property {queryable!r}; PollForJobs "
                f"must send queryParam {{{queryable!r}: <value>}}, got {sorted(query)}",
            )
        now = self._tick()
        wanted = query.get(queryable) if queryable else None
        queued = [
            job
            for job in self._jobs.values()
            if job.status is JobStatus.QUEUED
            and job.execution.action_type is action_type
            and (wanted is None or job.execution.configuration.get(queryable or "") == wanted)
        ]
        queued.sort(key=lambda job: job.available_at)
        batch = body.get("maxBatchSize", 1)
        if self.max_batch_size is not None and batch > self.max_batch_size:
            raise _cp_model.validation_error([_cp_model.constraint_error(
                batch, "maxBatchSize",
                f"Member must have value less than or equal to {self.max_batch_size}")])
        handed_out = []
        for job in queued[:batch]:
            job.status = JobStatus.DISPATCHED
            job.nonce = f"{self._rng.getrandbits(128):032x}"
            job.dispatch_count += 1
            job.dispatched_at = now
            log.info("job %s dispatched (dispatch %d)", job.id, job.dispatch_count)
            handed_out.append(
                {
                    "id": job.id,
                    "nonce": job.nonce,
                    "accountId": self.account_id,
                    "data": job_data(job, account_id=self.account_id, region=self.region,
                                     issuer=self._issuer, now=now),
                }
            )
        return {"jobs": handed_out}

    def _acknowledge_job(self, body: dict[str, Any]) -> dict[str, Any]:
        job = self._job(body["jobId"])
        self._tick()
        nonce = body["nonce"]
        if job.nonce is None or not hmac.compare_digest(nonce.encode(), job.nonce.encode()):
            if nonce in job.past_nonces:
                reason = (
                    f"it is from an earlier dispatch of job {job.id}, which was not acknowledged "
                    f"within {self.ack_timeout:g} s and went back to the queue; poll again for "
                    "a new nonce"
                )
            elif job.nonce is None:
                hint = "" if job.status in TERMINAL else "; poll for it"
                reason = f"job {job.id} is {job.status.value} and holds no nonce{hint}"
            else:
                reason = f"it is not the nonce PollForJobs returned with job {job.id}"
            raise AwsError("InvalidNonceException", f"Invalid nonce '{nonce}': {reason}")
        if job.status is JobStatus.DISPATCHED:
            job.status = JobStatus.IN_PROGRESS
            job.acknowledged_at = self.clock.now()
            log.info("job %s acknowledged", job.id)
        wire = JobStatus.FAILED if job.status is JobStatus.ABANDONED else job.status
        return {"status": wire.value}

    def _get_job_details(self, body: dict[str, Any]) -> dict[str, Any]:
        job = self._job(body["jobId"])
        self._tick()
        return {
            "jobDetails": {
                "id": job.id,
                "accountId": self.account_id,
                "data": job_data(job, account_id=self.account_id, region=self.region,
                                 issuer=self._issuer, now=self.clock.now()),
            }
        }

    def _put_job_success_result(self, body: dict[str, Any]) -> None:
        token = body.get("continuationToken")
        variables: dict[str, str] | None = body.get("outputVariables")
        if variables is not None and token is not None:
            raise AwsError(
                "ValidationException",
                "outputVariables cannot be used with continuationToken: send output variables "
                f"only with the final PutJobSuccessResult (job {body['jobId']})",
            )
        job = self._job(body["jobId"])
        now = self._tick()
        self._require_in_progress(job, "PutJobSuccessResult")
        size = sum(len(k.encode()) + len(v.encode()) for k, v in (variables or {}).items())
        if size > OUTPUT_VARIABLES_LIMIT:
            raise AwsError(
                "OutputVariablesSizeExceededException",
                f"Output variables of job {job.id} take {size} bytes; all output variables of "
                f"an action together may take at most {OUTPUT_VARIABLES_LIMIT} bytes",
            )
        job.status = JobStatus.SUCCEEDED
        job.completed_at = now
        execution = job.execution
        if body.get("executionDetails") is not None:
            execution.execution_details = copy.deepcopy(body["executionDetails"])
        if token is not None:
            follow = self._new_job(execution, now, self.continuation_delay, token)
            log.info("job %s succeeded with a continuation; job %s follows", job.id, follow.id)
            return
        execution.output_variables = dict(variables or {})
        self._finish(execution, ExecutionStatus.SUCCEEDED, now)
        log.info("job %s succeeded; execution %s %s", job.id, execution.id, execution.status.value)

    def _put_job_failure_result(self, body: dict[str, Any]) -> None:
        job = self._job(body["jobId"])
        now = self._tick()
        self._require_in_progress(job, "PutJobFailureResult")
        job.status = JobStatus.FAILED
        job.completed_at = now
        job.execution.failure_details = copy.deepcopy(body["failureDetails"])
        self._finish(job.execution, ExecutionStatus.FAILED, now)
        log.info("job %s failed (%s)", job.id, body["failureDetails"]["type"])

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    # ----------------------------------------------------------------- admin Python API

    def start_execution(
        self,
        action_type: str | Mapping[str, str],
        configuration: Mapping[str, str],
        *,
        pipeline_name: str = "pipeline",
        stage: str = "Test",
        action: str = "Travis",
        input_artifacts: int | Sequence[str | Mapping[str, str]] = 1,
        output_artifacts: int | Sequence[str] = 0,
        encryption_key: str | None = None,
        revision: str | None = None,
        input_content: Mapping[str, bytes] | None = None,
    ) -> dict[str, str]:
        """Play a pipeline reaching the custom action: one new execution with one queued job.

        `action_type` is "Category/Owner/Provider/Version" or an ActionTypeId mapping; the type
        must exist (CreateCustomActionType) and `configuration` must fit its properties, as the
        pipeline editor would insist. Artifacts are given as a count or as names; input
        artifacts also as {"name", "revision"} objects. Each input artifact carries the
        revision its source action produced (a commit id: 40 hex digits unless `revision` or
        its own "revision" says otherwise), as CodePipeline sends it (PROTOCOL A3).
        Each input artifact is put in the artifact store (when there is one) at its location:
        `input_content` gives its bytes by artifact name (stored as given, normally a zip),
        otherwise a small zip holding README.md and revision.txt (_cp_s3.default_input).
        Returns {"pipelineExecutionId", "actionExecutionId", "jobId"}.
        """
        category, provider, version = parse_type(action_type)
        with self._lock:
            now = self._tick()
            try:
                found = self._types.find(category, provider, version)
            except AwsError as error:
                raise ValueError(error.message) from None
            config = checked_configuration(found, configuration)
            for label, value in (
                ("pipeline_name", pipeline_name),
                ("stage", stage),
                ("action", action),
            ):
                if not _NAME.fullmatch(value):
                    raise ValueError(
                        f"{label} {value!r} must be 1-100 characters of [A-Za-z0-9.@_-]"
                    )
            if encryption_key is not None and not 1 <= len(encryption_key) <= 400:
                raise ValueError("encryption_key must be a KMS key id or ARN of 1-400 characters")
            definition = found.definition
            bucket = f"codepipeline-{self.region}-{self.account_id}"
            inputs = artifacts(
                input_artifacts,
                definition["inputArtifactDetails"],
                side="input",
                pipeline=pipeline_name,
                bucket=bucket,
                rng=self._rng,
                revision=revision,
            )
            outputs = artifacts(
                output_artifacts,
                definition["outputArtifactDetails"],
                side="output",
                pipeline=pipeline_name,
                bucket=bucket,
                rng=self._rng,
            )
            _cp_s3.stage_inputs(self.artifact_store, inputs, input_content, pipeline_name)
            execution = Execution(
                id=self._uuid(),
                action_execution_id=self._uuid(),
                action_type=found,
                pipeline_name=pipeline_name,
                stage=stage,
                action=action,
                configuration=config,
                input_artifacts=inputs,
                output_artifacts=outputs,
                encryption_key=encryption_key,
                started_at=now,
            )
            self._executions[execution.id] = execution
            job = self._new_job(execution, now, 0.0, None)
            self.events.action_changed(execution, "STARTED", now)
            log.info("execution %s started; job %s queued", execution.id, job.id)
            return {
                "pipelineExecutionId": execution.id,
                "actionExecutionId": execution.action_execution_id,
                "jobId": job.id,
            }

    def stop_execution(
        self, pipeline_execution_id: str, abandon: bool = True, reason: str = ""
    ) -> None:
        """Stop an execution as the console does. With abandon its unfinished jobs are dropped:
        queued ones are never handed out again and a worker's later result for the running one
        gets InvalidJobStateException (the worker is not told otherwise, as in AWS). Without
        abandon ("stop and wait") the running action may finish and the execution ends Stopped."""
        with self._lock:
            now = self._tick()
            execution = self._executions.get(pipeline_execution_id)
            if execution is None:
                raise KeyError(f"no pipeline execution {pipeline_execution_id!r}")
            if execution.finished or (execution.status is ExecutionStatus.STOPPING and not abandon):
                raise ValueError(
                    f"execution {pipeline_execution_id} is already {execution.status.value}; "
                    "only a running execution can be stopped (abandon may follow a stop-and-wait)"
                )
            execution.stop_reason = reason
            if not abandon:
                execution.status = ExecutionStatus.STOPPING
                return
            for job_id in execution.job_ids:
                job = self._jobs[job_id]
                if job.status not in TERMINAL:
                    job.status = JobStatus.ABANDONED
                    job.completed_at = now
                    job.status_reason = (
                        f"its pipeline execution {execution.id} was stopped and abandoned"
                        + (f" ({reason})" if reason else "")
                    )
            execution.abandoned = True
            self.events.abandoned(execution, now)
            execution.status = ExecutionStatus.STOPPED
            execution.ended_at = now
            log.info("execution %s stopped and abandoned", execution.id)

    def tamper(self, pipeline_execution_id: str, configuration: Mapping[str, Any]) -> None:
        """Overwrite configuration values of an execution with anything JSON holds (a number,
        null, an object), past the checks the pipeline editor makes: job data CodePipeline would
        never send, for a test that a worker survives a job it cannot read. Every job of the
        execution handed out from now on carries it."""
        with self._lock:
            execution = self._executions.get(pipeline_execution_id)
            if execution is None:
                raise KeyError(f"no pipeline execution {pipeline_execution_id!r}")
            execution.configuration.update(copy.deepcopy(dict(configuration)))

    def refuse(self, operation: str, code: str | None = "ValidationException",
               message: str | None = None, times: int | None = None) -> None:
        """Refuse every call of `operation` (the next `times` only, if given) with `code`,
        once it passed the model's validation (see _cp_refusals); `code` None lifts it."""
        if operation not in self._handlers:
            raise ValueError(f"unknown operation {operation!r}; known: {sorted(self._handlers)}")
        self.refusals.set(operation, code,
                          message or f"{operation} refused by the emulator's refuse()", times)

    def jobs(self, status: str | None = None) -> list[dict[str, Any]]:
        """Every job in creation order, optionally only those in one JobStatus (or Abandoned)."""
        known = [s.value for s in JobStatus]
        if status is not None and status not in known:
            raise ValueError(f"unknown job status {status!r}; known: {known}")
        with self._lock:
            self._tick()
            return [
                job_view(job, self._forgotten_at(job))
                for job in self._jobs.values()
                if status is None or job.status.value == status
            ]

    def job(self, job_id: str) -> dict[str, Any]:
        """One job, including every nonce-free detail a test may want to assert on."""
        with self._lock:
            self._tick()
            job = self._jobs.get(job_id)
            if job is None:
                raise KeyError(f"no job {job_id!r}")
            return job_view(job, self._forgotten_at(job))

    def executions(self) -> list[dict[str, Any]]:
        """Every execution in start order: how the pipeline side ended, whatever the worker
        believes (status, abandoned, final outputVariables, last executionDetails)."""
        with self._lock:
            self._tick()
            return [execution_view(e, self._uploads(e)) for e in self._executions.values()]

    def execution(self, pipeline_execution_id: str) -> dict[str, Any]:
        """One execution as executions() shows it; KeyError names an unknown id."""
        with self._lock:
            self._tick()
            execution = self._executions.get(pipeline_execution_id)
            if execution is None:
                raise KeyError(f"no pipeline execution {pipeline_execution_id!r}")
            return execution_view(execution, self._uploads(execution))

    def action_types(self) -> list[dict[str, Any]]:
        """Every custom type ever created, deleted ones flagged: ListActionTypes hides those."""
        with self._lock:
            return self._types.describe_all()

    def call_counts(self) -> dict[str, int]:
        """AWS calls received per operation, whatever their outcome (faults and refusals too)."""
        with self._lock:
            return dict(self._calls)

    def reset(self) -> None:
        """Forget everything and restart the seeded sequences, faults included; the clock stays."""
        with self._lock:
            self._clear()
            self.faults.clear(self.seed)
            self.events.reset(self.seed)
            if self.artifact_store is not None:
                self.artifact_store.reset()

    # ----------------------------------------------------------------- artifacts (see _cp_s3)

    def expire_credentials(self, job_id: str | None = None) -> int:
        """Make every set of artifact credentials issued so far (to one job, if given) expire
        now, as if their lifetime had run out; returns how many sets were still valid."""
        with self._lock:
            job = None if job_id is None else self._jobs.get(job_id)
            if job_id is not None and job is None:
                raise KeyError(f"no job {job_id!r}")
            return self._issuer.expire(self.clock.now(), job)

    def uploads(self, pipeline_execution_id: str) -> dict[str, dict[str, Any] | None]:
        """What reached each output artifact's location, by artifact name (None: nothing)."""
        outputs = self.execution(pipeline_execution_id)["outputArtifacts"]
        return {a["name"]: a["upload"] for a in outputs}

    def artifact_bytes(self, pipeline_execution_id: str, name: str) -> bytes:
        """The bytes stored at an input or output artifact's location (KeyError if none)."""
        with self._lock:
            execution = self._executions.get(pipeline_execution_id)
            if execution is None:
                raise KeyError(f"no pipeline execution {pipeline_execution_id!r}")
            found = [a for a in execution.input_artifacts + execution.output_artifacts
                     if a["name"] == name]
        if not found:
            raise KeyError(f"execution {pipeline_execution_id} has no artifact {name!r}")
        if self.artifact_store is None:
            raise KeyError(f"no artifact store keeps artifacts: {_cp_s3.INSTALL_HINT}")
        return self.artifact_store.read(found[0]["location"]["s3Location"]["objectKey"])

    def close(self) -> None:
        """Stop what the emulator started besides its HTTP handler (the artifact store's S3,
        the events' sender)."""
        self.events.close()
        if self.artifact_store is not None:
            self.artifact_store.close()

    def _grant(self, access_key_id: str) -> Grant | None:
        with self._lock:
            return self._issuer.grant(access_key_id)

    def _uploads(self, execution: Execution) -> dict[str, dict[str, Any] | None]:
        return _cp_s3.uploads_of(self.artifact_store, execution.output_artifacts)
