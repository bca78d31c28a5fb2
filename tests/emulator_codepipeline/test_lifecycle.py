"""The job lifecycle through boto3: poll, acknowledge, report, re-dispatch, continue, time out,
abandon. A FakeClock stands in for CodePipeline's time."""

from __future__ import annotations

import re
import threading
import uuid
from typing import TYPE_CHECKING, Any

import pytest

from engine.clock import FakeClock
from engine.devtools.emulator._http import EmulatorServer
from engine.devtools.emulator.codepipeline import OUTPUT_VARIABLES_LIMIT, CodePipelineEmulator
from tests.emulator_codepipeline.conftest import (
    CONFIG,
    TOKEN,
    TRAVIS,
    TRAVIS_ID,
    Attach,
    claim,
    create_type,
    make_client,
    poll,
    travis_properties,
)

if TYPE_CHECKING:
    from mypy_boto3_codepipeline import CodePipelineClient

UNKNOWN_JOB = "00000000-0000-4000-8000-000000000000"


def test_nothing_to_poll_before_an_execution(
    client: CodePipelineClient, travis_type: dict[str, Any]
) -> None:
    assert poll(client, batch=10) == []


def test_a_polled_job_carries_everything_a_worker_needs(
    client: CodePipelineClient, emulator: CodePipelineEmulator, started: dict[str, str]
) -> None:
    [job] = poll(client)
    assert job["id"] == started["jobId"]
    assert uuid.UUID(job["id"]).version == 4
    assert 1 <= len(job["nonce"]) <= 50
    assert job["accountId"] == "111111111111"
    data = job["data"]
    assert data["actionTypeId"] == TRAVIS_ID
    assert data["actionConfiguration"]["configuration"] == CONFIG  # the secret in plain text
    context = data["pipelineContext"]
    assert context["pipelineName"] == "pipeline"
    assert context["stage"] == {"name": "Test"}
    assert context["action"] == {
        "name": "Travis", "actionExecutionId": started["actionExecutionId"],
    }
    assert context["pipelineExecutionId"] == started["pipelineExecutionId"]
    assert context["pipelineArn"] == "arn:aws:codepipeline:us-east-1:111111111111:pipeline"
    [artifact] = data["inputArtifacts"]
    assert artifact["name"] == "SourceArtifact"
    assert re.fullmatch(r"[0-9a-f]{40}", artifact["revision"])
    assert artifact["location"]["type"] == "S3"
    assert artifact["location"]["s3Location"]["objectKey"].startswith("pipeline/SourceArtifact/")
    assert data["outputArtifacts"] == []
    credentials = data["artifactCredentials"]
    assert re.fullmatch(r"ASIA[A-Z2-7]{16}", credentials["accessKeyId"])
    assert len(credentials["secretAccessKey"]) == 40
    assert len(credentials["sessionToken"]) > 300
    assert "continuationToken" not in data
    assert "encryptionKey" not in data
    assert emulator.job(job["id"])["status"] == "Dispatched"


def test_a_dispatched_job_is_not_handed_out_twice(
    client: CodePipelineClient, started: dict[str, str]
) -> None:
    assert len(poll(client)) == 1
    assert poll(client) == []


def test_acknowledge_moves_the_job_to_in_progress_and_is_idempotent(
    client: CodePipelineClient, emulator: CodePipelineEmulator, started: dict[str, str]
) -> None:
    [job] = poll(client)
    assert client.acknowledge_job(jobId=job["id"], nonce=job["nonce"])["status"] == "InProgress"
    assert client.acknowledge_job(jobId=job["id"], nonce=job["nonce"])["status"] == "InProgress"
    assert emulator.job(job["id"])["status"] == "InProgress"


def test_a_wrong_nonce_is_invalid(
    client: CodePipelineClient, emulator: CodePipelineEmulator, started: dict[str, str]
) -> None:
    [job] = poll(client)
    with pytest.raises(client.exceptions.InvalidNonceException) as caught:
        client.acknowledge_job(jobId=job["id"], nonce="3")
    assert job["id"] in str(caught.value)
    assert job["nonce"] not in str(caught.value)
    assert emulator.job(job["id"])["status"] == "Dispatched"


