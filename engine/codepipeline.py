"""The CodePipeline job API as the engine uses it: calls in, outcomes out, limits respected.

botocore's own retries are turned off: a retry is the machine's decision, recorded in the
history, not a sleep hidden in a worker thread.

A report's error is sorted as CodePipeline documents it (PROTOCOL A1, A4; the model lists
ValidationException, JobNotFoundException, InvalidJobStateException and, for a success,
OutputVariablesSizeExceededException):

- throttling, 5xx, 429 and lost connections: transient, RetryLater (retried by time);
- the caller's credentials or permissions refused (AWS's common errors): RetryLater too, until
  the job timeout: nothing in the report can change that, but someone fixing the IAM policy can;
- InvalidJobStateException, JobNotFoundException: CodePipeline no longer wants a result
  (Rejected);
- anything else, ValidationException and OutputVariablesSizeExceededException first: this
  report is refused for good, and sending it again cannot help. It is answered as
  Failed(ConfigurationError, what was refused), and the machine sends less (engine.decide).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    ReadTimeoutError,
)

from engine import limits, metrics
from engine.outcomes import (
    JSON,
    Acknowledged,
    Failed,
    FailureType,
    Refused,
    Rejected,
    Reported,
    RetryLater,
    RunDetails,
)

if TYPE_CHECKING:
    from mypy_boto3_codepipeline import CodePipelineClient

_TRANSIENT = {
    "ThrottlingException", "Throttling", "ThrottledException", "RequestLimitExceeded",
    "InternalFailure", "InternalServerError", "ServiceUnavailable", "ServiceUnavailableException",
    "RequestTimeout", "RequestTimeoutException", "ConcurrentModificationException",
}
_CALLER_REFUSED = {
    "AccessDeniedException", "AccessDenied", "UnrecognizedClientException",
    "InvalidClientTokenId", "InvalidSignatureException", "SignatureDoesNotMatch",
    "IncompleteSignature", "MissingAuthenticationToken", "ExpiredToken", "ExpiredTokenException",
    "RequestExpired", "NotAuthorized", "OptInRequired",
}
"""AWS's common errors about the caller, not the request [CE]: a changed report cannot fix them."""


def make_client(endpoint_url: str | None = None, region: str | None = None,
                user_agent: str = "cpworker",
                credentials: tuple[str, str] | None = None) -> CodePipelineClient:
    """A boto3 client with timeouts and no hidden retries (AWS_ENDPOINT_URL_CODEPIPELINE works).

    `credentials` (key id, secret) is for the emulators; elsewhere the AWS SDK's own chain
    (environment, profile, instance role) is the right source.
    """
    config = Config(
        retries={"total_max_attempts": 1, "mode": "standard"},
        connect_timeout=5,
        read_timeout=30,
        user_agent_extra=user_agent,
    )
    key_id, secret = credentials if credentials else (None, None)
    return boto3.client("codepipeline", endpoint_url=endpoint_url, region_name=region,
                        config=config, aws_access_key_id=key_id, aws_secret_access_key=secret)


def execution_details(details: RunDetails | Mapping[str, JSON] | None) -> dict[str, Any] | None:
    """executionDetails as the API takes them, within its limits (a no-op on details the machine
    fitted already, engine.decide; a guard for any other caller)."""
    if details is None:
        return None
    if isinstance(details, RunDetails):
        details = details.to_json()
    fitted, _ = limits.fit_details(details)
    found = RunDetails.from_json(fitted)
    if found is None:
        return None
    out: dict[str, Any] = {}
    if found.summary:
        out["summary"] = found.summary
    if found.external_id:
        out["externalExecutionId"] = str(found.external_id)
    if found.percent is not None:
        out["percentComplete"] = found.percent
    return out or None


def output_variables(variables: Mapping[str, str]) -> dict[str, str]:
    """Valid keys only, within CodePipeline's quota (engine.limits.fit_output_variables)."""
    return limits.fit_output_variables(variables)[0]


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _message(error: ClientError) -> str:
    err = error.response.get("Error", {})
    return f"{err.get('Code', 'error')}: {err.get('Message', '')}".strip()


