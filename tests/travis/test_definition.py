"""travis.json: a type CodePipeline accepts, whose console links can actually be filled in."""

from __future__ import annotations

import re

import pytest

from actions.travis import TravisAction
from actions.travis.action import web_url
from engine.action import load_action


def test_the_type_is_a_custom_test_action_named_travis() -> None:
    definition = TravisAction.definition()
    assert str(definition.type_id) == "Test/Custom/Travis/1"
    props = {p.name: p for p in definition.properties}
    assert set(props) == {"Owner", "ProjectName", "Branch", "APIToken", "ApiUrl",
                          "BuildBranchHead"}
    # CodePipeline takes at most 10 configuration properties per action type ([UG-LIM]).
    assert len(definition.properties) <= 10
    assert props["BuildBranchHead"].type == "Boolean"
    assert not (props["BuildBranchHead"].required or props["BuildBranchHead"].key
                or props["BuildBranchHead"].secret)
    assert definition.secret_names == {"APIToken"}
    assert props["Owner"].key and props["ProjectName"].key
    assert all(props[n].required for n in ("Owner", "ProjectName", "Branch", "APIToken"))
    assert not props["ApiUrl"].required and not props["ApiUrl"].secret
    assert all(len(p.description) <= 160 for p in definition.properties)
    assert sum(p.queryable for p in definition.properties) == 0


def test_url_templates_use_only_required_non_secret_properties() -> None:
    definition = TravisAction.definition()
    usable = {p.name for p in definition.properties if p.required and not p.secret}
    settings = definition.document["settings"]
    for template in settings.values():
        assert template.startswith("https://app.travis-ci.com/github/")
        assert len(template) <= 2048
        assert set(re.findall(r"\{Config:(\w+)\}", template)) <= usable
    assert settings["executionUrlTemplate"].endswith("/builds/{ExternalExecutionId}")


def test_no_output_artifacts_and_optional_inputs() -> None:
    document = TravisAction.definition().document
    assert document["inputArtifactDetails"] == {"minimumCount": 0, "maximumCount": 5}
    assert document["outputArtifactDetails"] == {"minimumCount": 0, "maximumCount": 0}


def test_the_class_loads_by_module_path() -> None:
    assert load_action("actions.travis:TravisAction") is TravisAction


@pytest.mark.parametrize("api, web", [
    ("https://api.travis-ci.com", "https://app.travis-ci.com/github"),
    ("https://travis.example.com/api/", "https://travis.example.com"),
    ("http://127.0.0.1:4701", "https://app.travis-ci.com/github"),
])
def test_build_links_follow_the_api_url(api: str, web: str) -> None:
    assert web_url(api) == web
