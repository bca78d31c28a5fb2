"""Executions and jobs as data: their states, what they remember, and how they look on the wire
(JobData) and to a test (the admin views).

The lifecycle that moves them lives in codepipeline.py; this module holds no clock and no lock.
"""

from __future__ import annotations

import copy
import random
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from engine.devtools.emulator._cp_action_types import ActionType

_ARTIFACT_NAME = re.compile(r"[a-zA-Z0-9_\-]{1,100}")
_B64 = string.ascii_letters + string.digits + "+/"


class JobStatus(str, Enum):
    """AWS's JobStatus values, plus Abandoned: an emulator-only state for the jobs of an
    execution stopped with abandon, which AcknowledgeJob reports as Failed (the closest value)."""

    CREATED = "Created"
    QUEUED = "Queued"
    DISPATCHED = "Dispatched"
    IN_PROGRESS = "InProgress"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    TIMED_OUT = "TimedOut"
    ABANDONED = "Abandoned"


TERMINAL = frozenset(
    {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.TIMED_OUT, JobStatus.ABANDONED}
)


class ExecutionStatus(str, Enum):
    """A subset of PipelineExecutionStatus: an execution here is one run of one custom action."""

    IN_PROGRESS = "InProgress"
    STOPPING = "Stopping"
    STOPPED = "Stopped"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


@dataclass
class Execution:
    id: str
    action_execution_id: str
    action_type: ActionType
    pipeline_name: str
    stage: str
    action: str
    configuration: dict[str, str]
    input_artifacts: list[dict[str, Any]]
    output_artifacts: list[dict[str, Any]]
    encryption_key: str | None
    started_at: float
    status: ExecutionStatus = ExecutionStatus.IN_PROGRESS
    job_ids: list[str] = field(default_factory=list)
    ended_at: float | None = None
    stop_reason: str | None = None
    abandoned: bool = False
    execution_details: dict[str, Any] | None = None
    failure_details: dict[str, Any] | None = None
    output_variables: dict[str, str] | None = None

    @property
    def finished(self) -> bool:
        return self.status in (
            ExecutionStatus.STOPPED,
            ExecutionStatus.SUCCEEDED,
            ExecutionStatus.FAILED,
        )


@dataclass
class Job:
    id: str
    execution: Execution
    created_at: float
    available_at: float
    continuation_token: str | None
    status: JobStatus
    nonce: str | None = None
    past_nonces: list[str] = field(default_factory=list)
    dispatch_count: int = 0
    dispatched_at: float | None = None
    acknowledged_at: float | None = None
    completed_at: float | None = None
    status_reason: str = ""
    issued_credentials: list[dict[str, str]] = field(default_factory=list)
    credentials_expire_at: dict[str, float] = field(default_factory=dict)
    """When each set in issued_credentials stops working, by access key id."""
    results: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Grant:
    """What one set of artifact credentials may do, as the artifact store (_cp_s3) checks it:
    CodePipeline scopes them to the job's artifact paths (PROTOCOL A3, [UG-TS])."""

    job_id: str
    pipeline_execution_id: str
    secret_access_key: str
    session_token: str
    expires_at: float
    readable: frozenset[str]
    """Object keys of the input artifacts (GetObject, HeadObject)."""
    writable: frozenset[str]
    """Object keys of the output artifacts (PutObject and the multipart calls)."""
    encryption_key: str | None


