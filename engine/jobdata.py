"""Reading CodePipeline's JobData defensively: what a polled job holds, or why it cannot be read.

The one module that knows JobData's shape: configuration (with its secrets split off by the
caller), artifact credentials, the pipeline context and artifacts, and continuation tokens
(written and read here). Intake records what it reads; effects reads the artifacts back.

The API promises strings, but a worker must not trust a single job to keep that promise: one
job with a configuration value that is a list, or a pipeline context that is not an object,
must become a readable problem on that job, never an exception that sinks the poll batch
(issue 8). Every reader here returns a value of the type it names, and what it had to leave
out is said in words an operator can act on.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from numbers import Real
from typing import Any

from engine import limits
from engine.action import ArtifactCredentials
from engine.outcomes import JSON

TOKEN_VERSION = 1
"""The continuation token's format; a token of another version is not ours."""

NOT_TEXT = "(not text)"
"""Stands in, in the recorded configuration, for a value that is not a string."""


def mapping(value: Any) -> Mapping[str, Any]:
    """`value` if it is a JSON object, else an empty one (the caller says what is missing)."""
    return value if isinstance(value, Mapping) else {}


def text(value: Any) -> str | None:
    """`value` if it is a non-empty string every database can store, else None."""
    return value if isinstance(value, str) and value and storable(value) else None


def storable(value: str) -> bool:
    """Whether every database takes `value` as text: UTF-8 (no lone surrogate, which JSON may
    carry as an escape), no NUL (PostgreSQL refuses it)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in value


def _kind(value: Any) -> str:
    return {list: "a list", dict: "an object", bool: "a boolean", int: "a number",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def configuration_of(data: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str], list[str]]:
    """The job's action configuration: (as given, the text values only, problems).

    A property whose value is not a string is left out of the text values and named in a
    problem (never with its value: it may be a secret).
    """
    given = (mapping(data.get("actionConfiguration"))).get("configuration")
    if given is None:
        return {}, {}, []
    if not isinstance(given, Mapping):
        return {}, {}, [f"the job's actionConfiguration.configuration is {_kind(given)}, not an "
                        "object of property names to values"]
    configuration = {str(k): v for k, v in given.items()}
    texts = {k: v for k, v in configuration.items() if isinstance(v, str)}
    wrong = sorted(k for k in configuration if k not in texts)
    problems = [f"the property {name} is {_kind(configuration[name])}, not text. Fix: set it to "
                "a plain string value in the pipeline's action configuration"
                for name in wrong]
    return configuration, texts, problems


def credentials_of(data: Mapping[str, Any]) -> ArtifactCredentials | None:
    """The job's artifact credentials, or None when there are none or they are not three
    strings (an action that needs them then fails on their absence, with its own message)."""
    creds = data.get("artifactCredentials")
    if not isinstance(creds, Mapping):
        return None
    key_id, secret, session = (creds.get(k) for k in ("accessKeyId", "secretAccessKey",
                                                       "sessionToken"))
    if not (isinstance(key_id, str) and isinstance(secret, str) and isinstance(session, str)):
        return None
    return ArtifactCredentials(key_id, secret, session)


def recorded_configuration(configuration: Mapping[str, Any], secret_names: frozenset[str],
                           redacted: str) -> dict[str, str]:
    """The configuration as the log may keep it: secrets redacted, non-text values marked."""
    return {k: (redacted if k in secret_names else v if isinstance(v, str) else NOT_TEXT)
            for k, v in configuration.items()}


def encode_token(job_id: str, run: Mapping[str, JSON], details: Mapping[str, JSON] | None,
                 run_started_at: float | None, *, short: bool = False) -> str:
    """The continuation token: enough to resume the run even where the log is not at hand.

    It carries the action's run data (ids, never secrets) so a continuation job can pick up the
    external run from the token alone; past CodePipeline's limit (engine.limits), or when
    `short`, only the job id is kept (the continuation reads the run from the log).
    """
    short_token = json.dumps({"v": TOKEN_VERSION, "job": job_id}, separators=(",", ":"))
    if short:
        return short_token
    payload = {"v": TOKEN_VERSION, "job": job_id, "run": dict(run), "details": details,
               "started": run_started_at}
    token = json.dumps(payload, separators=(",", ":"), sort_keys=True)
    return token if limits.CONTINUATION_TOKEN.fits(token) else short_token


def decode_token(token: str) -> dict[str, Any] | None:
    """The token's payload, or None when it is not one of ours (another worker's format)."""
    try:
        payload = json.loads(token)
    except ValueError:
        return None
    if not isinstance(payload, dict) or payload.get("v") != TOKEN_VERSION or "job" not in payload:
        return None
    return payload


@dataclass
class TokenRead:
    """What a continuation token says about the run its job resumes."""

    data: dict[str, JSON] = field(default_factory=dict)
    """Event data: continuation_token, continues, and the run, its details and start if the
    token carries them."""
    problem: str | None = None
    shortened: str | None = None
    """The token was cut to this job id: the run is read from that job's row."""


