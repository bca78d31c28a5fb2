"""github.json: a type CodePipeline accepts, whose console links can actually be filled in."""

from __future__ import annotations

import re

from actions.github import GitHubAction
from engine.action import available_actions, load_action
from engine.devtools.emulator import CodePipelineEmulator, EmulatorServer
from engine.devtools.testing import codepipeline_client


def test_the_type_is_a_custom_test_action_named_github_actions() -> None:
    definition = GitHubAction.definition()
    assert str(definition.type_id) == "Test/Custom/GitHubActions/1"
    props = {p.name: p for p in definition.properties}
    assert set(props) == {"Owner", "Repository", "Workflow", "Ref", "Token", "Inputs",
                          "ApiUrl"}
    assert len(definition.properties) <= 10  # CodePipeline's limit ([UG-LIM])
    assert definition.secret_names == {"Token"}
    assert all(props[n].required for n in ("Owner", "Repository", "Workflow", "Ref", "Token"))
    assert not (props["Inputs"].required or props["ApiUrl"].required)
    assert all(len(p.description) <= 160 for p in definition.properties)
    assert sum(p.queryable for p in definition.properties) == 0


def test_url_templates_use_only_required_non_secret_properties() -> None:
    definition = GitHubAction.definition()
    usable = {p.name for p in definition.properties if p.required and not p.secret}
    settings = definition.document["settings"]
    assert set(settings) == {"entityUrlTemplate", "executionUrlTemplate", "revisionUrlTemplate"}
    for template in settings.values():
        assert template.startswith("https://github.com/{Config:Owner}/{Config:Repository}/")
        assert set(re.findall(r"\{Config:(\w+)\}", template)) <= usable
    assert settings["executionUrlTemplate"].endswith("/actions/runs/{ExternalExecutionId}")


def test_one_input_artifact_at_least_and_no_outputs() -> None:
    document = GitHubAction.definition().document
    assert document["inputArtifactDetails"] == {"minimumCount": 1, "maximumCount": 5}
    assert document["outputArtifactDetails"] == {"minimumCount": 0, "maximumCount": 0}


def test_the_action_is_installed_and_codepipeline_takes_its_type() -> None:
    assert available_actions()["github"] == "actions.github:GitHubAction"
    assert load_action("github") is GitHubAction
    emulator = CodePipelineEmulator()
    with EmulatorServer(emulator) as server:
        made = codepipeline_client(server.url).create_custom_action_type(
            **GitHubAction.definition().document)
    assert made["actionType"]["id"]["provider"] == "GitHubActions"
    emulator.close()
