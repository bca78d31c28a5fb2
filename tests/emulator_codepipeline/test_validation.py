"""The server validates every request against botocore's model, with AWS's wording.

The clients here skip botocore's own parameter validation (`raw_client`), so a refusal proves
the emulator refused, not the SDK.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest
from botocore.exceptions import ParamValidationError

from engine.devtools.emulator import _cp_model
from engine.devtools.emulator._aws_json import AwsError
from engine.devtools.emulator._http import EmulatorServer
from engine.devtools.emulator.codepipeline import CodePipelineEmulator
from tests.emulator_codepipeline.conftest import TRAVIS_ID, claim, raw_call, travis_properties

if TYPE_CHECKING:
    from mypy_boto3_codepipeline import CodePipelineClient
    from mypy_boto3_codepipeline.type_defs import JobTypeDef

PREFIX = "1 validation error detected: "


@pytest.fixture
def job(client: CodePipelineClient, started: dict[str, str]) -> JobTypeDef:
    return claim(client)


def test_a_6000_character_failure_message_is_refused(
    raw_client: CodePipelineClient, job: JobTypeDef, emulator: CodePipelineEmulator
) -> None:
    message = "m" * 6000
    with pytest.raises(raw_client.exceptions.ValidationException) as caught:
        raw_client.put_job_failure_result(
            jobId=job["id"], failureDetails={"type": "JobFailed", "message": message}
        )
    assert caught.value.response["Error"]["Message"] == (
        f"{PREFIX}Value '{message}' at 'failureDetails.message' failed to satisfy constraint: "
        "Member must have length less than or equal to 5000"
    )
    assert emulator.job(job["id"])["status"] == "InProgress"


def test_a_5000_character_failure_message_is_accepted(
    raw_client: CodePipelineClient, job: JobTypeDef, emulator: CodePipelineEmulator
) -> None:
    raw_client.put_job_failure_result(
        jobId=job["id"], failureDetails={"type": "JobFailed", "message": "m" * 5000}
    )
    assert emulator.job(job["id"])["status"] == "Failed"


def test_percent_complete_of_101_is_refused(
    raw_client: CodePipelineClient, job: JobTypeDef
) -> None:
    with pytest.raises(raw_client.exceptions.ValidationException) as caught:
        raw_client.put_job_success_result(
            jobId=job["id"], continuationToken="t", executionDetails={"percentComplete": 101}
        )
    assert caught.value.response["Error"]["Message"] == (
        f"{PREFIX}Value '101' at 'executionDetails.percentComplete' failed to satisfy "
        "constraint: Member must have value less than or equal to 100"
    )


def test_a_validating_client_sends_101_anyway_so_only_the_server_stops_it(
    client: CodePipelineClient, job: JobTypeDef, emulator: CodePipelineEmulator
) -> None:
    """botocore checks minimums but not maximums: a worker's bad percentage reaches AWS."""
    with pytest.raises(client.exceptions.ValidationException):
        client.put_job_success_result(jobId=job["id"], executionDetails={"percentComplete": 101})
    assert emulator.call_counts()["PutJobSuccessResult"] == 1


def test_botocore_stops_a_batch_size_of_zero_before_the_wire(
    client: CodePipelineClient, travis_type: dict[str, Any], emulator: CodePipelineEmulator
) -> None:
    """Why the other tests use raw_client: a validating client never sends some bad calls."""
    with pytest.raises(ParamValidationError):
        client.poll_for_jobs(actionTypeId=TRAVIS_ID, maxBatchSize=0)
    assert "PollForJobs" not in emulator.call_counts()


def test_output_variables_with_a_continuation_token_are_refused(
    raw_client: CodePipelineClient, job: JobTypeDef, emulator: CodePipelineEmulator
) -> None:
    with pytest.raises(raw_client.exceptions.ValidationException) as caught:
        raw_client.put_job_success_result(
            jobId=job["id"], continuationToken="step-2", outputVariables={"BuildId": "42"}
        )
    assert "outputVariables cannot be used with continuationToken" in str(caught.value)
    assert emulator.job(job["id"])["status"] == "InProgress"
    assert len(emulator.jobs()) == 1, "a refused call must not create a continuation job"


def test_a_missing_required_member_must_not_be_null(raw_client: CodePipelineClient) -> None:
    with pytest.raises(raw_client.exceptions.ValidationException) as caught:
        raw_client.acknowledge_job(nonce="1")  # type: ignore[call-arg]
    assert caught.value.response["Error"]["Message"] == (
        f"{PREFIX}Value null at 'jobId' failed to satisfy constraint: Member must not be null"
    )


def test_every_violation_is_listed(raw_client: CodePipelineClient) -> None:
    with pytest.raises(raw_client.exceptions.ValidationException) as caught:
        raw_client.put_job_failure_result(
            jobId="not-a-job-id",
            failureDetails={"type": "Oops", "message": ""},  # type: ignore[typeddict-item]
        )
    message = caught.value.response["Error"]["Message"]
    assert message.startswith("3 validation errors detected: ")
    assert (
        "Value 'not-a-job-id' at 'jobId' failed to satisfy constraint: Member must satisfy "
        "regular expression pattern: [0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
    ) in message
    assert (
        "Value 'Oops' at 'failureDetails.type' failed to satisfy constraint: Member must satisfy "
        "enum value set: [JobFailed, ConfigurationError, PermissionError, RevisionOutOfSync, "
        "RevisionUnavailable, SystemUnavailable]"
    ) in message
    assert (
        "Value '' at 'failureDetails.message' failed to satisfy constraint: Member must have "
        "length greater than or equal to 1"
    ) in message


