"""The GitHub action's dev tools, as `cpworker emulator` and `cpworker sandbox` find them
(entry-point groups cpworker.emulators and cpworker.sandboxes, see engine.devtools.plugins)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from actions.github.emulator.emulator import GitHubEmulator
from actions.github.settings import API_URL_ENV
from actions.github.target import MARKER_INPUT, REVISION_INPUT
from engine.clock import Clock
from engine.devtools.emulator import App
from engine.devtools.plugins import SandboxExecution, SandboxReport
from engine.errors import ConfigurationProblem
from engine.machine import JobState


def _flag(value: str) -> bool:
    if value.strip().lower() in ("true", "1", "yes"):
        return True
    if value.strip().lower() in ("false", "0", "no"):
        return False
    raise ValueError(value)


_OPTIONS: dict[str, Callable[[str], Any]] = {
    "run_delay": float, "cancel_delay": float, "rate_limit": int, "max_inputs": int,
    "secondary_posts_per_minute": int, "return_run_details_supported": _flag,
    "details_visible_at_once": _flag,
}


@dataclass(frozen=True)
class GitHubEmulatorPlugin:
    title: str = "GitHub Actions"

    def build(self, clock: Clock, seed: int, options: Mapping[str, str]) -> App:
        """Options: run_delay and cancel_delay (seconds), rate_limit (per hour),
        max_inputs, secondary_posts_per_minute, return_run_details_supported (false: GitHub
        Enterprise Server 3.20 and older), details_visible_at_once."""
        given: dict[str, Any] = {}
        for key, value in options.items():
            if key not in _OPTIONS:
                raise ConfigurationProblem(f"the GitHub Actions emulator has no option {key}",
                                           fix=f"use one of {', '.join(sorted(_OPTIONS))}")
            try:
                given[key] = _OPTIONS[key](value)
            except ValueError:
                raise ConfigurationProblem(f"github.{key}={value}: not a valid value") from None
        try:
            return GitHubEmulator(clock=clock, seed=seed, **given)
        except ValueError as error:
            raise ConfigurationProblem(f"github emulator options: {error}") from None

    def environment(self, url: str) -> Mapping[str, str]:
        return {API_URL_ENV: url}


EMULATOR = GitHubEmulatorPlugin()

TOKEN = "sandbox-github-token"
"""A token the sandbox's GitHub emulator accepts; the action gets it as a secret property."""

WORKFLOW = "deploy.yml"
RUN_NAME = (f"Deploy ${{{{ inputs.{REVISION_INPUT} }}}} "
            f"[${{{{ inputs.{MARKER_INPUT} }}}}]")
"""The run-name the action's documentation asks for: it shows the marker the action finds its
run by, and the revision it builds."""


@dataclass(frozen=True)
class _Story:
    pipeline: str
    repo: str
    conclusion: str
    finish_after: float
    abandon: bool = False


@dataclass(frozen=True)
class GitHubScenario:
    """A passing workflow run, a failing one, and one stopped and abandoned in CodePipeline
    while its run goes on (its run must be cancelled)."""

    action: str = "github"
    emulator: str | None = "github"
    emulator_options: Mapping[str, str] = field(
        default_factory=lambda: {"run_delay": "1.0", "cancel_delay": "1.0"})
    stories: tuple[_Story, ...] = (
        _Story("site-release", "acme/site", "success", finish_after=6.0),
        _Story("worker-release", "acme/worker", "failure", finish_after=5.0),
        _Story("infra-release", "acme/infra", "success", finish_after=120.0, abandon=True),
    )

    def prepare(self, emulator: App | None) -> Sequence[SandboxExecution]:
        github = _github(emulator)
        executions = []
        for story in self.stories:
            github.add_repository(story.repo, token=TOKEN, workflows={WORKFLOW: {
                "name": "Deploy", "run_name": RUN_NAME,
                "inputs": {REVISION_INPUT: {"required": True}, MARKER_INPUT: {}}}})
            github.set_schedule(story.repo, start_after=1.5, finish_after=story.finish_after,
                                conclusion=story.conclusion)
            owner, name = story.repo.split("/")
            expect = JobState.ABANDONED if story.abandon else (
                JobState.SUCCEEDED if story.conclusion == "success" else JobState.FAILED)
            executions.append(SandboxExecution(
                story.pipeline,
                {"Owner": owner, "Repository": name, "Workflow": WORKFLOW, "Ref": "main",
                 "Token": TOKEN},
                expect, f"{story.repo} "
                f"({'abandoned mid-run' if story.abandon else 'run ' + story.conclusion})",
                abandon=story.abandon))
        return executions

    def report(self, emulator: App | None, executions: int) -> SandboxReport:
        github = _github(emulator)
        lines = [f"GitHub run {run['id']} of {run['repository']} ({run['display_title']}): "
                 f"{run['status']}" + (f"/{run['conclusion']}" if run["conclusion"] else "")
                 for run in github.runs()]
        dispatched = sum(github.dispatches().values())
        lines.append(f"GitHub dispatches: {dispatched} for {executions} executions")
        return SandboxReport(lines, ok=dispatched == executions)


def _github(emulator: App | None) -> GitHubEmulator:
    if not isinstance(emulator, GitHubEmulator):
        raise ConfigurationProblem("the GitHub sandbox scenario needs the GitHub Actions "
                                   "emulator")
    return emulator


SCENARIO = GitHubScenario()