def _transient(error: Exception) -> RetryLater | None:
    if isinstance(error, ClientError):
        code = _code(error)
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code in _TRANSIENT or status >= 500 or status == 429:
            return RetryLater(f"CodePipeline answered {_message(error)}")
        if code in _CALLER_REFUSED:
            return RetryLater(f"CodePipeline refused this worker's credentials or permissions "
                              f"({_message(error)}); retried until the job times out, in case "
                              "the IAM policy is fixed meanwhile (see README, Running against "
                              "real AWS)")
        return None
    if isinstance(error, BotoCoreError):
        return RetryLater(f"cannot reach CodePipeline: {error}")
    return None


def explain(error: BaseException) -> str:
    """A failed call to CodePipeline as one line for an operator: what happened, and the fix
    that fits this error (not a generic one)."""
    if isinstance(error, NoCredentialsError):
        return ("no AWS credentials were found. Fix: set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or run with an instance or task role")
    if isinstance(error, NoRegionError):
        return "no AWS region is set. Fix: pass --region or set AWS_DEFAULT_REGION"
    if isinstance(error, (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError)):
        return (f"CodePipeline cannot be reached ({error}). Fix: check --endpoint-url (or "
                "AWS_ENDPOINT_URL_CODEPIPELINE), the network and any proxy")
    if isinstance(error, ClientError):
        code = _code(error)
        if code in _CALLER_REFUSED:
            return (f"CodePipeline refused this worker's credentials or permissions "
                    f"({_message(error)}). Fix: check the keys, and that the IAM policy allows "
                    "codepipeline:PollForJobs and the other job calls (README, Running against "
                    "real AWS)")
        if code in _TRANSIENT:
            return f"CodePipeline answered {_message(error)}; retried with backoff"
        return f"CodePipeline refused the call ({_message(error)})"
    if isinstance(error, BotoCoreError):
        return f"the call to CodePipeline failed ({error})"
    return f"{type(error).__name__}: {error}"


def retry_of(error: ClientError | BotoCoreError, call: str) -> RetryLater:
    """A failed call that is not a report, as a retry: transient (throttling, 5xx, a lost
    connection, credentials refused) is retried by time; anything else CodePipeline refused is
    a refusal that will not change, so its retries are also bounded by the attempts."""
    transient = _transient(error)
    if transient is not None:
        return RetryLater(f"{call}: {transient.reason}")
    assert isinstance(error, ClientError)
    return RetryLater(f"{call} refused: {_message(error)}", transient=False)


