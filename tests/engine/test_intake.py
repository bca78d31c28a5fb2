"""Intake: what a poll's jobs become in the log, before anything is acknowledged."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from engine.clock import FakeClock
from engine.errors import StoreUnavailable
from engine.intake import Intake
from engine.jobdata import encode_token
from engine.machine import JobState
from engine.projection import Event, Job, project
from engine.secrets import SecretVault
from engine.store import Change, EventStore, open_store
from tests.actions.ledger import LedgerAction

CONFIG = {"Ledger": "/l", "Outcome": "pass", "Token": "ledger-secret-intake"}


def polled(job_id: str, nonce: str, execution: str = "exec-1",
           token: str | None = None, config: dict[str, str] | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "actionTypeId": {"category": "Test", "owner": "Custom", "provider": "Ledger",
                         "version": "1"},
        "actionConfiguration": {"configuration": dict(config or CONFIG)},
        "pipelineContext": {"pipelineName": "web", "stage": {"name": "Test"},
                            "action": {"name": "Ledger", "actionExecutionId": execution}},
        "artifactCredentials": {"accessKeyId": "ASIAINTAKE", "secretAccessKey": "sk-intake",
                                "sessionToken": "st-intake"},
    }
    if token:
        data["continuationToken"] = token
    return {"id": job_id, "nonce": nonce, "accountId": "111111111111", "data": data}


def intake(store: EventStore) -> tuple[Intake, SecretVault]:
    vault = SecretVault()
    return Intake(store, vault, FakeClock(), "worker-1"), vault


def test_a_job_is_recorded_with_its_nonce_and_without_its_secrets(tmp_store: EventStore) -> None:
    taker, vault = intake(tmp_store)
    assert taker.record("ledger", LedgerAction(), [polled("job-1", "n1")]) == 1
    job = tmp_store.get("job-1")
    assert job is not None and job.state is JobState.ACQUIRED and job.nonce == "n1"
    assert job.pipeline["configuration"] == {**CONFIG, "Token": "****"}
    [acquired] = tmp_store.history("job-1")
    assert "ledger-secret-intake" not in str(acquired.data) and "sk-intake" not in str(acquired)
    held = vault.get("job-1", FakeClock().now())
    assert held is not None and held.configuration["Token"] == "ledger-secret-intake"


def test_a_job_handed_out_again_keeps_one_machine_with_the_new_nonce(
    tmp_store: EventStore,
) -> None:
    taker, _ = intake(tmp_store)
    taker.record("ledger", LedgerAction(), [polled("job-1", "n1")])
    assert taker.record("ledger", LedgerAction(), [polled("job-1", "n2")]) == 0
    assert [e.type for e in tmp_store.history("job-1")] == ["acquired", "redispatched"]
    job = tmp_store.get("job-1")
    assert job is not None and job.nonce == "n2" and job.state is JobState.ACQUIRED


def test_a_lost_job_handed_to_this_worker_again_is_taken_up(tmp_store: EventStore) -> None:
    taker, _ = intake(tmp_store)
    taker.record("ledger", LedgerAction(), [polled("job-1", "n1")])
    job = tmp_store.get("job-1")
    assert job is not None
    lost = Event("job-1", 2, "job_lost", 1.0, {"reason": "nonce replaced"})
    tmp_store.commit([Change([lost], project(job, lost), new=False)])
    taker.record("ledger", LedgerAction(), [polled("job-1", "n3")])
    job = tmp_store.get("job-1")
    assert job is not None and job.state is JobState.ACQUIRED and job.nonce == "n3"


def test_a_malformed_job_is_recorded_with_its_problem(tmp_store: EventStore) -> None:
    taker, _ = intake(tmp_store)
    bad = polled("job-1", "n1", config={"Ledger": "/l", "Token": "ledger-secret-x", "Extra": "y"})
    taker.record("ledger", LedgerAction(), [bad])
    job = tmp_store.get("job-1")
    assert job is not None and job.problem is not None
    assert "the required property Outcome is missing" in job.problem
    assert "unknown properties Extra" in job.problem


def test_a_continuation_joins_its_execution_once(tmp_store: EventStore) -> None:
    taker, _ = intake(tmp_store)
    taker.record("ledger", LedgerAction(), [polled("job-1", "n1")])
    job = tmp_store.get("job-1")
    assert job is not None
    events: list[tuple[str, dict[str, Any]]] = [("acknowledged", {}), ("submit_intended", {}),
              ("run_started", {"run": {"run_id": "r-1"}, "details": {"external_id": "r-1"}}),
              ("progress_changed", {"report": {}}), ("continuation_reported", {"due_at": 9.0})]
    for seq, (kind, data) in enumerate(events, start=2):
        event = Event("job-1", seq, kind, 1.0, data)
        job = project(job, event)
        tmp_store.commit([Change([event], job, new=False)])
    token = encode_token("job-1", {"run_id": "r-1"}, {"external_id": "r-1"}, 1.0)
    # Two continuations of one execution in one poll (never seen, but must not corrupt the log).
    taker.record("ledger", LedgerAction(), [polled("job-2", "n", token=token),
                                            polled("job-3", "n", token=token)])
    first = tmp_store.get("job-1")
    assert first is not None and first.state is JobState.HANDED_ON and first.continued_by == "job-2"
    second = tmp_store.get("job-2")
    assert second is not None and second.continues == "job-1" and second.run == {"run_id": "r-1"}
    assert [e.type for e in tmp_store.history("job-1")][-1] == "continuation_joined"


# --- one bad job fails alone (issue 8, deliverable 6) --------------------------------------------


def _problem(store: EventStore, job_id: str) -> str:
    job = store.get(job_id)
    assert job is not None and job.state is JobState.ACQUIRED, job
    assert job.problem is not None, job
    return job.problem


def _clean(store: EventStore, *job_ids: str) -> None:
    for job_id in job_ids:
        job = store.get(job_id)
        assert job is not None and job.state is JobState.ACQUIRED and job.problem is None, job


def test_a_secret_that_is_not_text_fails_its_job_alone(tmp_store: EventStore) -> None:
    taker, _ = intake(tmp_store)
    bad = polled("job-2", "n2", execution="exec-2")
    bad["data"]["actionConfiguration"]["configuration"]["Token"] = ["ledger-secret-in-a-list"]
    batch = [polled("job-1", "n1"), bad, polled("job-3", "n3", execution="exec-3")]
    assert taker.record("ledger", LedgerAction(), batch) == 3
    _clean(tmp_store, "job-1", "job-3")
    problem = _problem(tmp_store, "job-2")
    assert "the property Token is a list, not text" in problem and "Fix:" in problem
    assert "required property Token is missing" not in problem  # one complaint per property
    assert "ledger-secret-in-a-list" not in str(tmp_store.history("job-2"))
    job = tmp_store.get("job-2")
    assert job is not None and job.nonce == "n2" and job.execution_id == "exec-2"
    assert job.pipeline["configuration"]["Token"] == "****"


@pytest.mark.parametrize("breaks", [
    "data is a list", "configuration is text", "context is text", "action context is a list",
    "artifacts are not a list", "an artifact is a number", "credentials are numbers",
    "the token is a number", "the token names no job", "the token's run is a list",
    "the token's start is text", "the execution id is a number", "the get raises",
])
def test_job_data_of_any_shape_fails_its_job_alone(tmp_store: EventStore, breaks: str) -> None:
    taker, _ = intake(tmp_store)
    bad: dict[str, Any] = polled("job-2", "n2", execution="exec-2")
    data = bad["data"]
    if breaks == "data is a list":
        bad["data"] = ["not", "an", "object"]
    elif breaks == "configuration is text":
        data["actionConfiguration"]["configuration"] = "Ledger=/l"
    elif breaks == "context is text":
        data["pipelineContext"] = "web"
    elif breaks == "action context is a list":
        data["pipelineContext"]["action"] = ["Ledger"]
    elif breaks == "artifacts are not a list":
        data["inputArtifacts"] = {"name": "src"}
    elif breaks == "an artifact is a number":
        data["inputArtifacts"] = [7, {"name": "src", "location": "s3"}]
    elif breaks == "credentials are numbers":
        data["artifactCredentials"] = {"accessKeyId": 1, "secretAccessKey": 2, "sessionToken": 3}
    elif breaks == "the token is a number":
        data["continuationToken"] = 12
    elif breaks == "the token names no job":
        data["continuationToken"] = json.dumps({"v": 1, "job": {"not": "an id"}, "run": {}})
    elif breaks == "the token's run is a list":
        data["continuationToken"] = json.dumps({"v": 1, "job": "job-0", "run": [1, 2]})
    elif breaks == "the token's start is text":
        data["continuationToken"] = json.dumps({"v": 1, "job": "job-0", "run": {},
                                                "started": "yesterday"})
    elif breaks == "the execution id is a number":
        data["pipelineContext"]["action"]["actionExecutionId"] = 42
    elif breaks == "the get raises":
        bad = _Exploding(bad)
    batch = [polled("job-1", "n1"), bad, polled("job-3", "n3", execution="exec-3")]
    assert taker.record("ledger", LedgerAction(), batch) == 3
    _clean(tmp_store, "job-1", "job-3")
    job = tmp_store.get("job-2")
    assert job is not None and job.state is JobState.ACQUIRED and job.nonce == "n2"
    shape_only = breaks in ("artifacts are not a list", "an artifact is a number",
                            "credentials are numbers", "action context is a list")
    if shape_only:
        return  # read as absent: the job is worked, and its action says what it lacks
    assert job.problem is not None, breaks


class _Exploding(dict[str, Any]):
    """A polled job whose data cannot even be looked at: the worst a parser could hand over."""

    def get(self, key: str, default: Any = None) -> Any:
        if key == "data":
            raise RuntimeError("the job data could not be decoded")
        return super().get(key, default)


def test_the_unexpected_error_names_itself_in_the_problem(tmp_store: EventStore) -> None:
    taker, _ = intake(tmp_store)
    taker.record("ledger", LedgerAction(), [_Exploding(polled("job-1", "n1"))])
    problem = _problem(tmp_store, "job-1")
    assert "RuntimeError: the job data could not be decoded" in problem
    assert problem.startswith("the job for action Test/Custom/Ledger/1 cannot be worked")


@pytest.mark.parametrize("raw", [
    {"nonce": "n", "data": {}}, {"id": "", "nonce": "n"}, {"id": 7, "nonce": "n"},
    {"id": "job-\ud800", "nonce": "n"}, ["not", "a", "job"],
])
def test_a_job_without_a_usable_id_is_skipped_and_the_batch_recorded(
    tmp_store: EventStore, raw: Any, caplog: pytest.LogCaptureFixture,
) -> None:
    taker, _ = intake(tmp_store)
    assert taker.record("ledger", LedgerAction(), [polled("job-1", "n1"), raw,
                                                   polled("job-3", "n3", "exec-3")]) == 2
    _clean(tmp_store, "job-1", "job-3")
    assert "without a usable id" in caplog.text


def test_text_no_database_can_store_fails_its_job_alone(tmp_store: EventStore) -> None:
    taker, _ = intake(tmp_store)
    bad = polled("job-2", "n-\ud800", execution="exec-\x00")
    bad["data"]["continuationToken"] = "token-\ud800"
    assert taker.record("ledger", LedgerAction(), [polled("job-1", "n1"), bad]) == 2
    _clean(tmp_store, "job-1")
    problem = _problem(tmp_store, "job-2")
    assert "actionExecutionId" in problem and "continuationToken" in problem
    job = tmp_store.get("job-2")
    assert job is not None and job.execution_id == "job-2" and job.nonce == ""


def test_a_row_the_database_refuses_fails_its_job_alone(postgres_url: str) -> None:
    # JSON may carry \u0000, which PostgreSQL's jsonb refuses: the batch's one transaction
    # fails, and the jobs are then recorded one by one, the refused one with a problem.
    store = open_store(postgres_url)
    try:
        taker, _ = intake(store)
        bad = polled("job-2", "n2", execution="exec-2",
                     token=json.dumps({"v": 1, "job": "job-0", "run": {"log": "a\u0000b"},
                                       "details": None, "started": 1.0}))
        batch = [polled("job-1", "n1"), bad, polled("job-3", "n3", execution="exec-3")]
        assert taker.record("ledger", LedgerAction(), batch) == 3
        _clean(store, "job-1", "job-3")
        problem = _problem(store, "job-2")
        assert "cpworker could not read its job data" in problem
        [acquired] = store.history("job-2")
        assert acquired.data["nonce"] == "n2" and "run" not in acquired.data
    finally:
        store.close()


def test_a_store_that_is_unavailable_fails_the_whole_poll_not_one_job(
    tmp_path: Path,
) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    blocker = _hold_write_lock(store, tmp_path / "state.db")
    try:
        taker, _ = intake(store)
        with pytest.raises(StoreUnavailable):
            taker.record("ledger", LedgerAction(), [polled("job-1", "n1"),
                                                    polled("job-2", "n2", "exec-2")])
    finally:
        blocker.close()
    assert store.get("job-1") is None and store.get("job-2") is None  # nothing half-written
    taker.record("ledger", LedgerAction(), [polled("job-1", "n1")])  # and it passes
    _clean(store, "job-1")
    store.close()


def _hold_write_lock(store: EventStore, path: Path) -> sqlite3.Connection:
    """Another program's open write transaction on the file, and the store's busy timeout cut
    to 0.1 s, so "database is locked" comes at once instead of after ten seconds."""
    sa.event.listen(store.engine, "connect",
                    lambda connection, _: connection.execute("PRAGMA busy_timeout=100"))
    store.engine.dispose()
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    return blocker


# --- continuations keep the run (deliverable 7) -------------------------------------------------


def _awaiting_continuation(store: EventStore, run: dict[str, Any]) -> Job:
    taker, _ = intake(store)
    taker.record("ledger", LedgerAction(), [polled("job-1", "n1")])
    job = store.get("job-1")
    assert job is not None
    events: list[tuple[str, dict[str, Any]]] = [
        ("acknowledged", {}), ("submit_intended", {}),
        ("run_started", {"run": run, "details": {"external_id": "r-1", "summary": "running"}}),
        ("progress_changed", {"report": {}}), ("continuation_reported", {"due_at": 9.0})]
    for seq, (kind, data) in enumerate(events, start=2):
        event = Event("job-1", seq, kind, 1.0 + seq, data)
        job = project(job, event)
        store.commit([Change([event], job, new=False)])
    assert job.state is JobState.AWAITING_CONTINUATION
    return job


def test_a_shortened_token_takes_the_run_from_the_job_it_continues(
    tmp_store: EventStore,
) -> None:
    run = {"run_id": "r-1", "log_url": "https://ci.example/" + "x" * 3000}
    previous = _awaiting_continuation(tmp_store, run)
    token = encode_token("job-1", previous.run, previous.details, previous.run_started_at)
    assert json.loads(token) == {"v": 1, "job": "job-1"}  # past MAX_TOKEN: the id alone
    taker, _ = intake(tmp_store)
    taker.record("ledger", LedgerAction(), [polled("job-2", "n", token=token)])
    joined = tmp_store.get("job-2")
    assert joined is not None and joined.problem is None, joined
    assert joined.continues == "job-1" and dict(joined.run) == run
    assert joined.details == previous.details
    assert joined.run_started_at == previous.run_started_at == 5.0  # run_started's time
    first = tmp_store.get("job-1")
    assert first is not None and first.state is JobState.HANDED_ON and first.continued_by == "job-2"


def test_a_shortened_token_of_a_job_this_database_never_saw_is_a_problem(
    tmp_store: EventStore,
) -> None:
    taker, _ = intake(tmp_store)
    token = json.dumps({"v": 1, "job": "job-elsewhere"})
    taker.record("ledger", LedgerAction(), [polled("job-2", "n", token=token)])
    problem = _problem(tmp_store, "job-2")
    assert "shortened to the id of the job it continues (job-elsewhere)" in problem
    assert "not in this worker's database" in problem and "Fix:" in problem
