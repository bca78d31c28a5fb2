"""Answers lost after the fact, outages switched on and off, and job data a worker cannot read."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from botocore.exceptions import BotoCoreError, ClientError

from engine.devtools.emulator._http import EmulatorServer
from engine.devtools.emulator.codepipeline import CodePipelineEmulator
from tests.emulator_codepipeline.conftest import (
    TRAVIS,
    TRAVIS_ID,
    admin,
    claim,
    error_code,
    http_status,
    poll,
)

if TYPE_CHECKING:
    from mypy_boto3_codepipeline import CodePipelineClient


def test_a_lost_answer_is_a_dropped_connection_after_the_call_was_carried_out(
    client: CodePipelineClient, emulator: CodePipelineEmulator, started: dict[str, str]
) -> None:
    job = claim(client)
    emulator.faults.configure(lost_rate=1.0)
    with pytest.raises(BotoCoreError):  # no HTTP answer at all: a connection error, no status
        client.put_job_success_result(jobId=job["id"])
    emulator.faults.configure(lost_rate=0.0)
    view = emulator.job(job["id"])
    assert view["status"] == "Succeeded"
    assert [(r["accepted"], r["error"]) for r in view["results"]] == [(True, None)]
    # The worker's retry of the report now meets a job that already has its result.
    with pytest.raises(ClientError) as again:
        client.put_job_success_result(jobId=job["id"])
    assert error_code(again.value) == "InvalidJobStateException"
    assert emulator.faults.counts() == {"throttle": 0, "error": 0, "lost": 1, "refused": 0}


def test_a_lost_poll_dispatches_the_job_all_the_same(
    client: CodePipelineClient, emulator: CodePipelineEmulator, started: dict[str, str]
) -> None:
    """The worker never saw the nonce: the job comes back only after the ack timeout."""
    emulator.faults.configure(lost_rate=1.0)
    with pytest.raises(BotoCoreError):
        poll(client)
    emulator.faults.configure(lost_rate=0.0)
    assert emulator.job(started["jobId"])["status"] == "Dispatched"
    assert poll(client) == []
    emulator.clock.advance(emulator.ack_timeout)  # type: ignore[attr-defined]
    assert [j["id"] for j in poll(client)] == [started["jobId"]]


def test_a_lost_refusal_is_lost_too(
    client: CodePipelineClient, emulator: CodePipelineEmulator, started: dict[str, str]
) -> None:
    job = claim(client)
    client.put_job_success_result(jobId=job["id"])
    emulator.faults.configure(lost_rate=1.0)
    with pytest.raises(BotoCoreError):
        client.put_job_failure_result(
            jobId=job["id"], failureDetails={"type": "JobFailed", "message": "late"})
    results = emulator.job(job["id"])["results"]
    assert [(r["accepted"], r["error"]) for r in results] == [
        (True, None), (False, "InvalidJobStateException")]


def test_lost_answers_follow_the_seed_and_stack_after_throttles_and_errors(
    emulator: CodePipelineEmulator,
) -> None:
    emulator.faults.configure(throttle_rate=0.2, error_rate=0.1, lost_rate=0.3, seed=11)
    first = [emulator.faults.draw() for _ in range(200)]
    emulator.faults.configure(seed=11)
    assert [emulator.faults.draw() for _ in range(200)] == first
    assert set(first) == {None, "throttle", "error", "lost"}
    assert 40 <= first.count("lost") <= 80


@pytest.mark.parametrize("mode", ["unreachable", "unavailable"])
def test_an_outage_refuses_every_call_until_it_is_switched_off(
    client: CodePipelineClient, emulator: CodePipelineEmulator, started: dict[str, str],
    mode: str,
) -> None:
    emulator.faults.configure(outage=mode)
    for _ in range(3):
        if mode == "unreachable":
            with pytest.raises(BotoCoreError):
                poll(client)
        else:
            with pytest.raises(ClientError) as caught:
                poll(client)
            assert error_code(caught.value) == "ServiceUnavailableException"
            assert http_status(caught.value) == 503
    # Nothing was done and nothing counted: the service never saw the calls.
    assert emulator.job(started["jobId"])["status"] == "Queued"
    assert emulator.call_counts() == {"CreateCustomActionType": 1}
    assert emulator.faults.counts()["refused"] == 3
    emulator.faults.configure(outage=False)
    assert [j["id"] for j in poll(client)] == [started["jobId"]]


def test_an_outage_leaves_the_seeded_sequence_where_it_was(
    emulator: CodePipelineEmulator,
) -> None:
    emulator.faults.configure(throttle_rate=0.5, seed=5)
    expected = [emulator.faults.draw() for _ in range(10)]
    emulator.faults.configure(seed=5)
    head = [emulator.faults.draw() for _ in range(4)]
    emulator.faults.configure(outage=True)
    assert emulator.faults.in_outage() == "unreachable"
    emulator.faults.configure(outage=False)
    assert emulator.faults.in_outage() is None
    assert head + [emulator.faults.draw() for _ in range(6)] == expected


def test_faults_over_the_admin_api(
    server: EmulatorServer, client: CodePipelineClient, emulator: CodePipelineEmulator,
    travis_type: dict[str, Any],
) -> None:
    status, body = admin(server.url, "POST", "/faults",
                         {"lost_rate": 0.05, "outage": "unavailable"})
    assert status == 200, body
    assert (body["lost_rate"], body["outage"]) == (0.05, "unavailable")
    with pytest.raises(ClientError):
        poll(client)
    # The admin side keeps working through an outage: it is the test's hand, not a client.
    assert admin(server.url, "GET", "/health")[0] == 200
    status, body = admin(server.url, "POST", "/faults", {"outage": None})
    assert (status, body["outage"]) == (200, None)
    assert admin(server.url, "GET", "/calls")[1]["faults"]["refused"] == 1
    assert admin(server.url, "POST", "/faults", {"outage": True})[1]["outage"] == "unreachable"
    assert admin(server.url, "POST", "/faults", {"outage": False})[1]["outage"] is None
    for bad in ({"outage": "down"}, {"outage": 3}, {"lost_rate": 2}):
        status, body = admin(server.url, "POST", "/faults", bad)
        assert status == 400, (bad, body)
    assert poll(client) == []


def test_reset_ends_an_outage_and_clears_the_rates(
    client: CodePipelineClient, emulator: CodePipelineEmulator, travis_type: dict[str, Any]
) -> None:
    emulator.faults.configure(lost_rate=1.0, outage=True)
    emulator.reset()
    faults = emulator.faults.as_dict()
    assert (faults["lost_rate"], faults["outage"]) == (0.0, None)
    assert emulator.faults.counts()["refused"] == 0


def test_tampered_configuration_reaches_the_worker_as_is(
    server: EmulatorServer, client: CodePipelineClient, emulator: CodePipelineEmulator,
    travis_type: dict[str, Any],
) -> None:
    """Job data CodePipeline would never send (a number where a string belongs) goes out as
    stored, so a worker's intake can be tested against it; botocore passes it through."""
    started = emulator.start_execution(TRAVIS, {"Repository": "octo/app", "ApiToken": "t0ken"})
    emulator.tamper(started["pipelineExecutionId"], {"ApiToken": 12345})
    jobs = client.poll_for_jobs(actionTypeId=TRAVIS_ID)["jobs"]
    configuration: dict[str, Any] = dict(jobs[0]["data"]["actionConfiguration"]["configuration"])
    assert configuration == {"Repository": "octo/app", "ApiToken": 12345}
    status, body = admin(server.url, "POST",
                         f"/executions/{started['pipelineExecutionId']}/tamper",
                         {"configuration": {"Branch": None}})
    assert status == 200, body
    assert emulator.job(started["jobId"])["configuration"]["Branch"] is None
    assert admin(server.url, "POST", "/executions/nope/tamper", {"configuration": {}})[0] == 404