class CodePipeline:
    """The five calls a job worker makes, each turned into an outcome for the machine."""

    def __init__(self, client: CodePipelineClient) -> None:
        self.client = client
        # Every call counted by operation and outcome (engine.metrics), retries and all.
        events = client.meta.events
        events.register("after-call.codepipeline", metrics.boto_call_counter("codepipeline"),
                        unique_id="cpworker-calls")
        events.register("after-call-error.codepipeline",
                        metrics.boto_error_counter("codepipeline"), unique_id="cpworker-errors")

    def poll(self, type_id: Mapping[str, str], max_batch: int,
             query: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        """Raises ClientError/BotoCoreError: the poller backs off on its own."""
        kwargs: dict[str, Any] = {"actionTypeId": dict(type_id), "maxBatchSize": max_batch}
        if query:
            kwargs["queryParam"] = dict(query)
        response = self.client.poll_for_jobs(**kwargs)
        jobs = [dict(job) for job in response.get("jobs", [])]
        metrics.POLL_BATCH.observe(len(jobs))
        return jobs

    def acknowledge(self, job_id: str, nonce: str | None) -> Acknowledged | Refused | RetryLater:
        if not nonce:
            return Refused("no nonce was recorded for this job")
        try:
            status = self.client.acknowledge_job(jobId=job_id, nonce=nonce).get("status")
        except ClientError as error:
            code = _code(error)
            if code == "InvalidNonceException":
                return Refused("another worker holds the job (InvalidNonceException: the nonce "
                               "was replaced by a later dispatch)")
            if code == "JobNotFoundException":
                return Refused("CodePipeline no longer knows the job (JobNotFoundException)")
            return retry_of(error, "AcknowledgeJob")
        except BotoCoreError as error:
            return RetryLater(f"cannot reach CodePipeline: {error}")
        if status == "InProgress":
            return Acknowledged()
        return Refused(f"AcknowledgeJob answered status {status}, not InProgress")

    def job_details(self, job_id: str) -> dict[str, Any]:
        """GetJobDetails' data (with secrets). Raises ClientError/BotoCoreError."""
        response = self.client.get_job_details(jobId=job_id)
        return dict(response["jobDetails"].get("data", {}))

    def report_progress(self, job_id: str, token: str,
                        details: Mapping[str, JSON] | None,
                        maybe_landed: bool) -> Reported | Rejected | RetryLater | Failed:
        kwargs: dict[str, Any] = {"jobId": job_id,
                                  "continuationToken": limits.CONTINUATION_TOKEN.fit(token)}
        shown = execution_details(details)
        if shown:
            kwargs["executionDetails"] = shown
        return self._put(self.client.put_job_success_result, "progress report", kwargs,
                         maybe_landed)

    def report_success(self, job_id: str, details: Mapping[str, JSON] | None,
                       variables: Mapping[str, str],
                       maybe_landed: bool) -> Reported | Rejected | RetryLater | Failed:
        kwargs: dict[str, Any] = {"jobId": job_id}
        shown = execution_details(details)
        if shown:
            kwargs["executionDetails"] = shown
        outputs = output_variables(variables)
        if outputs:
            kwargs["outputVariables"] = outputs
        return self._put(self.client.put_job_success_result, "success report", kwargs,
                         maybe_landed)

    def report_failure(self, job_id: str, failure_type: str, message: str,
                       external_id: str | None,
                       maybe_landed: bool) -> Reported | Rejected | RetryLater | Failed:
        try:
            kind = FailureType(failure_type).value
        except ValueError:
            kind = FailureType.JOB_FAILED.value
        failure: dict[str, Any] = {"type": kind,
                                   "message": limits.FAILURE_MESSAGE.fit(message or "failed")}
        if external_id:
            failure["externalExecutionId"] = limits.EXTERNAL_ID.fit(external_id)
        return self._put(self.client.put_job_failure_result, "failure report",
                         {"jobId": job_id, "failureDetails": failure}, maybe_landed)

    @staticmethod
    def _put(call: Any, what: str, kwargs: dict[str, Any],
             maybe_landed: bool) -> Reported | Rejected | RetryLater | Failed:
        try:
            call(**kwargs)
        except ClientError as error:
            code = _code(error)
            if code == "InvalidJobStateException":
                if maybe_landed:
                    # An earlier attempt (before a crash, or one whose answer was lost) may have
                    # landed, and nothing in the API tells that apart from a job stopped in the
                    # meantime (PROTOCOL A1, D5). Counted as landed, and said so in the history.
                    return Reported("CodePipeline answered InvalidJobStateException to a report "
                                    "an earlier attempt may already have made; counted as "
                                    "delivered (if the execution was stopped meanwhile, "
                                    "CodePipeline has no result from this worker)")
                return Rejected("CodePipeline no longer wants a result for this job "
                                f"({_message(error)}): stopped, abandoned or timed out")
            if code == "JobNotFoundException":
                if maybe_landed:
                    # CodePipeline removes completed jobs after a while (PROTOCOL A2, A5): the
                    # earlier attempt may have completed it. As above, counted as delivered.
                    return Reported("CodePipeline no longer knows the job (JobNotFoundException) "
                                    "after an earlier attempt of this report may have landed and "
                                    "completed it; counted as delivered")
                return Rejected(f"CodePipeline no longer knows the job ({_message(error)})")
            transient = _transient(error)
            if transient is not None:
                return transient
            # Refused for good: the same report would be refused again (PROTOCOL A4).
            operation = error.operation_name or "the call"
            return Failed(FailureType.CONFIGURATION_ERROR,
                          f"{operation} ({what}) refused: {_message(error)}")
        except BotoCoreError as error:
            return RetryLater(f"cannot reach CodePipeline: {error}")
        return Reported()
