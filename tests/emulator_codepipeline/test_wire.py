"""The AWS JSON 1.1 surface: headers, status codes and error shapes as botocore parses them."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest
from botocore.exceptions import ClientError

from engine.devtools.emulator._http import EmulatorServer
from tests.emulator_codepipeline.conftest import TRAVIS_ID, claim, error_code, http_status, raw_call

if TYPE_CHECKING:
    from mypy_boto3_codepipeline import CodePipelineClient


def test_success_carries_json_content_type_and_the_request_id_boto3_reads(
    server: EmulatorServer, travis_type: dict[str, Any]
) -> None:
    status, headers, body = raw_call(
        server.url, "PollForJobs", {"actionTypeId": TRAVIS_ID, "maxBatchSize": 1}
    )
    assert status == 200
    assert headers["Content-Type"] == "application/x-amz-json-1.1"
    assert len(headers["x-amzn-RequestId"]) == 36
    assert json.loads(body) == {"jobs": []}


def test_boto3_sees_the_request_id_on_success_and_on_error(
    client: CodePipelineClient, travis_type: dict[str, Any]
) -> None:
    ok = client.poll_for_jobs(actionTypeId=TRAVIS_ID)
    assert len(ok["ResponseMetadata"]["RequestId"]) == 36
    with pytest.raises(client.exceptions.JobNotFoundException) as caught:
        client.get_job_details(jobId="00000000-0000-4000-8000-000000000000")
    request_id = caught.value.response["ResponseMetadata"]["RequestId"]
    assert len(request_id) == 36
    assert request_id != ok["ResponseMetadata"]["RequestId"]


def test_errors_are_type_and_message_with_status_400(server: EmulatorServer) -> None:
    unknown = "00000000-0000-4000-8000-000000000000"
    status, headers, body = raw_call(server.url, "AcknowledgeJob", {"jobId": unknown, "nonce": "1"})
    assert status == 400
    assert headers["x-amzn-RequestId"]
    payload = json.loads(body)
    assert set(payload) == {"__type", "message"}
    assert payload["__type"] == "JobNotFoundException"
    assert unknown in payload["message"]


def test_results_answer_200_with_an_empty_body(
    server: EmulatorServer, client: CodePipelineClient, started: dict[str, str]
) -> None:
    job = claim(client)
    status, _, body = raw_call(server.url, "PutJobSuccessResult", {"jobId": job["id"]})
    assert (status, body) == (200, b"")


def test_unknown_target_is_unknown_operation(server: EmulatorServer) -> None:
    status, _, body = raw_call(server.url, "LaunchRockets", {})
    assert status == 400
    assert json.loads(body)["__type"] == "UnknownOperationException"


def test_a_real_operation_the_emulator_lacks_says_which_it_has(client: CodePipelineClient) -> None:
    with pytest.raises(ClientError) as caught:
        client.get_pipeline(name="pipeline")
    assert error_code(caught.value) == "UnknownOperationException"
    assert "PollForJobs" in str(caught.value)


@pytest.mark.parametrize(("method", "path"), [("GET", "/"), ("POST", "/other")])
def test_only_post_slash_is_an_aws_call(server: EmulatorServer, method: str, path: str) -> None:
    status, _, body = raw_call(server.url, "PollForJobs", b"{}", method=method, path=path)
    assert status == 400
    assert json.loads(body)["__type"] == "UnknownOperationException"


def test_wrong_content_type_is_refused(server: EmulatorServer) -> None:
    status, _, body = raw_call(
        server.url, "PollForJobs", {}, headers={"Content-Type": "application/json"}
    )
    assert status == 400
    assert "Content-Type" in json.loads(body)["message"]


def test_a_body_that_is_not_json_is_a_serialization_error(server: EmulatorServer) -> None:
    status, _, body = raw_call(server.url, "PollForJobs", b"{not json")
    assert status == 400
    assert json.loads(body)["__type"] == "SerializationException"


def test_a_value_of_the_wrong_json_type_is_a_serialization_error(
    raw_client: CodePipelineClient, travis_type: dict[str, Any]
) -> None:
    with pytest.raises(ClientError) as caught:
        raw_client.poll_for_jobs(actionTypeId=TRAVIS_ID, maxBatchSize="two")  # type: ignore[arg-type]
    assert error_code(caught.value) == "SerializationException"
    assert "maxBatchSize" in str(caught.value)


def test_an_unsigned_request_is_missing_its_token(server: EmulatorServer) -> None:
    status, _, body = raw_call(server.url, "PollForJobs", {}, sign=None)
    assert status == 400
    assert json.loads(body) == {
        "__type": "MissingAuthenticationTokenException",
        "message": "Missing Authentication Token",
    }


def test_an_authorization_header_without_signature_is_incomplete(server: EmulatorServer) -> None:
    status, _, body = raw_call(
        server.url,
        "PollForJobs",
        {},
        sign=None,
        headers={
            "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/"
            "codepipeline/aws4_request, SignedHeaders=host",
            "X-Amz-Date": "20260101T000000Z",
        },
    )
    payload = json.loads(body)
    assert status == 400
    assert payload["__type"] == "IncompleteSignatureException"
    assert "requires 'Signature' parameter" in payload["message"]


def test_a_non_sigv4_authorization_is_refused(server: EmulatorServer) -> None:
    status, _, body = raw_call(
        server.url, "PollForJobs", {}, sign=None, headers={"Authorization": "Bearer abc"}
    )
    assert status == 400
    assert json.loads(body)["__type"] == "IncompleteSignatureException"


def test_an_error_status_reaches_boto3(client: CodePipelineClient) -> None:
    with pytest.raises(client.exceptions.ActionTypeNotFoundException) as caught:
        client.poll_for_jobs(actionTypeId=TRAVIS_ID)
    assert http_status(caught.value) == 400
