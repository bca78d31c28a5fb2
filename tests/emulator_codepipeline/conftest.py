"""A CodePipeline emulator on a loopback port, a fake clock, and real boto3 clients for it.

Every test goes through botocore's serializer, SigV4 signer and response parser over real HTTP,
so what passes here is what cpworker's boto3 calls will see. Clients make exactly one attempt:
botocore's retries would otherwise hide throttles and (in standard mode) LimitExceededException.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, cast

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from engine.clock import FakeClock
from engine.devtools.emulator import EmulatorServer
from engine.devtools.emulator.codepipeline import CodePipelineEmulator
from engine.devtools.testing import SharedServer

if TYPE_CHECKING:
    from mypy_boto3_codepipeline import CodePipelineClient
    from mypy_boto3_codepipeline.type_defs import (
        ActionConfigurationPropertyTypeDef,
        ActionTypeIdTypeDef,
        JobTypeDef,
    )

TRAVIS_ID: ActionTypeIdTypeDef = {
    "category": "Test",
    "owner": "Custom",
    "provider": "Travis",
    "version": "1",
}
TRAVIS = "Test/Custom/Travis/1"
TOKEN = "travis-secret-token-do-not-log"
CONFIG = {"Repository": "octo/app", "Branch": "main", "ApiToken": TOKEN}
TARGET = "CodePipeline_20150709."

Attach = Callable[[CodePipelineEmulator], EmulatorServer]


@pytest.fixture(autouse=True)
def _hermetic_aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No profile, config file or endpoint override of the machine running the tests leaks in."""
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_CODEPIPELINE",
                 "AWS_RETRY_MODE", "AWS_MAX_ATTEMPTS", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def emulator(clock: FakeClock) -> CodePipelineEmulator:
    return CodePipelineEmulator(clock=clock)


@pytest.fixture
def attach(shared_server: SharedServer) -> Iterator[Attach]:
    """Serve an emulator built by the test itself (other timeouts, credentials, seed) on the
    session's one server (stopping a server costs half a second per test)."""
    yield shared_server.plug
    shared_server.unplug()


@pytest.fixture
def server(emulator: CodePipelineEmulator, attach: Attach) -> EmulatorServer:
    """The loopback server, serving this test's emulator (and only during this test)."""
    return attach(emulator)


def make_client(
    url: str,
    *,
    validate: bool = True,
    key: tuple[str, str] = ("testing", "testing"),
    token: str | None = None,
    region: str = "us-east-1",
) -> CodePipelineClient:
    """One attempt per call; `validate=False` lets invalid input reach the server."""
    return boto3.client(
        "codepipeline",
        endpoint_url=url,
        region_name=region,
        aws_access_key_id=key[0],
        aws_secret_access_key=key[1],
        aws_session_token=token,
        config=Config(retries={"total_max_attempts": 1}, parameter_validation=validate),
    )


@pytest.fixture
def client(server: EmulatorServer) -> CodePipelineClient:
    return make_client(server.url)


@pytest.fixture
def raw_client(server: EmulatorServer) -> CodePipelineClient:
    """A client that skips botocore's own parameter validation, to prove the server's."""
    return make_client(server.url, validate=False)


def travis_properties(*, queryable: bool = False) -> list[dict[str, Any]]:
    return [
        {"name": "Repository", "required": True, "key": True, "secret": False,
         "queryable": queryable, "type": "String"},
        {"name": "Branch", "required": False, "key": False, "secret": False, "type": "String"},
        {"name": "ApiToken", "required": True, "key": False, "secret": True, "type": "String"},
    ]


def create_type(
    client: CodePipelineClient,
    *,
    provider: str = "Travis",
    version: str = "1",
    properties: list[dict[str, Any]] | None = None,
    inputs: tuple[int, int] = (0, 5),
    outputs: tuple[int, int] = (0, 5),
) -> dict[str, Any]:
    answer = client.create_custom_action_type(
        category="Test",
        provider=provider,
        version=version,
        settings={"executionUrlTemplate": "https://app.travis-ci.com/{ExternalExecutionId}"},
        configurationProperties=cast(
            "list[ActionConfigurationPropertyTypeDef]",
            properties if properties is not None else travis_properties(),
        ),
        inputArtifactDetails={"minimumCount": inputs[0], "maximumCount": inputs[1]},
        outputArtifactDetails={"minimumCount": outputs[0], "maximumCount": outputs[1]},
    )
    return dict(answer["actionType"])


@pytest.fixture
def travis_type(client: CodePipelineClient) -> dict[str, Any]:
    return create_type(client)


@pytest.fixture
def started(emulator: CodePipelineEmulator, travis_type: dict[str, Any]) -> dict[str, str]:
    """One execution of the Travis action, its job queued."""
    return emulator.start_execution(TRAVIS, CONFIG)


def poll(client: CodePipelineClient, batch: int = 1, **kwargs: Any) -> list[JobTypeDef]:
    return list(client.poll_for_jobs(actionTypeId=TRAVIS_ID, maxBatchSize=batch, **kwargs)["jobs"])


def claim(client: CodePipelineClient) -> JobTypeDef:
    """Poll one job and acknowledge it, as a worker does before it starts work."""
    jobs = poll(client)
    assert len(jobs) == 1, f"expected one job to claim, got {len(jobs)}"
    assert client.acknowledge_job(jobId=jobs[0]["id"], nonce=jobs[0]["nonce"])["status"] == (
        "InProgress"
    )
    return jobs[0]


def error_code(error: Exception) -> str:
    response: Mapping[str, Any] = getattr(error, "response", {})
    return str(response.get("Error", {}).get("Code"))


def http_status(error: Exception) -> int:
    response: Mapping[str, Any] = getattr(error, "response", {})
    return int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def raw_call(
    url: str,
    operation: str,
    body: bytes | Mapping[str, Any],
    *,
    sign: tuple[str, str] | None = ("testing", "testing"),
    headers: Mapping[str, str] | None = None,
    method: str = "POST",
    path: str = "/",
) -> tuple[int, dict[str, str], bytes]:
    """An AWS JSON call by hand, optionally SigV4-signed with botocore, for what boto3 will
    not send: unsigned requests, broken bodies, unknown targets, tampered payloads."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    sent = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": TARGET + operation}
    sent.update(headers or {})
    if sign is not None:
        aws_request = AWSRequest(method=method, url=url + path, data=data, headers=sent)
        SigV4Auth(Credentials(*sign), "codepipeline", "us-east-1").add_auth(aws_request)
        sent = {k: str(v) for k, v in aws_request.headers.items()}
    request = urllib.request.Request(url + path, data=data, headers=sent, method=method)
    return open_url(request)


def open_url(request: urllib.request.Request) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def admin(
    url: str, method: str, path: str, body: Any = None
) -> tuple[int, Any]:
    """A call to the emulator's admin routes; answers are JSON."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url + "/_emulator" + path, data=data, method=method,
        headers={"Content-Type": "application/json"},
    )
    status, _, raw = open_url(request)
    return status, json.loads(raw) if raw else None
