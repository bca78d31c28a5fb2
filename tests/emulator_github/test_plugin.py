"""The emulator as the GitHub action ships it: the `cpworker emulator` plugin, the sandbox
scenario's set-up, and the pytest fixture."""

from __future__ import annotations

import re
import signal
import subprocess
import time

import pytest
import requests

from actions.github.emulator import GitHubEmulator
from actions.github.emulator.fixtures import github_emulator  # noqa: F401  (the fixture)
from actions.github.emulator.plugin import EMULATOR, SCENARIO, TOKEN
from actions.github.settings import API_URL_ENV
from engine.clock import FakeClock
from engine.devtools.emulator import EmulatorServer
from engine.devtools.plugins import EmulatorPlugin, SandboxScenario, emulators, scenarios
from engine.errors import ConfigurationProblem
from engine.machine import JobState
from tests.devtools.conftest import CPWORKER, REPO, subprocess_env


def test_the_plugins_are_installed_under_the_action_name() -> None:
    assert isinstance(emulators()["github"], EmulatorPlugin)
    assert isinstance(scenarios()["github"], SandboxScenario)
    assert EMULATOR.environment("http://127.0.0.1:1") == {API_URL_ENV: "http://127.0.0.1:1"}
    assert API_URL_ENV == "CPWORKER_GITHUB_API_URL"


def test_build_takes_the_options_and_refuses_unknown_ones() -> None:
    app = EMULATOR.build(FakeClock(), 3, {"run_delay": "0.5", "rate_limit": "10",
                                          "return_run_details_supported": "false"})
    assert isinstance(app, GitHubEmulator)
    assert app.behaviour()["run_delay"] == 0.5 and app.behaviour()["rate_limit"] == 10
    assert app.behaviour()["return_run_details_supported"] is False
    with pytest.raises(ConfigurationProblem, match="no option colour"):
        EMULATOR.build(FakeClock(), 3, {"colour": "red"})
    with pytest.raises(ConfigurationProblem, match=r"github\.run_delay=soon"):
        EMULATOR.build(FakeClock(), 3, {"run_delay": "soon"})


def test_the_scenario_prepares_three_repositories_the_action_can_dispatch_to() -> None:
    github = GitHubEmulator(clock=FakeClock())
    executions = SCENARIO.prepare(github)
    assert [e.expect for e in executions] == [JobState.SUCCEEDED, JobState.FAILED,
                                              JobState.ABANDONED]
    assert [e.abandon for e in executions] == [False, False, True]
    for execution in executions:
        assert execution.configuration["Token"] == TOKEN
        assert set(execution.configuration) == {"Owner", "Repository", "Workflow", "Ref",
                                                "Token"}
    report = SCENARIO.report(github, 3)
    assert not report.ok and report.lines == ["GitHub dispatches: 0 for 3 executions"]


def test_the_fixture_serves_an_emulator_on_loopback(
        github_emulator: tuple[GitHubEmulator, EmulatorServer]) -> None:  # noqa: F811
    emulator, server = github_emulator
    emulator.add_repository("a/b", token="t", workflows={"w.yml": {}})
    assert server.url.startswith("http://127.0.0.1:")
    answer = requests.post(f"{server.url}/repos/a/b/actions/workflows/w.yml/dispatches",
                           json={"ref": "main", "return_run_details": True},
                           headers={"Authorization": "Bearer t"}, timeout=10)
    assert answer.status_code == 200
    assert emulator.runs()[0]["id"] == answer.json()["workflow_run_id"]


def test_the_emulator_command_serves_it() -> None:
    process = subprocess.Popen(
        [*CPWORKER, "emulator", "--port", "0", "--port-for", "github=0", "--port-for",
         "travis=0", "--emulator-option", "github.run_delay=0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO,
        env=subprocess_env(), start_new_session=True)
    try:
        assert process.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 30
        while not any("Press Ctrl-C" in line for line in lines):
            assert time.monotonic() < deadline and process.poll() is None, "".join(lines)
            lines.append(process.stdout.readline())
        text = "".join(lines)
        assert re.search(r"GitHub Actions emulator \(github\): http://127\.0\.0\.1:\d+", text)
        url = re.search(r"export CPWORKER_GITHUB_API_URL=(\S+)", text)
        assert url, text
        base = url.group(1)
        assert requests.get(f"{base}/_emulator/health", timeout=5).json() == {
            "ok": True, "service": "github"}
        assert requests.post(f"{base}/_emulator/repos", json={
            "repository": "acme/web", "token": "ghp_t", "workflows": {"ci.yml": {}}},
            timeout=5).status_code == 201
        assert requests.post(f"{base}/repos/acme/web/actions/workflows/ci.yml/dispatches",
                             json={"ref": "main"}, headers={"Authorization": "Bearer ghp_t"},
                             timeout=5).status_code == 204
        # run_delay=0 reached the emulator: the run is listed at once.
        listed = requests.get(f"{base}/repos/acme/web/actions/workflows/ci.yml/runs",
                              headers={"Authorization": "Bearer ghp_t"}, timeout=5).json()
        assert listed["total_count"] == 1
        process.send_signal(signal.SIGINT)
        assert process.wait(15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
