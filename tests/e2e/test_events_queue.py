"""The events queue is a hint, polling the truth: a worker whose queue is deleted under it keeps
working by polling, and a stop seen while a submission is in flight waits for the run, then
cancels it (issue 12.4)."""

from __future__ import annotations

import secrets
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.clock import SystemClock
from engine.codepipeline import CodePipeline
from engine.devtools.emulator import CodePipelineEmulator, EmulatorServer
from engine.devtools.emulator._cp_events import LocalSqs
from engine.devtools.testing import codepipeline_client
from engine.store import open_store
from engine.worker import Settings, Worker
from tests.actions.ledger import EXPECTED_TOKEN_PREFIX, LedgerAction
from tests.e2e.conftest import wait_until

LEDGER_TYPE = "Test/Custom/Ledger/1"



class Kit:
    def __init__(self, directory: Path) -> None:
        self.ledger = directory / "ledger"
        self.ledger.mkdir()
        self.sqs = LocalSqs().start()
        self.queue = self.sqs.create_queue(f"cpworker-events-{uuid.uuid4().hex[:8]}")
        self.emulator = CodePipelineEmulator(events_queue_url=self.queue,
                                             continuation_delay=0.2)
        self.server = EmulatorServer(self.emulator).start()
        client = codepipeline_client(self.server.url)
        client.create_custom_action_type(**LedgerAction.definition().document)
        self.store = open_store(f"sqlite:///{directory / 'state.db'}")
        settings = Settings(poll_interval=1.0, poll_interval_min=0.2, check_interval=0.2,
                            backoff_initial=0.1, backoff_max=0.5, shutdown_grace=3.0,
                            events_queue=self.queue)
        self.worker = Worker(self.store, CodePipeline(client), {"ledger": LedgerAction()},
                             settings, SystemClock(), sqs=self.sqs.client())
        self.thread = threading.Thread(target=self.worker.run, daemon=True)

    def start(self, steps: int = 2) -> str:
        started = self.emulator.start_execution(
            LEDGER_TYPE, {"Ledger": str(self.ledger), "Outcome": "pass", "Steps": str(steps),
                          "Token": EXPECTED_TOKEN_PREFIX + secrets.token_hex(8)},
            action="Ledger")
        return started["pipelineExecutionId"]

    def status(self, pipeline_execution_id: str) -> str:
        return str(self.emulator.execution(pipeline_execution_id)["status"])

    def close(self) -> None:
        self.worker.stop()
        self.thread.join(15)
        self.server.stop()
        self.emulator.close()
        self.store.close()


@pytest.fixture
def kit(tmp_path: Path) -> Iterator[Kit]:
    made = Kit(tmp_path)
    made.thread.start()
    try:
        yield made
    finally:
        made.close()


@pytest.mark.slow
def test_with_its_queue_deleted_mid_run_the_worker_carries_on_by_polling(kit: Kit) -> None:
    first = kit.start()
    wait_until("the first execution done", lambda: kit.status(first) == "Succeeded")
    listener = kit.worker.events
    assert listener is not None
    kit.sqs.client().delete_queue(QueueUrl=kit.queue)

    second = kit.start(steps=3)
    wait_until("the execution after the queue went done", lambda: kit.status(second) == "Succeeded")
    wait_until("the listener noticing the queue is gone", lambda: listener.counts.errors > 0)
    assert kit.thread.is_alive() and listener.running
    third = kit.start()
    wait_until("one more, still by polling", lambda: kit.status(third) == "Succeeded")
