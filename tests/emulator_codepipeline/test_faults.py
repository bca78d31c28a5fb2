"""Seeded fault injection: throttles and 500s a worker must survive, the same ones every run."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from engine.clock import FakeClock
from engine.devtools.emulator._http import EmulatorServer
from engine.devtools.emulator.codepipeline import CodePipelineEmulator
from tests.emulator_codepipeline.conftest import TRAVIS_ID, claim, error_code, http_status

if TYPE_CHECKING:
    from mypy_boto3_codepipeline import CodePipelineClient


def outcomes(client: CodePipelineClient, calls: int) -> list[str]:
    """What each of `calls` sequential polls got: "ok" or the error code."""
    seen = []
    for _ in range(calls):
        try:
            client.poll_for_jobs(actionTypeId=TRAVIS_ID)
            seen.append("ok")
        except ClientError as error:
            seen.append(error_code(error))
    return seen


def test_a_throttle_is_a_plain_client_error_with_status_400(
    client: CodePipelineClient, emulator: CodePipelineEmulator, travis_type: dict[str, Any]
) -> None:
    emulator.faults.configure(throttle_rate=1.0)
    with pytest.raises(ClientError) as caught:
        client.poll_for_jobs(actionTypeId=TRAVIS_ID)
    assert type(caught.value) is ClientError  # not modelled by CodePipeline, as on AWS
    assert error_code(caught.value) == "ThrottlingException"
    assert http_status(caught.value) == 400


def test_an_injected_error_is_a_500_internal_failure(
    client: CodePipelineClient, emulator: CodePipelineEmulator, travis_type: dict[str, Any]
) -> None:
    emulator.faults.configure(error_rate=1.0)
    with pytest.raises(ClientError) as caught:
        client.poll_for_jobs(actionTypeId=TRAVIS_ID)
    assert error_code(caught.value) == "InternalFailure"
    assert http_status(caught.value) == 500


def test_the_same_seed_gives_the_same_faults(
    client: CodePipelineClient, emulator: CodePipelineEmulator, travis_type: dict[str, Any]
) -> None:
    emulator.faults.configure(throttle_rate=0.3, error_rate=0.2, seed=7)
    first = outcomes(client, 30)
    emulator.faults.configure(seed=7)
    second = outcomes(client, 30)
    emulator.faults.configure(seed=8)
    other = outcomes(client, 30)
    assert first == second
    assert {"ok", "ThrottlingException", "InternalFailure"} == set(first)
    assert other != first


def test_the_constructor_seed_seeds_the_faults(clock: FakeClock) -> None:
    sequences = []
    for _ in range(2):
        emulator = CodePipelineEmulator(clock=clock, seed=3)
        emulator.faults.configure(throttle_rate=0.5)
        sequences.append([emulator.faults.draw() for _ in range(20)])
    assert sequences[0] == sequences[1]
    assert None in sequences[0] and "throttle" in sequences[0]


def test_botocore_retries_a_throttle_away_when_allowed_to(
    server: EmulatorServer, emulator: CodePipelineEmulator, travis_type: dict[str, Any]
) -> None:
    """Why every other client here makes a single attempt (seed 1 throttles the first call)."""
    retrying = boto3.client(
        "codepipeline", endpoint_url=server.url, region_name="us-east-1",
        aws_access_key_id="testing", aws_secret_access_key="testing",
        config=Config(retries={"mode": "standard", "total_max_attempts": 10}),
    )
    emulator.faults.configure(throttle_rate=0.5, seed=1)
    answer = retrying.poll_for_jobs(actionTypeId=TRAVIS_ID)
    assert answer["jobs"] == []
    assert emulator.call_counts()["PollForJobs"] == 2


def test_latency_is_wall_time_and_leaves_the_fake_clock_alone(
    client: CodePipelineClient,
    emulator: CodePipelineEmulator,
    clock: FakeClock,
    travis_type: dict[str, Any],
) -> None:
    before = clock.now()
    emulator.faults.configure(latency=0.3)
    started = time.monotonic()
    client.poll_for_jobs(actionTypeId=TRAVIS_ID)
    assert time.monotonic() - started >= 0.3
    assert clock.now() == before


def test_a_faulted_result_is_recorded_and_changes_nothing(
    client: CodePipelineClient, emulator: CodePipelineEmulator, started: dict[str, str]
) -> None:
    job = claim(client)
    emulator.faults.configure(throttle_rate=1.0)
    with pytest.raises(ClientError):
        client.put_job_success_result(jobId=job["id"])
    emulator.faults.configure(throttle_rate=0.0)
    client.put_job_success_result(jobId=job["id"])
    results = emulator.job(job["id"])["results"]
    assert [(r["accepted"], r["error"]) for r in results] == [
        (False, "ThrottlingException"), (True, None),
    ]
    assert emulator.job(job["id"])["status"] == "Succeeded"


def test_calls_are_counted_whatever_their_outcome(
    client: CodePipelineClient, emulator: CodePipelineEmulator, travis_type: dict[str, Any]
) -> None:
    emulator.faults.configure(throttle_rate=1.0)
    with pytest.raises(ClientError):
        client.poll_for_jobs(actionTypeId=TRAVIS_ID)
    emulator.faults.configure(throttle_rate=0.0)
    client.poll_for_jobs(actionTypeId=TRAVIS_ID)
    assert emulator.call_counts() == {"CreateCustomActionType": 1, "PollForJobs": 2}