def test_unknown_jobs_are_not_found_by_any_job_call(client: CodePipelineClient) -> None:
    not_found = client.exceptions.JobNotFoundException
    with pytest.raises(not_found):
        client.acknowledge_job(jobId=UNKNOWN_JOB, nonce="1")
    with pytest.raises(not_found):
        client.get_job_details(jobId=UNKNOWN_JOB)
    with pytest.raises(not_found):
        client.put_job_success_result(jobId=UNKNOWN_JOB)
    with pytest.raises(not_found):
        client.put_job_failure_result(
            jobId=UNKNOWN_JOB, failureDetails={"type": "JobFailed", "message": "x"}
        )


def test_an_unacknowledged_job_is_dispatched_again_with_a_new_nonce(
    client: CodePipelineClient,
    emulator: CodePipelineEmulator,
    clock: FakeClock,
    started: dict[str, str],
) -> None:
    [first] = poll(client)
    clock.advance(29.9)
    assert poll(client) == [], "handed out again before ack_timeout"
    clock.advance(0.1)
    [second] = poll(client)
    assert second["id"] == first["id"]
    assert second["nonce"] != first["nonce"]
    assert emulator.job(first["id"])["dispatchCount"] == 2
    with pytest.raises(client.exceptions.InvalidNonceException) as caught:
        client.acknowledge_job(jobId=first["id"], nonce=first["nonce"])
    assert "earlier dispatch" in str(caught.value)
    assert client.acknowledge_job(jobId=second["id"], nonce=second["nonce"])["status"] == (
        "InProgress"
    )


def test_a_lapsed_nonce_fails_even_before_the_next_poll(
    client: CodePipelineClient, clock: FakeClock, started: dict[str, str]
) -> None:
    [job] = poll(client)
    clock.advance(30)
    with pytest.raises(client.exceptions.InvalidNonceException):
        client.acknowledge_job(jobId=job["id"], nonce=job["nonce"])


def test_the_ack_window_is_a_constructor_argument(clock: FakeClock, attach: Attach) -> None:
    emulator = CodePipelineEmulator(clock=clock, ack_timeout=5)
    client = make_client(attach(emulator).url)
    create_type(client)
    emulator.start_execution(TRAVIS, CONFIG)
    [first] = poll(client)
    clock.advance(5)
    [second] = poll(client)
    assert second["id"] == first["id"]


def test_continuation_delay_and_job_timeout_are_constructor_arguments(
    clock: FakeClock, attach: Attach
) -> None:
    emulator = CodePipelineEmulator(clock=clock, continuation_delay=0, job_timeout=60)
    client = make_client(attach(emulator).url)
    create_type(client)
    emulator.start_execution(TRAVIS, CONFIG)
    first = claim(client)
    client.put_job_success_result(jobId=first["id"], continuationToken="next")
    follow = claim(client)
    assert follow["data"]["continuationToken"] == "next"
    clock.advance(60)
    assert emulator.job(follow["id"])["status"] == "TimedOut"


def test_an_acknowledged_job_is_never_dispatched_again(
    client: CodePipelineClient, clock: FakeClock, started: dict[str, str]
) -> None:
    claim(client)
    clock.advance(3600)
    assert poll(client) == []


def test_success_without_token_ends_job_and_execution(
    client: CodePipelineClient, emulator: CodePipelineEmulator, started: dict[str, str]
) -> None:
    job = claim(client)
    client.put_job_success_result(
        jobId=job["id"],
        executionDetails={"summary": "build 42 passed", "externalExecutionId": "42"},
        outputVariables={"BuildNumber": "42"},
    )
    assert emulator.job(job["id"])["status"] == "Succeeded"
    [execution] = emulator.executions()
    assert execution["status"] == "Succeeded"
    assert execution["outputVariables"] == {"BuildNumber": "42"}
    assert execution["executionDetails"]["externalExecutionId"] == "42"
    assert execution["jobIds"] == [job["id"]]