class CredentialIssuer:
    """Issues each job's artifact credentials and remembers them, so the artifact store can
    tell whose they are and whether they still work.

    Every set lasts `ttl` seconds from its issue (PROTOCOL A3: the lifetime is NOT FOUND in
    AWS's docs; the AWS-authored Jenkins plugin says 15 minutes, hence 900 by default).
    """

    def __init__(self, rng: random.Random, ttl: float) -> None:
        self._rng = rng
        self.ttl = ttl
        self._by_key: dict[str, Job] = {}

    def issue(self, job: Job, now: float) -> dict[str, str]:
        credentials = _issue_credentials(job, self._rng)
        job.credentials_expire_at[credentials["accessKeyId"]] = now + self.ttl
        self._by_key[credentials["accessKeyId"]] = job
        return credentials

    def expire(self, now: float, job: Job | None = None) -> int:
        """Make every set issued so far (to `job` only, if given) stop working now; returns
        how many sets were still valid."""
        jobs = [job] if job is not None else list({id(j): j for j in self._by_key.values()}
                                                   .values())
        count = 0
        for each in jobs:
            for key, expires_at in each.credentials_expire_at.items():
                if expires_at > now:
                    count += 1
                    each.credentials_expire_at[key] = now
        return count

    def grant(self, access_key_id: str) -> Grant | None:
        """What the set with this key id may do; None when no job was ever given it."""
        job = self._by_key.get(access_key_id)
        if job is None:
            return None
        issued = next(c for c in job.issued_credentials if c["accessKeyId"] == access_key_id)
        execution = job.execution
        return Grant(
            job_id=job.id,
            pipeline_execution_id=execution.id,
            secret_access_key=issued["secretAccessKey"],
            session_token=issued["sessionToken"],
            expires_at=job.credentials_expire_at[access_key_id],
            readable=frozenset(object_key(a) for a in execution.input_artifacts),
            writable=frozenset(object_key(a) for a in execution.output_artifacts),
            encryption_key=execution.encryption_key,
        )


def object_key(artifact: Mapping[str, Any]) -> str:
    """Where an artifact lives in the artifact bucket."""
    return str(artifact["location"]["s3Location"]["objectKey"])


def job_data(job: Job, *, account_id: str, region: str, issuer: CredentialIssuer,
             now: float) -> dict[str, Any]:
    """JobData as AWS sends it: secrets in plain text and artifact credentials fresh per call."""
    execution = job.execution
    data: dict[str, Any] = {
        "actionTypeId": execution.action_type.type_id,
        "actionConfiguration": {"configuration": dict(execution.configuration)},
        "pipelineContext": {
            "pipelineName": execution.pipeline_name,
            "stage": {"name": execution.stage},
            "action": {
                "name": execution.action,
                "actionExecutionId": execution.action_execution_id,
            },
            "pipelineArn": f"arn:aws:codepipeline:{region}:{account_id}:{execution.pipeline_name}",
            "pipelineExecutionId": execution.id,
        },
        "inputArtifacts": copy.deepcopy(execution.input_artifacts),
        "outputArtifacts": copy.deepcopy(execution.output_artifacts),
        "artifactCredentials": issuer.issue(job, now),
    }
    if job.continuation_token is not None:
        data["continuationToken"] = job.continuation_token
    if execution.encryption_key is not None:
        data["encryptionKey"] = {"id": execution.encryption_key, "type": "KMS"}
    return data


def _issue_credentials(job: Job, rng: random.Random) -> dict[str, str]:
    """STS-looking keys, random per call and long enough never to occur by chance, so the
    worker's tests can grep a database or a log for them and prove they were not kept."""
    credentials = {
        "accessKeyId": "ASIA"
        + "".join(rng.choice(string.ascii_uppercase + "234567") for _ in range(16)),
        "secretAccessKey": "".join(rng.choice(_B64) for _ in range(40)),
        "sessionToken": "IQoJb3JpZ2luX2Vj" + "".join(rng.choice(_B64) for _ in range(340)),
    }
    job.issued_credentials.append(dict(credentials))
    return credentials


