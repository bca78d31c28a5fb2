"""Intake: what a poll's jobs become in the log, before anything is acknowledged."""

from __future__ import annotations

from typing import Any

from engine.clock import FakeClock
from engine.codepipeline import encode_token
from engine.intake import Intake
from engine.machine import JobState
from engine.projection import Event, project
from engine.secrets import SecretVault
from engine.store import Change, EventStore
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
