"""The demo action installed as a real distribution: a `*.dist-info` directory with its
entry points, in a directory put on sys.path (here) or on PYTHONPATH (of a subprocess).

For importlib.metadata that is an installed package like any other, so the engine finds the
demo's action, emulator and sandbox scenario exactly as it finds Travis's.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

ENTRY_POINTS = """\
[cpworker.actions]
demo = tests.plugins.demo_action:DemoAction

[cpworker.emulators]
demo = tests.plugins.demo_action.emulator:EMULATOR

[cpworker.sandboxes]
demo = tests.plugins.demo_action.emulator:SCENARIO
"""


def install(site: Path, entry_points: str = ENTRY_POINTS, name: str = "cpworker_demo") -> Path:
    """Write the dist-info of a distribution that has these entry points; returns `site`."""
    info = site / f"{name}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(entry_points)
    return site


@pytest.fixture
def demo_site(tmp_path: Path) -> Path:
    """A directory in which the demo action is installed."""
    return install(tmp_path / "site")


@pytest.fixture
def demo_installed(demo_site: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The demo action installed in this process too."""
    monkeypatch.syspath_prepend(str(demo_site))
    importlib.invalidate_caches()
    yield demo_site
    importlib.invalidate_caches()


def subprocess_env(site: Path | None = None) -> dict[str, str]:
    """The environment of a `cpworker` subprocess: nothing of AWS or cpworker's own settings
    from the machine, `site` (if given) and the repository on its path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CPWORKER_"))}
    paths = [str(site)] if site is not None else []
    env["PYTHONPATH"] = os.pathsep.join([*paths, str(REPO)])
    return env


CPWORKER = [sys.executable, "-m", "engine.cli"]
