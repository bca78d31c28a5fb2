"""Custom action types: create, list, delete, restore, the quota and the queryable rules."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from engine.devtools.emulator.codepipeline import CodePipelineEmulator
from tests.emulator_codepipeline.conftest import TRAVIS_ID, create_type, poll, travis_properties

if TYPE_CHECKING:
    from mypy_boto3_codepipeline import CodePipelineClient


def test_a_created_type_is_owned_by_custom_and_keeps_its_definition(
    client: CodePipelineClient,
) -> None:
    created = create_type(client)
    assert created["id"] == TRAVIS_ID
    assert [p["name"] for p in created["actionConfigurationProperties"]] == [
        "Repository", "Branch", "ApiToken",
    ]
    assert created["actionConfigurationProperties"][2]["secret"] is True
    assert created["settings"] == {
        "executionUrlTemplate": "https://app.travis-ci.com/{ExternalExecutionId}"
    }
    assert created["inputArtifactDetails"] == {"minimumCount": 0, "maximumCount": 5}


def test_tags_come_back_with_the_type(client: CodePipelineClient) -> None:
    answer = client.create_custom_action_type(
        category="Build", provider="Tagged", version="1",
        inputArtifactDetails={"minimumCount": 0, "maximumCount": 1},
        outputArtifactDetails={"minimumCount": 0, "maximumCount": 1},
        tags=[{"key": "team", "value": "ci"}],
    )
    assert answer["tags"] == [{"key": "team", "value": "ci"}]
    assert answer["actionType"]["id"]["owner"] == "Custom"


def test_list_shows_custom_types_and_honours_the_owner_filter(client: CodePipelineClient) -> None:
    create_type(client)
    create_type(client, provider="Other")
    listed = client.list_action_types()["actionTypes"]
    assert [t["id"]["provider"] for t in listed] == ["Travis", "Other"]
    assert len(client.list_action_types(actionOwnerFilter="Custom")["actionTypes"]) == 2
    assert client.list_action_types(actionOwnerFilter="AWS")["actionTypes"] == []
    assert "nextToken" not in client.list_action_types()


def test_a_next_token_the_emulator_never_issued_is_invalid(client: CodePipelineClient) -> None:
    with pytest.raises(client.exceptions.InvalidNextTokenException):
        client.list_action_types(nextToken="page-2")


def test_creating_an_identical_type_again_succeeds(client: CodePipelineClient) -> None:
    first = create_type(client)
    assert create_type(client) == first
    assert len(client.list_action_types()["actionTypes"]) == 1


def test_changing_a_versions_definition_needs_a_new_version(client: CodePipelineClient) -> None:
    create_type(client)
    with pytest.raises(client.exceptions.ValidationException) as caught:
        create_type(client, outputs=(0, 1))
    assert "new version string" in str(caught.value)
    assert create_type(client, version="2", outputs=(0, 1))["id"]["version"] == "2"


def test_a_deleted_type_cannot_be_polled(client: CodePipelineClient) -> None:
    create_type(client)
    client.delete_custom_action_type(category="Test", provider="Travis", version="1")
    assert client.list_action_types()["actionTypes"] == []
    with pytest.raises(client.exceptions.ActionTypeNotFoundException) as caught:
        poll(client)
    assert "was deleted" in str(caught.value)


def test_a_deleted_type_comes_back_only_from_identical_json(client: CodePipelineClient) -> None:
    create_type(client)
    client.delete_custom_action_type(category="Test", provider="Travis", version="1")
    with pytest.raises(client.exceptions.ValidationException) as caught:
        create_type(client, inputs=(1, 1))
    assert "was deleted" in str(caught.value)
    assert "never been used" in str(caught.value)
    create_type(client)
    assert poll(client) == []


def test_deleting_an_unknown_type_is_a_validation_error(client: CodePipelineClient) -> None:
    with pytest.raises(client.exceptions.ValidationException):
        client.delete_custom_action_type(category="Test", provider="Nobody", version="1")


def test_fifty_types_is_the_limit_and_deleted_ones_free_a_slot(client: CodePipelineClient) -> None:
    for number in range(50):
        create_type(client, provider=f"P{number}", properties=[])
    with pytest.raises(client.exceptions.LimitExceededException) as caught:
        create_type(client, provider="P50", properties=[])
    assert "50" in str(caught.value)
    client.delete_custom_action_type(category="Test", provider="P0", version="1")
    create_type(client, provider="P50", properties=[])
    with pytest.raises(client.exceptions.LimitExceededException):
        create_type(client, provider="P0", properties=[])  # restoring needs a free slot too


def _queryable(name: str, *, required: bool = True, secret: bool = False) -> dict[str, Any]:
    return {"name": name, "required": required, "key": True, "secret": secret, "queryable": True}


@pytest.mark.parametrize(
    ("properties", "complaint"),
    [
        ([_queryable("A"), _queryable("B")], "at most one configuration property may be queryable"),
        ([_queryable("A", required=False)], "must be required and not secret"),
        ([_queryable("A", secret=True)], "must be required and not secret"),
        (travis_properties() + travis_properties()[:1], "names must be unique"),
    ],
)
def test_queryable_and_naming_rules(
    client: CodePipelineClient, properties: list[dict[str, Any]], complaint: str
) -> None:
    with pytest.raises(client.exceptions.ValidationException) as caught:
        create_type(client, properties=properties)
    assert complaint in str(caught.value)
    assert client.list_action_types()["actionTypes"] == []


def test_minimum_above_maximum_is_refused(client: CodePipelineClient) -> None:
    with pytest.raises(client.exceptions.ValidationException) as caught:
        create_type(client, inputs=(3, 1))
    assert "inputArtifactDetails.minimumCount must not exceed" in str(caught.value)


def test_polling_a_type_that_never_existed(client: CodePipelineClient) -> None:
    with pytest.raises(client.exceptions.ActionTypeNotFoundException) as caught:
        poll(client)
    assert "Test/Custom/Travis/1 does not exist" in str(caught.value)


@pytest.mark.parametrize("owner", ["AWS", "ThirdParty"])
def test_polling_for_a_non_custom_owner_is_not_supported(
    client: CodePipelineClient, travis_type: dict[str, Any], owner: str
) -> None:
    with pytest.raises(client.exceptions.ValidationException) as caught:
        client.poll_for_jobs(actionTypeId={**TRAVIS_ID, "owner": owner})  # type: ignore[typeddict-item]
    assert caught.value.response["Error"]["Message"] == (
        f"ActionType with owner '{owner}' is not supported"
    )


def test_admin_lists_deleted_types_flagged(
    client: CodePipelineClient, emulator: CodePipelineEmulator
) -> None:
    create_type(client)
    client.delete_custom_action_type(category="Test", provider="Travis", version="1")
    [listed] = emulator.action_types()
    assert listed["id"] == TRAVIS_ID
    assert listed["deleted"] is True