def test_failure_ends_job_and_execution(
    client: CodePipelineClient, emulator: CodePipelineEmulator, started: dict[str, str]
) -> None:
    job = claim(client)
    details = {"type": "JobFailed", "message": "build 42 failed", "externalExecutionId": "42"}
    client.put_job_failure_result(jobId=job["id"], failureDetails=details)  # type: ignore[arg-type]
    assert emulator.job(job["id"])["status"] == "Failed"
    [execution] = emulator.executions()
    assert (execution["status"], execution["failureDetails"]) == ("Failed", details)
    with pytest.raises(client.exceptions.InvalidJobStateException) as caught:
        client.put_job_success_result(jobId=job["id"])
    assert "is Failed, not InProgress" in str(caught.value)


def test_a_continuation_is_a_new_job_with_the_token_after_the_delay(
    client: CodePipelineClient,
    emulator: CodePipelineEmulator,
    clock: FakeClock,
    started: dict[str, str],
) -> None:
    first = claim(client)
    client.put_job_success_result(
        jobId=first["id"],
        continuationToken="travis-request-7",
        executionDetails={"externalExecutionId": "7", "percentComplete": 10},
    )
    assert emulator.job(first["id"])["status"] == "Succeeded"
    [execution] = emulator.executions()
    assert execution["status"] == "InProgress"
    follow_id = execution["jobIds"][1]
    assert emulator.job(follow_id)["status"] == "Created"
    clock.advance(29)
    assert poll(client) == [], "the continuation appeared before continuation_delay"
    clock.advance(1)
    [follow] = poll(client)
    assert follow["id"] == follow_id != first["id"]
    assert follow["data"]["continuationToken"] == "travis-request-7"
    context = follow["data"]["pipelineContext"]
    assert context["action"]["actionExecutionId"] == started["actionExecutionId"]
    assert context["pipelineExecutionId"] == started["pipelineExecutionId"]
    assert follow["data"]["actionConfiguration"]["configuration"]["ApiToken"] == TOKEN
    assert client.acknowledge_job(jobId=follow["id"], nonce=follow["nonce"])["status"] == (
        "InProgress"
    )
    client.put_job_success_result(jobId=follow["id"], outputVariables={"BuildId": "7"})
    [execution] = emulator.executions()
    assert (execution["status"], execution["outputVariables"]) == ("Succeeded", {"BuildId": "7"})


@pytest.mark.parametrize("result", ["success", "failure"])
def test_a_job_takes_exactly_one_result(
    client: CodePipelineClient, started: dict[str, str], result: str
) -> None:
    job = claim(client)
    client.put_job_success_result(jobId=job["id"])
    with pytest.raises(client.exceptions.InvalidJobStateException) as caught:
        if result == "success":
            client.put_job_success_result(jobId=job["id"])
        else:
            client.put_job_failure_result(
                jobId=job["id"], failureDetails={"type": "JobFailed", "message": "late"}
            )
    assert "is Succeeded, not InProgress" in str(caught.value)


def test_a_result_for_a_queued_job_is_refused(
    client: CodePipelineClient, started: dict[str, str]
) -> None:
    with pytest.raises(client.exceptions.InvalidJobStateException) as caught:
        client.put_job_success_result(jobId=started["jobId"])
    assert "is Queued" in str(caught.value)


def test_a_result_before_acknowledging_is_refused(
    client: CodePipelineClient, emulator: CodePipelineEmulator, started: dict[str, str]
) -> None:
    [job] = poll(client)
    with pytest.raises(client.exceptions.InvalidJobStateException) as caught:
        client.put_job_failure_result(
            jobId=job["id"], failureDetails={"type": "JobFailed", "message": "x"}
        )
    assert "call AcknowledgeJob first" in str(caught.value)
    assert emulator.job(job["id"])["status"] == "Dispatched"


