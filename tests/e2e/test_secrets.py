"""Secrets never rest: not in the database file, not in a log line, not in any command's output.

The secrets are the job's secret configuration value (Token) and every set of artifact
credentials the emulator handed out, by PollForJobs and by GetJobDetails after a restart. The
worker is killed once on the way, so it has to fetch them again: a second chance to leak them.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from tests.e2e.conftest import E2E

pytestmark = pytest.mark.slow


def _secrets(e2e: E2E) -> dict[str, str]:
    """Every secret value CodePipeline sent, named for the failure message."""
    found = {f"Token of {e.pipeline_execution_id}": e.token for e in e2e.executions}
    for job in e2e.emulator.jobs():
        for n, credentials in enumerate(job["artifactCredentials"]):
            for name, value in credentials.items():
                found[f"{name} #{n + 1} of job {job['id']}"] = value
    return found


def _files(db_path: Path) -> dict[str, bytes]:
    """The database's bytes as they lie on disk, write-ahead log included."""
    return {p.name: p.read_bytes() for p in db_path.parent.glob(db_path.name + "*")}


def _dump(db_path: Path) -> str:
    """Every table, as `sqlite3 .dump` writes it."""
    with closing(sqlite3.connect(db_path)) as connection:
        return "\n".join(connection.iterdump())


def _contains(haystack: str | bytes, value: str) -> bool:
    return value.encode() in haystack if isinstance(haystack, bytes) else value in haystack


def _assert_absent(secret_values: dict[str, str], haystacks: dict[str, str | bytes]) -> None:
    leaks = [f"{name} in {where}" for where, haystack in haystacks.items()
             for name, value in secret_values.items() if _contains(haystack, value)]
    assert not leaks, leaks


def test_no_secret_is_stored_logged_or_shown(e2e: E2E) -> None:
    e2e.start("pass")
    e2e.start("fail")
    refused = e2e.start("pass", token=f"not-the-ledger-secret-{secrets.token_hex(16)}")

    crashed = e2e.crash("before:submit")
    on_disk_after_crash = _files(e2e.db_path)
    runs = e2e.finish(env={"CPWORKER_LOG_FORMAT": "json"})
    e2e.assert_ended_right()

    # The restarted worker had only the database: it fetched the secrets again.
    assert e2e.emulator.call_counts().get("GetJobDetails", 0) >= 1
    assert any(len(j["artifactCredentials"]) >= 2 for j in e2e.emulator.jobs())
    # The ledger got the real tokens (it starts runs only for its own prefix) and refused the
    # other one, so the configuration the action saw was the secret one, not "****".
    assert len(e2e.submissions()) == 2
    refusal = e2e.emulator_execution(refused)["failureDetails"]
    assert refusal["type"] == "PermissionError"
    assert refusal["message"] == "the ledger refused the token"

    found = _secrets(e2e)
    assert len(found) >= 3 + 3 * 6  # three tokens, credentials for six jobs at least
    everything = json.dumps(e2e.emulator.jobs())
    assert all(value in everything for value in found.values())  # the search itself works

    haystacks: dict[str, str | bytes] = {
        f"{name} after the crash": data for name, data in on_disk_after_crash.items()
    }
    assert "state.db-wal" in on_disk_after_crash  # what a killed process leaves behind
    haystacks.update({f"{name} at the end": data for name, data in _files(e2e.db_path).items()})
    dump = _dump(e2e.db_path)
    haystacks["sqlite3 dump"] = dump

    haystacks["text log of the killed worker"] = crashed.output()
    assert "starting: 0 unfinished job(s)" in crashed.stderr
    for n, run in enumerate(runs):
        haystacks[f"JSON log of restart {n + 1}"] = run.output()
        lines = [json.loads(line) for line in run.stderr.splitlines() if line.strip()]
        assert any(line.get("job_id") for line in lines)

    listed = e2e.cli("jobs", "--json")
    haystacks["jobs --json"] = listed.output
    replayed = e2e.cli("replay", "--all", "--json")
    assert json.loads(replayed.stdout)["ok"] is True
    haystacks["replay --all --json"] = replayed.output
    job_ids = [row["job_id"] for row in json.loads(listed.stdout)]
    assert len(job_ids) == 5  # two executions handed on once, the refused one did not
    for job_id in job_ids:
        assert job_id in dump
        shown = e2e.cli("inspect", job_id, "--json")
        haystacks[f"inspect {job_id} --json"] = shown.output
        haystacks[f"inspect {job_id}"] = e2e.cli("inspect", job_id).output
        acquired = json.loads(shown.stdout)["events"][0]["data"]
        assert acquired["pipeline"]["configuration"]["Token"] == "****"
        assert acquired["pipeline"]["configuration"]["Ledger"] == str(e2e.ledger)

    _assert_absent(found, haystacks)
