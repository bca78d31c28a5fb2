"""Plug-ins carry their own tools: a second action package, installed only by a dist-info
directory, brings its emulator to `cpworker emulator` and its scenario to `cpworker sandbox`."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from engine.cli import main
from engine.devtools.plugins import EmulatorPlugin, SandboxScenario, emulators, scenarios
from tests.devtools.conftest import CPWORKER, REPO, install, subprocess_env


def test_installed_plugins_are_found_by_entry_point(demo_installed: Path) -> None:
    found, played = emulators(), scenarios()
    assert {"travis", "demo"} <= set(found) and {"travis", "demo"} <= set(played)
    assert isinstance(found["demo"], EmulatorPlugin)
    assert isinstance(played["demo"], SandboxScenario)
    assert found["demo"].environment("http://127.0.0.1:1") == {
        "CPWORKER_DEMO_URL": "http://127.0.0.1:1"}


def test_an_entry_point_without_the_protocol_is_refused_by_name(tmp_path: Path) -> None:
    site = install(tmp_path / "site", "[cpworker.emulators]\nbroken = engine.defaults:DB_URL\n",
                   name="cpworker_broken")
    done = subprocess.run([*CPWORKER, "emulator", "--port", "0"], cwd=REPO,
                          env=subprocess_env(site), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "broken = engine.defaults:DB_URL" in done.stderr
    assert "EmulatorPlugin" in done.stderr


def test_the_sandbox_refuses_an_unknown_scenario() -> None:
    result = CliRunner().invoke(main, ["sandbox", "--action", "nope"])
    assert result.exit_code == 2
    assert "no sandbox scenario named nope" in result.output


def test_the_emulator_command_serves_every_installed_emulator(demo_site: Path) -> None:
    process = subprocess.Popen(
        [*CPWORKER, "emulator", "--port", "0", "--port-for", "travis=0",
         "--emulator-option", "demo.duration=0.1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO,
        env=subprocess_env(demo_site), start_new_session=True)
    try:
        assert process.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 30
        while not any("Press Ctrl-C" in line for line in lines):
            assert time.monotonic() < deadline and process.poll() is None, "".join(lines)
            lines.append(process.stdout.readline())
        text = "".join(lines)
        assert re.search(r"Demo service emulator \(demo\): http://127\.0\.0\.1:\d+", text), text
        assert re.search(r"Travis CI emulator \(travis\): http://127\.0\.0\.1:\d+", text), text
        demo = re.search(r"export CPWORKER_DEMO_URL=(\S+)", text)
        assert demo and "export CPWORKER_TRAVIS_API_URL=" in text, text
        started = requests.post(f"{demo.group(1)}/runs", json={"result": "failed"},
                                timeout=5).json()
        time.sleep(0.2)  # the duration option reached the demo's emulator: 0.1 s
        assert requests.get(f"{demo.group(1)}/runs/{started['id']}", timeout=5).json() == {
            "id": started["id"], "state": "failed"}
        process.send_signal(signal.SIGINT)
        assert process.wait(15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def test_the_emulator_command_refuses_a_port_for_no_installed_emulator() -> None:
    result = CliRunner().invoke(main, ["emulator", "--port", "0", "--port-for", "nope=1"])
    assert result.exit_code == 2
    assert "no emulator named nope" in result.output


@pytest.mark.slow
def test_the_sandbox_plays_the_demo_scenario(demo_site: Path, tmp_path: Path) -> None:
    done = subprocess.run([*CPWORKER, "sandbox", "--action", "demo"], cwd=tmp_path,
                          env=subprocess_env(demo_site), capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert re.search(r"Demo service emulator +http://127\.0\.0\.1:\d+", out), out
    assert "Test/Custom/Demo/1 (created)" in out
    assert "demo-green: a demo run that passes" in out
    assert "demo-red: a demo run that fails" in out
    assert "Demo runs: 2 for 2 executions" in out
    assert "Travis" not in out  # only the scenario asked for