def test_an_unfinished_job_times_out_after_job_timeout(
    client: CodePipelineClient,
    emulator: CodePipelineEmulator,
    clock: FakeClock,
    started: dict[str, str],
) -> None:
    job = claim(client)
    clock.advance(86399)
    assert emulator.job(job["id"])["status"] == "InProgress"
    clock.advance(1)
    assert emulator.job(job["id"])["status"] == "TimedOut"
    assert emulator.executions()[0]["status"] == "Failed"
    with pytest.raises(client.exceptions.InvalidJobStateException) as caught:
        client.put_job_success_result(jobId=job["id"])
    assert "TimedOut" in str(caught.value)
    assert client.acknowledge_job(jobId=job["id"], nonce=job["nonce"])["status"] == "TimedOut"


def test_a_queued_job_nobody_polls_also_times_out(
    client: CodePipelineClient,
    emulator: CodePipelineEmulator,
    clock: FakeClock,
    started: dict[str, str],
) -> None:
    clock.advance(86400)
    assert poll(client) == []
    assert emulator.job(started["jobId"])["status"] == "TimedOut"


def test_stop_and_abandon_refuses_the_running_jobs_result(
    client: CodePipelineClient, emulator: CodePipelineEmulator, started: dict[str, str]
) -> None:
    job = claim(client)
    emulator.stop_execution(started["pipelineExecutionId"], reason="superseded by a hotfix")
    with pytest.raises(client.exceptions.InvalidJobStateException) as caught:
        client.put_job_success_result(jobId=job["id"])
    assert "stopped and abandoned (superseded by a hotfix)" in str(caught.value)
    assert emulator.job(job["id"])["status"] == "Abandoned"
    [execution] = emulator.executions()
    assert (execution["status"], execution["abandoned"]) == ("Stopped", True)
    assert client.acknowledge_job(jobId=job["id"], nonce=job["nonce"])["status"] == "Failed"


def test_stop_and_abandon_withdraws_queued_jobs(
    client: CodePipelineClient, emulator: CodePipelineEmulator, started: dict[str, str]
) -> None:
    other = emulator.start_execution(TRAVIS, CONFIG)
    emulator.stop_execution(started["pipelineExecutionId"])
    [job] = poll(client, batch=10)
    assert job["id"] == other["jobId"]


def test_stop_and_wait_lets_the_running_job_finish(
    client: CodePipelineClient, emulator: CodePipelineEmulator, started: dict[str, str]
) -> None:
    job = claim(client)
    emulator.stop_execution(started["pipelineExecutionId"], abandon=False)
    assert emulator.executions()[0]["status"] == "Stopping"
    client.put_job_success_result(jobId=job["id"])
    assert emulator.executions()[0]["status"] == "Stopped"


def test_get_job_details_returns_data_with_fresh_credentials_and_no_nonce(
    client: CodePipelineClient, emulator: CodePipelineEmulator, started: dict[str, str]
) -> None:
    job = claim(client)
    details = client.get_job_details(jobId=job["id"])["jobDetails"]
    assert set(details) == {"id", "accountId", "data"}
    assert (details["id"], details["accountId"]) == (job["id"], "111111111111")
    data = details["data"]
    assert data["actionConfiguration"]["configuration"]["ApiToken"] == TOKEN
    assert data["pipelineContext"] == job["data"]["pipelineContext"]
    assert data["inputArtifacts"] == job["data"]["inputArtifacts"]
    fresh = data["artifactCredentials"]
    assert fresh["accessKeyId"] != job["data"]["artifactCredentials"]["accessKeyId"]
    issued = emulator.job(job["id"])["artifactCredentials"]
    assert [c["accessKeyId"] for c in issued] == [
        job["data"]["artifactCredentials"]["accessKeyId"], fresh["accessKeyId"],
    ]


def test_get_job_details_works_for_finished_jobs(
    client: CodePipelineClient, started: dict[str, str]
) -> None:
    job = claim(client)
    client.put_job_success_result(jobId=job["id"])
    assert client.get_job_details(jobId=job["id"])["jobDetails"]["id"] == job["id"]


