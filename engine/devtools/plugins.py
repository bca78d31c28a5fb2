"""How an action package ships its own dev tools: an emulator and a sandbox scenario.

Beside its `cpworker.actions` entry point, a package may name, in setup.cfg:

    [options.entry_points]
    cpworker.actions =
        travis = actions.travis:TravisAction
    cpworker.emulators =
        travis = actions.travis.emulator.plugin:EMULATOR
    cpworker.sandboxes =
        travis = actions.travis.emulator.plugin:SCENARIO

`cpworker emulator` then serves every installed emulator beside the CodePipeline one, and
`cpworker sandbox` plays every installed scenario. The engine names no action: it knows them
only through these groups.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Protocol, TypeVar, runtime_checkable

from engine.clock import Clock
from engine.devtools.emulator import App
from engine.errors import ConfigurationProblem
from engine.machine import JobState

EMULATORS = "cpworker.emulators"
"""Entry-point group of EmulatorPlugin objects, named like the action they serve."""

SANDBOXES = "cpworker.sandboxes"
"""Entry-point group of SandboxScenario objects, named like the action they play."""


@runtime_checkable
class EmulatorPlugin(Protocol):
    """An emulator of the service an action calls, served by `cpworker emulator`."""

    @property
    def title(self) -> str:
        """What it emulates, for people: "Travis CI API v3"."""
        ...

    def build(self, clock: Clock, seed: int, options: Mapping[str, str]) -> App:
        """A fresh emulator on `clock`, its ids and faults from `seed`; `options` are the
        user's `--emulator-option NAME.KEY=VALUE` settings for this emulator."""
        ...

    def environment(self, url: str) -> Mapping[str, str]:
        """The environment that points the action at the emulator served at `url`."""
        ...


@dataclass(frozen=True)
class SandboxExecution:
    """One pipeline execution a scenario starts, and how it must end."""

    pipeline: str
    configuration: Mapping[str, str]
    expect: JobState
    story: str
    """What happens to it, in a few words ("build passed", "abandoned mid-run")."""
    abandon: bool = False
    """Stop and abandon the execution in CodePipeline once its job runs an external run."""


@dataclass(frozen=True)
class SandboxReport:
    """What a scenario says after the run, and whether its emulator saw what it should."""

    lines: Sequence[str] = ()
    ok: bool = True


@runtime_checkable
class SandboxScenario(Protocol):
    """A demonstration of one action, played by `cpworker sandbox`."""

    @property
    def action(self) -> str:
        """The action it runs: its name in cpworker.actions."""
        ...

    @property
    def emulator(self) -> str | None:
        """The emulator it drives (its name in cpworker.emulators), or None."""
        ...

    @property
    def emulator_options(self) -> Mapping[str, str]:
        """Options for building that emulator (see EmulatorPlugin.build)."""
        ...

    def prepare(self, emulator: App | None) -> Sequence[SandboxExecution]:
        """Set the emulator up (repositories, how long each run takes, its result) and say
        which executions to start."""
        ...

    def report(self, emulator: App | None, executions: int) -> SandboxReport:
        """After the run: what the emulator saw, for `executions` started executions."""
        ...


P = TypeVar("P")


def _load(group: str, kind: type[P]) -> dict[str, P]:
    found: dict[str, P] = {}
    for point in entry_points(group=group):
        loaded = point.load()
        if not isinstance(loaded, kind):
            raise ConfigurationProblem(
                f"entry point {point.name} = {point.value} of {group} is not a "
                f"{kind.__name__}", fix="name an object with the protocol of "
                f"engine.devtools.plugins.{kind.__name__}")
        found[point.name] = loaded
    return found


def emulators() -> dict[str, EmulatorPlugin]:
    """Every installed emulator, by name."""
    return _load(EMULATORS, EmulatorPlugin)  # type: ignore[type-abstract]


def scenarios() -> dict[str, SandboxScenario]:
    """Every installed sandbox scenario, by name."""
    return _load(SANDBOXES, SandboxScenario)  # type: ignore[type-abstract]