def artifacts(
    given: int | Sequence[str | Mapping[str, str]],
    limits: Mapping[str, int],
    *,
    side: str,
    pipeline: str,
    bucket: str,
    rng: random.Random,
    revision: str | None = None,
) -> list[dict[str, Any]]:
    """Input or output artifacts for a new execution, within the action type's counts.

    Inputs carry a revision (PROTOCOL A3: what the source action produced; a 40-hex commit id
    unless `revision`, or the artifact's own {"name", "revision"}, gives one); outputs only a
    location, as AWS sends them. Object keys are shortened the way CodePipeline shortens them
    for its credential policies.
    """
    revisions: dict[str, str] = {}
    if isinstance(given, int):
        prefix = "SourceArtifact" if side == "input" else "OutputArtifact"
        names = [prefix if i == 0 else f"{prefix}{i + 1}" for i in range(given)]
    else:
        names = []
        for item in given:
            if isinstance(item, str):
                names.append(item)
                continue
            if side != "input" or not isinstance(item, Mapping) or set(item) - {"name",
                                                                                 "revision"}:
                raise ValueError(f"an {side} artifact is a name"
                                 + (' or {"name", "revision"}' if side == "input" else "")
                                 + f", not {item!r}")
            name = item.get("name")
            if not isinstance(name, str):
                raise ValueError(f"an input artifact needs a name: {dict(item)!r}")
            names.append(name)
            if item.get("revision") is not None:
                revisions[name] = item["revision"]
    if revision is not None:
        if side != "input":
            raise ValueError("only input artifacts carry a revision")
        for name in names:
            revisions.setdefault(name, revision)
    for name, value in revisions.items():
        # model Revision: 1-1500 characters (PROTOCOL A3)
        if not isinstance(value, str) or not 1 <= len(value) <= 1500:
            raise ValueError(f"the revision of input artifact {name} must be 1-1500 "
                             f"characters, not {value!r}")
    low, high = limits["minimumCount"], limits["maximumCount"]
    if not low <= len(names) <= high:
        raise ValueError(f"the action type takes {low}-{high} {side} artifacts, not {len(names)}")
    if any(not _ARTIFACT_NAME.fullmatch(n) for n in names) or len(set(names)) != len(names):
        raise ValueError(f"{side} artifact names must be unique and match [a-zA-Z0-9_-]+: {names}")
    out = []
    for name in names:
        suffix = "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(7))
        artifact: dict[str, Any] = {
            "name": name,
            "location": {
                "type": "S3",
                "s3Location": {
                    "bucketName": bucket,
                    "objectKey": f"{pipeline[:20]}/{name[:20]}/{suffix}",
                },
            },
        }
        if side == "input":
            drawn = f"{rng.getrandbits(160):040x}"  # drawn always: seeded ids do not shift
            artifact["revision"] = revisions.get(name, drawn)
        out.append(artifact)
    return out


def job_view(job: Job, forgotten_at: float | None = None) -> dict[str, Any]:
    """A job for tests and the admin API. It shows the nonce, the configuration and every set
    of artifact credentials issued, on purpose: a worker's tests need them to assert that the
    worker used the right nonce and kept no secret. Never log it."""
    execution = job.execution
    return {
        "id": job.id,
        "status": job.status.value,
        "statusReason": job.status_reason,
        "actionTypeId": execution.action_type.type_id,
        "pipelineName": execution.pipeline_name,
        "pipelineExecutionId": execution.id,
        "actionExecutionId": execution.action_execution_id,
        "continuationToken": job.continuation_token,
        "nonce": job.nonce,
        "dispatchCount": job.dispatch_count,
        "createdAt": job.created_at,
        "availableAt": job.available_at,
        "dispatchedAt": job.dispatched_at,
        "acknowledgedAt": job.acknowledged_at,
        "completedAt": job.completed_at,
        "forgottenAt": forgotten_at,
        "inputArtifacts": copy.deepcopy(execution.input_artifacts),
        "configuration": dict(execution.configuration),
        "artifactCredentials": copy.deepcopy(job.issued_credentials),
        "results": copy.deepcopy(job.results),
    }


def execution_view(execution: Execution,
                   uploads: Mapping[str, dict[str, Any] | None] | None = None) -> dict[str, Any]:
    """An execution for tests and the admin API. `uploads`: what reached each output
    artifact's location, by artifact name (the artifact store's record; None: nothing)."""
    outputs = []
    for artifact in execution.output_artifacts:
        shown = copy.deepcopy(artifact)
        shown["upload"] = copy.deepcopy((uploads or {}).get(artifact["name"]))
        outputs.append(shown)
    return {
        "id": execution.id,
        "actionExecutionId": execution.action_execution_id,
        "status": execution.status.value,
        "jobIds": list(execution.job_ids),
        "actionTypeId": execution.action_type.type_id,
        "pipelineName": execution.pipeline_name,
        "stage": execution.stage,
        "action": execution.action,
        "inputArtifacts": copy.deepcopy(execution.input_artifacts),
        "outputArtifacts": outputs,
        "encryptionKey": execution.encryption_key,
        "startedAt": execution.started_at,
        "endedAt": execution.ended_at,
        "stopReason": execution.stop_reason,
        "abandoned": execution.abandoned,
        "executionDetails": copy.deepcopy(execution.execution_details),
        "failureDetails": copy.deepcopy(execution.failure_details),
        "outputVariables": copy.deepcopy(execution.output_variables),
    }
