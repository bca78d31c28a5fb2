"""The poller over real HTTP: a poll batch with a job that breaks intake records the others,
and a store that is briefly unavailable fails the poll as a whole, to be polled again."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from engine.clock import FakeClock
from engine.codepipeline import CodePipeline
from engine.devtools.emulator import CodePipelineEmulator, EmulatorServer
from engine.devtools.testing import ActionHarness, codepipeline_client
from engine.errors import StoreUnavailable
from engine.intake import Intake
from engine.machine import JobState
from engine.poller import Poller, PollRound
from engine.secrets import SecretVault
from engine.store import EventStore, open_store
from tests.actions.ledger import LedgerAction

LEDGER_TYPE = "Test/Custom/Ledger/1"
ACK_TIMEOUT = 30.0


@dataclass
class Kit:
    emulator: CodePipelineEmulator
    codepipeline: CodePipeline
    store: EventStore
    poller: Poller
    woken: list[int]

    def start(self, outcome: str = "pass", **tampered: object) -> str:
        """A pipeline execution reaching the ledger action; returns its first job's id.

        `tampered` values replace configuration values past the pipeline editor's checks (the
        emulator's tamper hook): job data CodePipeline would never send, handed out as it is.
        """
        configuration = {"Ledger": "/ledger", "Outcome": outcome,
                         "Token": "ledger-secret-poller"}
        started = self.emulator.start_execution(LEDGER_TYPE, configuration, action="Ledger")
        if tampered:
            self.emulator.tamper(started["pipelineExecutionId"], tampered)
        return started["jobId"]


@pytest.fixture
def kit(tmp_path: Path) -> Iterator[Kit]:
    clock = FakeClock()
    emulator = CodePipelineEmulator(clock=clock, continuation_delay=0.0, ack_timeout=ACK_TIMEOUT)
    with EmulatorServer(emulator) as server:
        client = codepipeline_client(server.url)
        client.create_custom_action_type(**LedgerAction.definition().document)
        codepipeline = CodePipeline(client)
        store = open_store(f"sqlite:///{tmp_path / 'state.db'}")
        woken: list[int] = []
        poller = Poller(codepipeline, {"ledger": LedgerAction()},
                        Intake(store, SecretVault(), clock, "worker-1"), clock,
                        capacity=lambda: 20, on_jobs=lambda: woken.append(1))
        try:
            yield Kit(emulator, codepipeline, store, poller, woken)
        finally:
            store.close()


def _continuation_of_a_foreign_worker(kit: Kit, token: str) -> str:
    """Another worker polls, acknowledges and hands on a job with `token`; returns the id of
    the continuation job CodePipeline then queues."""
    first = kit.start()
    [job] = kit.codepipeline.poll(LedgerAction.definition().type_id.to_api(), 1)
    assert job["id"] == first
    client = kit.codepipeline.client
    client.acknowledge_job(jobId=job["id"], nonce=job["nonce"])
    client.put_job_success_result(jobId=job["id"], continuationToken=token)
    [follow] = [str(j["id"]) for j in kit.emulator.jobs("Queued")]
    return follow


def test_a_poll_batch_with_jobs_that_break_intake_records_the_others(kit: Kit) -> None:
    continuation = _continuation_of_a_foreign_worker(
        kit, json.dumps({"v": 1, "job": {"not": "an id"}, "run": {}}))
    good = [kit.start(), kit.start(outcome="fail")]
    listed = kit.start(Token=["ledger-secret-in-a-list"])
    null = kit.start(Steps=None)
    good.append(kit.start())

    polled = kit.poller.poll_once()

    assert (polled.found, polled.new, polled.errors) == (6, 6, 0)
    assert kit.woken == [1]
    for job_id in good:
        job = kit.store.get(job_id)
        assert job is not None and job.state is JobState.ACQUIRED and job.problem is None, job
    problems = {}
    for job_id in (listed, null, continuation):
        job = kit.store.get(job_id)
        assert job is not None and job.state is JobState.ACQUIRED and job.nonce, job_id
        assert job.problem is not None
        problems[job_id] = job.problem
    assert "the property Token is a list, not text" in problems[listed]
    assert "the property Steps is null, not text" in problems[null]
    assert "names no job to continue" in problems[continuation]
    assert "ledger-secret-in-a-list" not in str(kit.store.history(listed))


def test_jobs_polled_while_the_store_is_away_are_recorded_next_round(
    kit: Kit, tmp_path: Path,
) -> None:
    jobs = [kit.start(), kit.start()]
    sa.event.listen(kit.store.engine, "connect",
                    lambda connection, _: connection.execute("PRAGMA busy_timeout=100"))
    kit.store.engine.dispose()
    blocker = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another program writing: "database is locked"
    try:
        with pytest.raises(StoreUnavailable):
            kit.poller.poll_once()
    finally:
        blocker.close()
    assert all(kit.store.get(job_id) is None for job_id in jobs)
    assert kit.woken == [1]  # found jobs wake the scheduler, whatever intake did
    # Kept, not dropped: recorded first thing next round, with the nonces CodePipeline gave,
    # instead of waiting for its acknowledgement timeout to hand them out again.
    again = kit.poller.poll_once()
    assert (again.found, again.new) == (2, 2)
    assert all(kit.store.get(job_id) is not None for job_id in jobs)
    assert kit.poller.poll_once().found == 0


def test_the_bad_job_is_acknowledged_and_failed_as_a_configuration_error(
    tmp_path: Path,
) -> None:
    with ActionHarness(LedgerAction(), tmp_path) as harness:
        started = harness.emulator.start_execution(
            LEDGER_TYPE, {"Ledger": str(tmp_path), "Outcome": "pass", "Token": "ledger-secret-x"},
            action="Ledger")
        harness.emulator.tamper(started["pipelineExecutionId"],
                                {"Token": ["ledger-secret-in-a-list"]})
        execution = started["actionExecutionId"]
        job = harness.run(execution)
        assert job.state is JobState.FAILED
        [result] = harness.results(execution)
        assert result["operation"] == "PutJobFailureResult" and result["accepted"]
        failure = result["request"]["failureDetails"]
        assert failure["type"] == "ConfigurationError"
        assert "the property Token is a list, not text" in failure["message"]
        assert "ledger-secret-in-a-list" not in json.dumps(result)


def test_a_refused_batch_size_is_halved_at_once_and_said_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    emulator = CodePipelineEmulator(clock=clock, max_batch_size=3)
    with EmulatorServer(emulator) as server:
        client = codepipeline_client(server.url)
        client.create_custom_action_type(**LedgerAction.definition().document)
        store = open_store(f"sqlite:///{tmp_path / 'state.db'}")
        poller = Poller(CodePipeline(client), {"ledger": LedgerAction()},
                        Intake(store, SecretVault(), clock, "worker-1"), clock,
                        capacity=lambda: 20, on_jobs=lambda: None, batch=10)
        try:
            for _ in range(7):
                emulator.start_execution(LEDGER_TYPE, {"Ledger": "/l", "Outcome": "pass",
                                                       "Token": "ledger-secret-batch"},
                                         action="Ledger")
            with caplog.at_level("WARNING", logger="engine.poller"):
                first = poller.poll_once()
                second = poller.poll_once()
            assert (first.found, first.errors, second.found) == (2, 0, 2)  # 10, 5 refused
            assert emulator.call_counts()["PollForJobs"] == 3 + 1
            warnings = [r.getMessage() for r in caplog.records if r.name == "engine.poller"]
            assert warnings == [
                "PollForJobs for ledger refused maxBatchSize=10 with ValidationException (1 "
                "validation error detected: Value '5' at 'maxBatchSize' failed to satisfy "
                "constraint: Member must have value less than or equal to 3); asking for at "
                "most 2 job(s) per poll from now on"]
        finally:
            store.close()


def test_the_poll_batch_is_the_setting_and_at_least_one(kit: Kit) -> None:
    for _ in range(12):
        kit.start()
    assert kit.poller.batch == 10  # the default (engine.defaults.POLL_BATCH)
    polled = kit.poller.poll_once()
    assert (polled.found, polled.full) == (10, True)  # a full batch: poll again at once
    with pytest.raises(ValueError, match="at least 1"):
        Poller(kit.codepipeline, {}, kit.poller.intake, FakeClock(), capacity=lambda: 1,
               on_jobs=lambda: None, batch=0)


def test_the_interval_sweeps_a_backlog_halves_while_jobs_come_and_doubles_when_idle(
        kit: Kit) -> None:
    poller = kit.poller
    poller.min_interval, poller.max_interval, poller.interval = 1.0, 32.0, 32.0
    # A full batch: CodePipeline probably holds more, poll again at once.
    assert poller.next_interval(PollRound(found=10, new=10, errors=0, full=True)) == 0.0
    assert poller.interval == 1.0
    poller.interval = 32.0
    # Jobs found, batch not full: the queue is empty now, the next job a new arrival. Halve
    # (each poll is a request against CodePipeline's quotas), down to the minimum.
    for expected in (16.0, 8.0, 4.0, 2.0, 1.0, 1.0):
        wait = poller.next_interval(PollRound(found=1, new=1, errors=0))
        assert poller.interval == expected and 0.8 * expected <= wait <= expected
    # Nothing found, or a failed poll: doubling with jitter, up to the maximum.
    for expected in (2.0, 4.0, 8.0, 16.0, 32.0, 32.0):
        wait = poller.next_interval(PollRound(found=0, new=0, errors=0))
        assert poller.interval == expected and 0.8 * expected <= wait <= expected
    poller.interval = 4.0
    poller.next_interval(PollRound(found=2, new=2, errors=1))
    assert poller.interval == 8.0
