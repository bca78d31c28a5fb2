"""Configuration mistakes fail the job at once, with the property and the fix; GitHub's
refusals become the failure type an operator can act on; the worker's own settings are read at
start."""

from __future__ import annotations

import pytest

from actions.github import GitHubAction
from actions.github.action import LOOKUP_HORIZON
from actions.github.emulator import GitHubEmulator
from actions.github.settings import GitHubSettings
from actions.github.target import Target, web_url
from engine import Failed, FailureType, FakeClock
from engine.errors import ConfigurationProblem
from tests.github.conftest import READ_ONLY, REPO, TOKEN, Job, Wire, configuration


@pytest.mark.parametrize("changes, named", [
    ({"Owner": ""}, "Owner is empty"),
    ({"Repository": "octo/app"}, "Repository 'octo/app'"),
    ({"Workflow": "deploy"}, "Workflow 'deploy'"),
    ({"Ref": "has space"}, "Ref 'has space'"),
    ({"Token": "line\nbreak"}, "Token contains a line break"),
    ({"Inputs": "[1, 2]"}, "Inputs must be a JSON object"),
    ({"Inputs": "{not json"}, "Inputs is not JSON"),
    ({"Inputs": '{"cpworker_marker": "x"}'}, "Inputs may not set cpworker_marker"),
    ({"Inputs": '{"a": {"b": 1}}'}, "Inputs' a must be a string"),
    ({"ApiUrl": "ftp://github.example.com"}, "is not an http(s) URL"),
])
def test_a_wrong_property_fails_as_configuration_error_naming_it(
    changes: dict[str, str], named: str, action: GitHubAction, clock: FakeClock, wire: Wire
) -> None:
    outcome = Job(clock, config=changes).submit(action)
    assert isinstance(outcome, Failed)
    assert outcome.failure_type is FailureType.CONFIGURATION_ERROR
    assert named in outcome.message and "Fix:" in outcome.message
    assert "\n" not in outcome.message and wire.seen == []


def test_inputs_become_strings_and_the_workflow_path_is_accepted() -> None:
    target = Target.parse(configuration(Inputs='{"n": 3, "go": true, "s": "x"}',
                                        Workflow=".github/workflows/deploy.yml"))
    assert isinstance(target, Target)
    assert target.inputs == {"n": "3", "go": "true", "s": "x"}
    assert target.repo.workflow == "deploy.yml"
    assert target.endpoint.url == "https://api.github.com"


@pytest.mark.parametrize("changes, failure_type, says", [
    ({"Token": "ghp_not_a_token_anyone_knows"}, FailureType.PERMISSION_ERROR, "valid"),
    ({"Token": READ_ONLY}, FailureType.PERMISSION_ERROR, "Actions: Read and write"),
    ({"Repository": "missing"}, FailureType.CONFIGURATION_ERROR, "check Owner and Repository"),
    ({"Workflow": "absent.yml"}, FailureType.CONFIGURATION_ERROR, "Workflow (absent.yml"),
    ({"Workflow": "push-only.yml"}, FailureType.CONFIGURATION_ERROR,
     "add a workflow_dispatch trigger"),
    ({"Workflow": "bare.yml"}, FailureType.CONFIGURATION_ERROR, "declare every input"),
    ({"Ref": "no-such-branch"}, FailureType.CONFIGURATION_ERROR, "set the action's Ref"),
])
def test_githubs_refusals_become_failures_with_the_fix(
    changes: dict[str, str], failure_type: FailureType, says: str, action: GitHubAction,
    github: GitHubEmulator, clock: FakeClock,
) -> None:
    outcome = Job(clock, config=changes).submit(action)
    assert isinstance(outcome, Failed), outcome
    assert outcome.failure_type is failure_type
    assert says in outcome.message and "Fix:" in outcome.message
    assert TOKEN not in outcome.message and github.runs(REPO) == []


def test_a_required_input_missing_from_inputs_is_named(
    action: GitHubAction, github: GitHubEmulator, clock: FakeClock
) -> None:
    github.add_workflow(REPO, "needs.yml", inputs={"cpworker_marker": {},
                                                   "cpworker_revision": {},
                                                   "environment": {"required": True}})
    outcome = Job(clock, Workflow="needs.yml").submit(action)
    assert isinstance(outcome, Failed)
    assert outcome.failure_type is FailureType.CONFIGURATION_ERROR
    assert "required input" in outcome.message and "Inputs property" in outcome.message


@pytest.mark.parametrize("environ, problem", [
    ({"CPWORKER_GITHUB_TIMEOUT": "0"}, "CPWORKER_GITHUB_TIMEOUT"),
    ({"CPWORKER_GITHUB_RUN_DELAY": "soon"}, "CPWORKER_GITHUB_RUN_DELAY"),
])
def test_bad_settings_stop_the_worker_at_start(environ: dict[str, str], problem: str) -> None:
    with pytest.raises(ConfigurationProblem, match=problem):
        GitHubSettings.from_environ(environ)


def test_settings_come_from_the_environment_when_the_action_is_made(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CPWORKER_GITHUB_API_URL", "http://127.0.0.1:4702")
    monkeypatch.setenv("CPWORKER_GITHUB_TIMEOUT", "4")
    monkeypatch.setenv("CPWORKER_GITHUB_RUN_DELAY", "2")
    action = GitHubAction()
    assert action.settings == GitHubSettings("http://127.0.0.1:4702", 4.0, 2.0)
    assert action.submit_grace == 5.0 + 4.0 + 2.0 + 1.0
    assert LOOKUP_HORIZON == 24 * 3600.0


@pytest.mark.parametrize("api, web", [
    ("https://api.github.com", "https://github.com"),
    ("https://github.example.com/api/v3", "https://github.example.com"),
    ("http://127.0.0.1:4702", "https://github.com"),
])
def test_run_links_follow_the_api_url(api: str, web: str) -> None:
    assert web_url(api) == web
