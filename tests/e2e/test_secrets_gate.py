"""One gate for secrets: an action that echoes its token and its artifact credentials in every
text it returns, and in an exception, leaks none of them anywhere.

The action (tests/actions/echo.py) is as careless as an action can be. Its tokens hold a
newline, quotes, a backslash and non-ASCII characters, so a library prints them escaped
(repr, JSON, URL-encoded), in forms a plain search for the value would miss. The worker runs as
a real `cpworker run` subprocess against the CodePipeline emulator; it is killed once on the way,
so the restarted worker fetches the secrets again (and CodePipeline issues new credentials,
echoed too). Then every form of every secret is looked for in the database file and its
write-ahead log, the text and JSON logs, the output of `cpworker jobs/inspect/replay`, and every
result call CodePipeline received.
"""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import closing
from pathlib import Path

import pytest

from engine.devtools.testing import codepipeline_client
from engine.secrets import REDACTED, forms
from tests.actions.echo import EchoAction
from tests.e2e.conftest import E2E, WorkerProcess

pytestmark = pytest.mark.slow

ECHO_ACTION = "tests.actions.echo:EchoAction"
ECHO_TYPE = "Test/Custom/Echo/1"
TOKENS = {
    "pass": "echo-secret\nline two é☃ 9c1f",
    "fail": 'echo-"quoted" \\ back\u00e9slash\n7e2a',
}
"""One execution that passes and one that fails, each with its own token."""


def _secrets(e2e: E2E) -> dict[str, str]:
    """Every secret value: the tokens and every set of credentials CodePipeline handed out."""
    found = {f"Token of the {outcome} execution": token for outcome, token in TOKENS.items()}
    for job in e2e.emulator.jobs():
        for n, credentials in enumerate(job["artifactCredentials"]):
            for name, value in credentials.items():
                found[f"{name} #{n + 1} of job {job['id']}"] = value
    return found


def _leaks(secret_values: dict[str, str], haystacks: dict[str, str | bytes]) -> list[str]:
    found = []
    for where, haystack in haystacks.items():
        for name, value in secret_values.items():
            for form in forms(value):
                needle: str | bytes = form.encode() if isinstance(haystack, bytes) else form
                if needle in haystack:  # type: ignore[operator]
                    found.append(f"{name}, as {form!r}, in {where}")
    return found


def _files(db_path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in db_path.parent.glob(db_path.name + "*")}


def _dump(db_path: Path) -> str:
    with closing(sqlite3.connect(db_path)) as connection:
        return "\n".join(connection.iterdump())


def _run_to_the_end(e2e: E2E, executions: dict[str, str]) -> list[WorkerProcess]:
    """`cpworker run --until-idle` (JSON logs) until both executions have ended."""
    runs = []
    deadline = time.monotonic() + 60
    while True:
        worker = e2e.run("--action", ECHO_ACTION, env={"CPWORKER_LOG_FORMAT": "json"})
        assert worker.returncode == 0, worker.stderr[-4000:]
        runs.append(worker)
        statuses = [e2e.emulator.execution(p)["status"] for p in executions.values()]
        if all(s not in ("InProgress", "Stopping") for s in statuses):
            return runs
        assert time.monotonic() < deadline, statuses
        time.sleep(0.5)


def test_an_action_echoing_its_secrets_everywhere_leaks_none(e2e: E2E) -> None:
    codepipeline_client(e2e.url).create_custom_action_type(
        **EchoAction.definition().document)
    executions = {
        outcome: e2e.emulator.start_execution(
            ECHO_TYPE, {"Outcome": outcome, "Steps": "2", "Token": token}, action="Echo",
            pipeline_name=f"echo-{outcome}")["pipelineExecutionId"]
        for outcome, token in TOKENS.items()
    }

    crashed = e2e.crash("before:check", "--action", ECHO_ACTION)
    on_disk_after_crash = _files(e2e.db_path)
    runs = _run_to_the_end(e2e, executions)

    # The echo really happened, and came out redacted: the search below is not vacuous.
    passed = e2e.emulator.execution(executions["pass"])
    assert passed["status"] == "Succeeded", passed
    assert passed["outputVariables"]["Token"] == REDACTED
    assert passed["outputVariables"]["Echo"] == (
        f"token {REDACTED} key {REDACTED} secret {REDACTED} session {REDACTED}")
    failed = e2e.emulator.execution(executions["fail"])
    assert failed["status"] == "Failed", failed
    assert failed["failureDetails"]["type"] == "JobFailed"
    assert failed["failureDetails"]["message"].startswith(f"echo failed with token {REDACTED}")
    assert e2e.emulator.call_counts().get("GetJobDetails", 0) >= 1  # fetched again after the kill

    listed = e2e.cli("jobs", "--json")
    job_ids = [row["job_id"] for row in json.loads(listed.stdout)]
    assert len(job_ids) >= 4  # each execution handed on at least once
    with e2e.store() as store:
        events = [e for job_id in job_ids for e in store.history(job_id)]
    raised = [e for e in events if "RuntimeError" in json.dumps(e.data)]
    assert raised and all(REDACTED in json.dumps(e.data) for e in raised)
    assert any("echo waits" in json.dumps(e.data) for e in events)  # the RetryLater's reason

    haystacks: dict[str, str | bytes] = {
        f"{name} after the kill": data for name, data in on_disk_after_crash.items()}
    assert "state.db-wal" in on_disk_after_crash
    haystacks.update({f"{name} at the end": data for name, data in _files(e2e.db_path).items()})
    haystacks["sqlite3 dump"] = _dump(e2e.db_path)
    haystacks["text log of the killed worker"] = crashed.output()
    for n, run in enumerate(runs):
        haystacks[f"JSON log of run {n + 1}"] = run.output()
    haystacks["jobs --json"] = listed.output
    haystacks["jobs"] = e2e.cli_process("jobs").stdout
    replayed = e2e.cli("replay", "--all", "--json")
    assert json.loads(replayed.stdout)["ok"] is True
    haystacks["replay --all --json"] = replayed.output
    for job_id in job_ids:
        haystacks[f"inspect {job_id}"] = e2e.cli("inspect", job_id).output
        haystacks[f"inspect {job_id} --json"] = e2e.cli("inspect", job_id, "--json").output
    haystacks[f"inspect {job_ids[0]} as a process"] = e2e.cli_process("inspect", job_ids[0]).stdout
    results = [job["results"] for job in e2e.emulator.jobs()]
    haystacks["result calls CodePipeline received"] = json.dumps(results, ensure_ascii=False)
    haystacks["CodePipeline's executions"] = json.dumps(e2e.emulator.executions(),
                                                        ensure_ascii=False)

    found = _secrets(e2e)
    assert len(found) >= 2 + 3 * 4
    everything = json.dumps(e2e.emulator.jobs(), ensure_ascii=False)
    assert not _leaks({"nothing": "echo-nothing-at-all"}, {"emulator": everything})
    assert len(_leaks(found, {"emulator's own view": everything})) >= len(found)  # search works
    leaks = _leaks(found, haystacks)
    assert not leaks, "\n".join(leaks[:40])