def test_the_encryption_key_is_sent_when_configured(
    client: CodePipelineClient, emulator: CodePipelineEmulator, travis_type: dict[str, Any]
) -> None:
    key = "arn:aws:kms:us-east-1:111111111111:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    emulator.start_execution(TRAVIS, CONFIG, encryption_key=key)
    [job] = poll(client)
    assert job["data"]["encryptionKey"] == {"id": key, "type": "KMS"}


def test_output_artifacts_have_locations_but_no_revision(
    client: CodePipelineClient, emulator: CodePipelineEmulator, travis_type: dict[str, Any]
) -> None:
    emulator.start_execution(TRAVIS, CONFIG, input_artifacts=["src", "tests"], output_artifacts=1)
    [job] = poll(client)
    assert [a["name"] for a in job["data"]["inputArtifacts"]] == ["src", "tests"]
    [output] = job["data"]["outputArtifacts"]
    assert output["name"] == "OutputArtifact"
    assert "revision" not in output
    assert output["location"]["s3Location"]["bucketName"] == "codepipeline-us-east-1-111111111111"


def test_max_batch_size_hands_out_the_oldest_jobs_first(
    client: CodePipelineClient, emulator: CodePipelineEmulator, travis_type: dict[str, Any]
) -> None:
    ids = [emulator.start_execution(TRAVIS, CONFIG)["jobId"] for _ in range(3)]
    assert [j["id"] for j in poll(client, batch=2)] == ids[:2]
    assert [j["id"] for j in poll(client, batch=2)] == ids[2:]


def test_query_param_selects_jobs_by_the_queryable_property(
    client: CodePipelineClient, emulator: CodePipelineEmulator
) -> None:
    create_type(client, properties=travis_properties(queryable=True))
    emulator.start_execution(TRAVIS, {**CONFIG, "Repository": "alpha"})
    wanted = emulator.start_execution(TRAVIS, {**CONFIG, "Repository": "beta"})
    [job] = poll(client, batch=5, queryParam={"Repository": "beta"})
    assert job["id"] == wanted["jobId"]
    assert poll(client, batch=5, queryParam={"Repository": "gamma"}) == []


def test_a_queryable_type_must_be_polled_with_its_query_param(
    client: CodePipelineClient,
) -> None:
    create_type(client, properties=travis_properties(queryable=True))
    with pytest.raises(client.exceptions.ValidationException) as caught:
        poll(client)
    assert "'Repository'" in str(caught.value)
    with pytest.raises(client.exceptions.ValidationException):
        poll(client, queryParam={"Branch": "main"})


def test_a_type_without_queryable_property_refuses_a_query_param(
    client: CodePipelineClient, travis_type: dict[str, Any]
) -> None:
    with pytest.raises(client.exceptions.ValidationException) as caught:
        poll(client, queryParam={"Repository": "alpha"})
    assert "no queryable property" in str(caught.value)


def test_output_variables_over_the_size_limit_are_refused(
    client: CodePipelineClient, emulator: CodePipelineEmulator, started: dict[str, str]
) -> None:
    job = claim(client)
    too_big = {"Log": "x" * (OUTPUT_VARIABLES_LIMIT - len("Log") + 1)}
    with pytest.raises(client.exceptions.OutputVariablesSizeExceededException) as caught:
        client.put_job_success_result(jobId=job["id"], outputVariables=too_big)
    assert str(OUTPUT_VARIABLES_LIMIT) in str(caught.value)
    assert emulator.job(job["id"])["status"] == "InProgress"
    just_fits = {"Log": "x" * (OUTPUT_VARIABLES_LIMIT - len("Log"))}
    client.put_job_success_result(jobId=job["id"], outputVariables=just_fits)
    assert emulator.job(job["id"])["status"] == "Succeeded"


def test_concurrent_pollers_never_share_a_job(
    server: EmulatorServer, emulator: CodePipelineEmulator, travis_type: dict[str, Any]
) -> None:
    expected = {emulator.start_execution(TRAVIS, CONFIG)["jobId"] for _ in range(12)}
    seen: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        own = make_client(server.url)
        for _ in range(4):
            ids = [j["id"] for j in poll(own, batch=1)]
            with lock:
                seen.extend(ids)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(seen) == sorted(expected)
