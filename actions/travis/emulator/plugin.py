"""The Travis action's dev tools, as `cpworker emulator` and `cpworker sandbox` find them
(entry-point groups cpworker.emulators and cpworker.sandboxes, see engine.devtools.plugins)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from actions.travis.emulator.emulator import TravisEmulator
from engine.clock import Clock
from engine.devtools.emulator import App
from engine.devtools.plugins import SandboxExecution, SandboxReport
from engine.errors import ConfigurationProblem
from engine.machine import JobState

_OPTIONS = {"build_delay": float, "cancel_delay": float, "request_limit": int}


@dataclass(frozen=True)
class TravisEmulatorPlugin:
    title: str = "Travis CI"

    def build(self, clock: Clock, seed: int, options: Mapping[str, str]) -> App:
        """Options: build_delay and cancel_delay (seconds), request_limit (per hour)."""
        given: dict[str, float] = {}
        for key, value in options.items():
            if key not in _OPTIONS:
                raise ConfigurationProblem(f"the Travis CI emulator has no option {key}",
                                           fix=f"use one of {', '.join(sorted(_OPTIONS))}")
            try:
                given[key] = _OPTIONS[key](value)
            except ValueError:
                raise ConfigurationProblem(
                    f"travis.{key}={value}: not a number") from None
        return TravisEmulator(clock=clock, seed=seed, build_delay=given.get("build_delay", 2.0),
                              cancel_delay=given.get("cancel_delay", 1.0),
                              request_limit=int(given.get("request_limit", 10)))

    def environment(self, url: str) -> Mapping[str, str]:
        return {"CPWORKER_TRAVIS_API_URL": url}


EMULATOR = TravisEmulatorPlugin()

TOKEN = "sandbox-travis-token"
"""A token the sandbox's Travis emulator accepts; the action gets it as a secret property."""


@dataclass(frozen=True)
class _Story:
    pipeline: str
    repo: str
    result: str
    finish_after: float
    abandon: bool = False


@dataclass(frozen=True)
class TravisScenario:
    """A passing build, a failing build, and one stopped and abandoned in CodePipeline while
    its build runs (its build must be cancelled)."""

    action: str = "travis"
    emulator: str | None = "travis"
    emulator_options: Mapping[str, str] = field(default_factory=lambda: {"build_delay": "1.0"})
    stories: tuple[_Story, ...] = (
        _Story("web-release", "acme/web", "passed", finish_after=6.0),
        _Story("api-release", "acme/api", "failed", finish_after=5.0),
        _Story("docs-release", "acme/docs", "passed", finish_after=120.0, abandon=True),
    )

    def prepare(self, emulator: App | None) -> Sequence[SandboxExecution]:
        travis = _travis(emulator)
        executions = []
        for story in self.stories:
            travis.add_repository(story.repo, token=TOKEN)
            travis.set_schedule(story.repo, start_after=1.5, finish_after=story.finish_after,
                                result=story.result)
            owner, name = story.repo.split("/")
            expect = JobState.ABANDONED if story.abandon else (
                JobState.SUCCEEDED if story.result == "passed" else JobState.FAILED)
            executions.append(SandboxExecution(
                story.pipeline,
                {"Owner": owner, "ProjectName": name, "Branch": "main", "APIToken": TOKEN},
                expect, f"{story.repo} "
                f"({'abandoned mid-run' if story.abandon else 'build ' + story.result})",
                abandon=story.abandon))
        return executions

    def report(self, emulator: App | None, executions: int) -> SandboxReport:
        travis = _travis(emulator)
        lines = [f"Travis build {build['id']} of {build['repository']}: {build['state']}"
                 for build in travis.builds()]
        submitted = len(travis.requests())
        lines.append(f"Travis requests: {submitted} for {executions} executions")
        return SandboxReport(lines, ok=submitted == executions)


def _travis(emulator: App | None) -> TravisEmulator:
    if not isinstance(emulator, TravisEmulator):
        raise ConfigurationProblem("the Travis sandbox scenario needs the Travis CI emulator")
    return emulator


SCENARIO = TravisScenario()