def test_max_batch_size_below_one_is_refused(
    raw_client: CodePipelineClient, travis_type: dict[str, Any]
) -> None:
    with pytest.raises(raw_client.exceptions.ValidationException) as caught:
        raw_client.poll_for_jobs(actionTypeId=TRAVIS_ID, maxBatchSize=0)
    assert "at 'maxBatchSize' failed to satisfy constraint: Member must have value greater " \
        "than or equal to 1" in str(caught.value)


def test_eleven_configuration_properties_are_too_many(raw_client: CodePipelineClient) -> None:
    properties = [
        {"name": f"P{i}", "required": False, "key": False, "secret": False} for i in range(11)
    ]
    with pytest.raises(raw_client.exceptions.ValidationException) as caught:
        raw_client.create_custom_action_type(
            category="Test", provider="Many", version="1",
            configurationProperties=properties,  # type: ignore[arg-type]
            inputArtifactDetails={"minimumCount": 0, "maximumCount": 1},
            outputArtifactDetails={"minimumCount": 0, "maximumCount": 1},
        )
    assert "at 'configurationProperties' failed to satisfy constraint: Member must have length " \
        "less than or equal to 10" in str(caught.value)


def test_list_items_are_addressed_as_aws_does(raw_client: CodePipelineClient) -> None:
    properties = travis_properties()
    properties[1]["description"] = "d" * 161
    with pytest.raises(raw_client.exceptions.ValidationException) as caught:
        raw_client.create_custom_action_type(
            category="Test", provider="Travis", version="1",
            configurationProperties=properties,  # type: ignore[arg-type]
            inputArtifactDetails={"minimumCount": 0, "maximumCount": 9},
            outputArtifactDetails={"minimumCount": 0, "maximumCount": 1},
        )
    message = str(caught.value)
    assert "at 'configurationProperties.2.member.description' failed to satisfy constraint: " \
        "Member must have length less than or equal to 160" in message
    assert "at 'inputArtifactDetails.maximumCount' failed to satisfy constraint: Member must " \
        "have value less than or equal to 5" in message


def test_a_query_param_map_takes_at_most_one_entry(
    raw_client: CodePipelineClient, travis_type: dict[str, Any]
) -> None:
    with pytest.raises(raw_client.exceptions.ValidationException) as caught:
        raw_client.poll_for_jobs(actionTypeId=TRAVIS_ID, queryParam={"A": "1", "B": "2"})
    assert "at 'queryParam' failed to satisfy constraint: Member must have length less than " \
        "or equal to 1" in str(caught.value)


def test_output_variable_names_must_match_the_model_pattern(
    raw_client: CodePipelineClient, job: JobTypeDef
) -> None:
    with pytest.raises(raw_client.exceptions.ValidationException) as caught:
        raw_client.put_job_success_result(jobId=job["id"], outputVariables={"bad name!": "x"})
    assert (
        "Value 'bad name!' at 'outputVariables' failed to satisfy constraint: Map keys must "
        "satisfy constraint: [Member must satisfy regular expression pattern: [A-Za-z0-9@\\-_]+]"
    ) in str(caught.value)


def test_unknown_members_are_refused(server: EmulatorServer, job: JobTypeDef) -> None:
    """botocore's serializer cannot even send an unknown member, so this call is hand-made."""
    status, _, body = raw_call(
        server.url,
        "PutJobSuccessResult",
        {"jobId": job["id"], "executionDetails": {"summary": "ok", "progress": 5}},
    )
    answer = json.loads(body)
    assert (status, answer["__type"]) == (400, "ValidationException")
    assert answer["message"] == (
        f"{PREFIX}Value '5' at 'executionDetails.progress' failed to satisfy constraint: Member "
        "must be one of the ExecutionDetails members [summary, externalExecutionId, "
        "percentComplete]"
    )


@pytest.mark.parametrize(
    ("operation", "required"),
    [
        ("CreateCustomActionType",
         ["category", "provider", "version", "inputArtifactDetails", "outputArtifactDetails"]),
        ("DeleteCustomActionType", ["category", "provider", "version"]),
        ("PollForJobs", ["actionTypeId"]),
        ("AcknowledgeJob", ["jobId", "nonce"]),
        ("GetJobDetails", ["jobId"]),
        ("PutJobSuccessResult", ["jobId"]),
        ("PutJobFailureResult", ["jobId", "failureDetails"]),
    ],
)
def test_the_model_walk_finds_each_operations_required_members(
    operation: str, required: list[str]
) -> None:
    with pytest.raises(AwsError) as caught:
        _cp_model.validate_input(operation, {})
    expected = "; ".join(
        f"Value null at '{name}' failed to satisfy constraint: Member must not be null"
        for name in required
    )
    noun = "error" if len(required) == 1 else "errors"
    assert caught.value.message == f"{len(required)} validation {noun} detected: {expected}"


def test_an_empty_list_action_types_request_is_valid() -> None:
    _cp_model.validate_input("ListActionTypes", {})


def test_a_top_level_array_is_not_an_input_structure() -> None:
    with pytest.raises(AwsError) as caught:
        _cp_model.validate_input("PollForJobs", [])
    assert caught.value.code == "SerializationException"


def test_sensitive_values_are_not_echoed() -> None:
    """Coral redacts members the model marks sensitive; so does the emulator."""
    shape = _cp_model.service_model().shape_for("AWSSessionCredentials")
    assert _cp_model.render("AKIA-secret", shape.members["secretAccessKey"]) == (  # type: ignore[attr-defined]
        "'*** Sensitive Data Redacted ***'"
    )
