"""`cpworker emulator` and `cpworker sandbox` as a user runs them: real processes, loopback only."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from engine.devtools.testing import codepipeline_client
from tests.e2e.conftest import REPO


def test_the_emulator_command_prints_where_it_listens_and_stops_on_sigterm() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "emulator", "--port", "0", "--port-for", "travis=0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO,
        start_new_session=True)
    try:
        assert process.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 20
        while not any("Press Ctrl-C" in line for line in lines):
            assert time.monotonic() < deadline, "".join(lines)
            lines.append(process.stdout.readline())
        text = "".join(lines)
        cp_url = re.search(r"AWS_ENDPOINT_URL_CODEPIPELINE=(\S+)", text)
        travis_url = re.search(r"CPWORKER_TRAVIS_API_URL=(\S+)", text)
        assert cp_url and travis_url, text
        assert cp_url.group(1).startswith("http://127.0.0.1:")
        assert travis_url.group(1).startswith("http://127.0.0.1:")
        client = codepipeline_client(cp_url.group(1))
        assert client.list_action_types(actionOwnerFilter="Custom")["actionTypes"] == []
        health = requests.get(f"{travis_url.group(1)}/_emulator/health", timeout=5).json()
        assert health["ok"] is True
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


@pytest.mark.slow
def test_the_sandbox_shows_a_pass_a_failure_and_a_cancelled_build(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CPWORKER_"))}
    env["TMPDIR"] = str(tmp_path)  # where its fresh directory goes: nothing left in the clone
    done = subprocess.run([sys.executable, "-m", "engine.cli", "sandbox"], cwd=REPO,
                          env={**env, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "Test/Custom/Travis/1 (created)" in out
    assert "Travis requests: 3 for 3 executions" in out
    assert re.search(r"Travis build \d+ of acme/web: passed", out)
    assert re.search(r"Travis build \d+ of acme/api: failed", out)
    assert re.search(r"Travis build \d+ of acme/docs: canceled", out)
    assert "job_rejected" in out and "run_cancelled" in out
    assert "sandbox-travis-token" not in out + done.stderr
    made = re.search(r"^sandbox directory\s+(\S+)$", out, re.MULTILINE)
    assert made and Path(made.group(1)).parent == tmp_path.resolve(), out
    db = Path(made.group(1)) / "state.db"
    assert db.exists() and f"sqlite:///{db}" in out
    for stored in db.parent.glob("state.db*"):  # the -wal file too, if one is left
        assert b"sandbox-travis-token" not in stored.read_bytes(), stored.name


def _sandbox(directory: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CPWORKER_"))}
    return subprocess.run([sys.executable, "-m", "engine.cli", "sandbox", "--dir", str(directory)],
                          cwd=REPO, env={**env, "PYTHONPATH": str(REPO)}, capture_output=True,
                          text=True, timeout=120)


def test_the_sandbox_never_empties_a_directory_it_did_not_make(tmp_path: Path) -> None:
    home = tmp_path / "my-project"
    home.mkdir()
    (home / "notes.txt").write_text("keep me")
    refused = _sandbox(home)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr.strip().splitlines() == [
        f"cpworker: {home} is not empty and was not made by cpworker sandbox; it is left as it "
        "is. Fix: give a new or empty directory to --dir, or leave --dir out (a fresh temporary "
        "directory is used)"]
    assert sorted(p.name for p in home.iterdir()) == ["notes.txt"]
    assert (home / "notes.txt").read_text() == "keep me"
    file = tmp_path / "a-file"
    file.write_text("x")
    assert _sandbox(file).returncode == 2 and file.read_text() == "x"


@pytest.mark.slow
def test_the_sandbox_reuses_the_directory_it_made(tmp_path: Path) -> None:
    mine = tmp_path / "sandbox"
    first = _sandbox(mine)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    assert (mine / ".cpworker-sandbox").is_file() and (mine / "state.db").exists()
    (mine / "leftover").write_text("from the first run")
    again = _sandbox(mine)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert not (mine / "leftover").exists()  # its own directory is emptied for each run
