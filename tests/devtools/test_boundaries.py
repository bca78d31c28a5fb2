"""The engine names no action, and the worker loads none of the dev tools."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.action import available_actions, load_action
from engine.devtools.emulator import CodePipelineEmulator, EmulatorServer
from engine.devtools.testing import codepipeline_client
from tests.devtools.conftest import REPO, subprocess_env


def _imports(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


def test_nothing_under_engine_imports_the_actions_package() -> None:
    sources = sorted((REPO / "engine").rglob("*.py"))
    assert len(sources) > 30
    found = [f"{path.relative_to(REPO)}: import {name}" for path in sources
             for name in _imports(path) if name == "actions" or name.startswith("actions.")]
    assert found == []


DUMP_MODULES = """
import atexit, json, sys

atexit.register(lambda: open(sys.argv[1], "w").write(json.dumps(sorted(sys.modules))))
from engine.cli import main

main(sys.argv[2:], prog_name="cpworker")
"""
"""A real `cpworker` process that writes down every module it loaded, as it exits."""


@pytest.mark.slow
def test_the_worker_process_loads_no_dev_tool(
    tmp_path: Path, codepipeline_emulator: tuple[CodePipelineEmulator, EmulatorServer]
) -> None:
    _, server = codepipeline_emulator
    # Every installed action's type registered, so the run polls each for real (an unknown
    # type exits 4).
    client = codepipeline_client(server.url)
    for cls in (load_action(name) for name in sorted(available_actions())):
        client.create_custom_action_type(**cls.definition().document)
    dump = tmp_path / "modules.json"
    env = {**subprocess_env(), "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}
    done = subprocess.run(
        [sys.executable, "-c", DUMP_MODULES, str(dump), "--db",
         f"sqlite:///{tmp_path / 'state.db'}", "run", "--until-idle", "--poll-interval", "0.2",
         "--endpoint-url", server.url, "--region", "us-east-1"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    loaded = json.loads(dump.read_text())
    # it did run, with both shipped actions
    assert {"engine.worker", "actions.travis", "actions.github"} <= set(loaded)
    unwanted = [name for name in loaded if name.startswith(
        ("engine.devtools", "actions.travis.emulator", "actions.github.emulator", "pytest",
         "_pytest", "tests"))]
    assert unwanted == []
