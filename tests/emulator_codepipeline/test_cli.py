"""Clients that find the emulator only through AWS_ENDPOINT_URL_CODEPIPELINE: the AWS CLI as a
subprocess, and boto3 without an endpoint_url argument. This is how an operator points an
unmodified worker or script at the emulator."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest

from engine.devtools.emulator._http import EmulatorServer
from engine.devtools.emulator.codepipeline import CodePipelineEmulator
from tests.emulator_codepipeline.conftest import CONFIG, TOKEN, TRAVIS, TRAVIS_ID

if TYPE_CHECKING:
    from mypy_boto3_codepipeline import CodePipelineClient

TYPE_ARGUMENT = "category=Test,owner=Custom,provider=Travis,version=1"


def find_aws() -> str | None:
    """The CLI installed next to this interpreter first, so the venv's is the one tested."""
    beside = os.path.join(os.path.dirname(sys.executable), "aws")
    return beside if os.access(beside, os.X_OK) else shutil.which("aws")


@pytest.fixture
def aws(server: EmulatorServer, tmp_path: Path) -> Any:
    executable = find_aws()
    if executable is None:
        pytest.skip("the AWS CLI is not installed (pip install awscli)")
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "AWS_ENDPOINT_URL_CODEPIPELINE": server.url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    }

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [executable, "codepipeline", *args],
            env=env, capture_output=True, text=True, timeout=60, check=False,
        )

    return run


@pytest.mark.slow
def test_the_aws_cli_polls_and_acknowledges_a_job(
    aws: Any, emulator: CodePipelineEmulator, travis_type: dict[str, Any]
) -> None:
    started = emulator.start_execution(TRAVIS, CONFIG)
    polled = aws("poll-for-jobs", "--action-type-id", TYPE_ARGUMENT, "--max-batch-size", "1")
    assert polled.returncode == 0, polled.stderr
    [job] = json.loads(polled.stdout)["jobs"]
    assert job["id"] == started["jobId"]
    assert job["data"]["actionConfiguration"]["configuration"]["ApiToken"] == TOKEN

    wrong = aws("acknowledge-job", "--job-id", job["id"], "--nonce", "not-the-nonce")
    assert wrong.returncode != 0
    assert "InvalidNonceException" in wrong.stderr

    acked = aws("acknowledge-job", "--job-id", job["id"], "--nonce", job["nonce"])
    assert acked.returncode == 0, acked.stderr
    assert json.loads(acked.stdout) == {"status": "InProgress"}
    assert emulator.job(job["id"])["status"] == "InProgress"


@pytest.mark.slow
def test_the_aws_cli_reports_a_failure(
    aws: Any, emulator: CodePipelineEmulator, travis_type: dict[str, Any]
) -> None:
    emulator.start_execution(TRAVIS, CONFIG)
    [job] = json.loads(aws("poll-for-jobs", "--action-type-id", TYPE_ARGUMENT).stdout)["jobs"]
    assert aws("acknowledge-job", "--job-id", job["id"], "--nonce", job["nonce"]).returncode == 0
    failed = aws(
        "put-job-failure-result", "--job-id", job["id"],
        "--failure-details", "type=JobFailed,message=build 42 failed",
    )
    assert failed.returncode == 0, failed.stderr
    assert emulator.executions()[0]["failureDetails"] == {
        "type": "JobFailed", "message": "build 42 failed",
    }


def test_boto3_finds_the_emulator_through_the_environment_alone(
    server: EmulatorServer,
    emulator: CodePipelineEmulator,
    travis_type: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_CODEPIPELINE", server.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    started = emulator.start_execution(TRAVIS, CONFIG)
    client: CodePipelineClient = boto3.session.Session().client("codepipeline")
    assert client.meta.endpoint_url == server.url
    [job] = client.poll_for_jobs(actionTypeId=TRAVIS_ID)["jobs"]
    assert job["id"] == started["jobId"]