def read_token(token: Any) -> TokenRead:
    """A polled job's continuationToken, read; never raises."""
    read = TokenRead()
    if not isinstance(token, str) or text(token) is None:
        read.problem = ("its continuationToken is not text a database can store, so it was not "
                        "written by cpworker")
        return read
    read.data["continuation_token"] = token
    payload = decode_token(token)
    if payload is None:
        read.problem = ("the continuation token was not written by cpworker, so the external "
                        "run it refers to cannot be found")
        return read
    continues = text(payload.get("job"))
    if continues is None:
        read.problem = "the continuation token names no job to continue"
        return read
    read.data["continues"] = continues
    if "run" not in payload:
        # Past CodePipeline's token limit the token keeps only the job id: the run is read
        # from the job it continues, in this database.
        read.shortened = continues
        return read
    run, details, started = payload.get("run"), payload.get("details"), payload.get("started")
    if not isinstance(run, Mapping) or not isinstance(details, (Mapping, type(None))) or (
        started is not None and (isinstance(started, bool) or not isinstance(started, Real))
    ):
        read.problem = ("the continuation token's run data is not the shape cpworker writes "
                        "(run an object, details an object, started a time)")
        return read
    read.data["run"] = dict(run)
    read.data["details"] = None if details is None else dict(details)
    read.data["run_started_at"] = None if started is None else float(started)
    return read


def pipeline_of(raw: Mapping[str, Any], data: Mapping[str, Any],
                configuration: Mapping[str, str]) -> tuple[str | None, dict[str, JSON]]:
    """A polled job's action execution id (None: missing) and its pipeline context as the log
    keeps it: names, ids, `configuration` (as recorded_configuration made it) and artifacts."""
    context = mapping(data.get("pipelineContext"))
    action = mapping(context.get("action"))
    return text(action.get("actionExecutionId")), {
        "account_id": text(raw.get("accountId")),
        "pipeline_name": text(context.get("pipelineName")),
        "stage": text(mapping(context.get("stage")).get("name")),
        "action_name": text(action.get("name")),
        "pipeline_execution_id": text(context.get("pipelineExecutionId")),
        "pipeline_arn": text(context.get("pipelineArn")),
        "configuration": dict(configuration),
        "artifacts": artifacts_read(data),
    }


def artifacts_read(data: Mapping[str, Any]) -> dict[str, JSON]:
    """The job's input and output artifacts as the log keeps them (names, revisions, S3
    locations, the KMS key uploads must name; never credentials). The key id is no secret:
    CodePipeline shows it in the pipeline's structure."""
    read: dict[str, JSON] = {"input": _artifacts(data.get("inputArtifacts")),
                             "output": _artifacts(data.get("outputArtifacts"))}
    key = mapping(data.get("encryptionKey"))
    if text(key.get("id")) is not None:
        read["encryption_key"] = {"id": text(key.get("id")), "type": text(key.get("type"))}
    return read


def encryption_key_of(pipeline: Mapping[str, JSON]) -> str | None:
    """The KMS key id uploads must name (the job's encryptionKey), from the recorded pipeline
    context; None: the artifact store's default key (PROTOCOL A3)."""
    key = mapping(mapping(pipeline.get("artifacts")).get("encryption_key"))
    return text(key.get("id"))


def artifacts_of(pipeline: Mapping[str, JSON]) -> tuple[tuple[Mapping[str, JSON], ...],
                                                        tuple[Mapping[str, JSON], ...]]:
    """(input, output) artifacts from a job's recorded pipeline context (artifacts_read)."""
    recorded = mapping(pipeline.get("artifacts"))
    return (tuple(_listed(recorded.get("input"))), tuple(_listed(recorded.get("output"))))


def _listed(value: Any) -> list[Mapping[str, JSON]]:
    return [mapping(item) for item in value] if isinstance(value, list) else []


def _artifacts(artifacts: Any) -> list[JSON]:
    if not isinstance(artifacts, list):
        return []
    return [_artifact(mapping(a)) for a in artifacts]


def _artifact(artifact: Mapping[str, Any]) -> dict[str, JSON]:
    location = mapping(mapping(artifact.get("location")).get("s3Location"))
    return {"name": text(artifact.get("name")), "revision": text(artifact.get("revision")),
            "bucket": text(location.get("bucketName")), "key": text(location.get("objectKey"))}
