"""Action types with a queryable property: polls name a value, and only those jobs come."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, ClassVar

from click.testing import CliRunner

from engine.action import ActionDefinition
from engine.cli import main
from engine.codepipeline import CodePipeline
from engine.devtools.emulator import CodePipelineEmulator, EmulatorServer
from engine.devtools.testing import codepipeline_client
from engine.store import open_store
from engine.worker import Settings, Worker
from tests.actions.ledger import LedgerAction


def _queryable() -> ActionDefinition:
    document: dict[str, Any] = copy.deepcopy(dict(LedgerAction.definition().document))
    document["provider"] = "LedgerTeam"
    document["configurationProperties"].append(
        {"name": "Team", "required": True, "key": True, "secret": False, "queryable": True,
         "description": "Which team's worker takes the job", "type": "String"})
    return ActionDefinition.from_document(document)


class TeamLedgerAction(LedgerAction):
    name = "teamledger"
    _definition: ClassVar[ActionDefinition | None] = _queryable()


def test_run_refuses_to_start_without_a_value_for_the_queryable_property() -> None:
    result = CliRunner().invoke(main, ["run", "--until-idle", "--region", "us-east-1",
                                       "--action", "tests.engine.test_query:TeamLedgerAction"])
    assert result.exit_code == 2
    assert "queryable property Team" in result.output
    assert "--query-param teamledger:Team=<value>" in result.output


def test_a_poll_with_a_query_takes_only_its_teams_jobs(
    codepipeline_emulator: tuple[CodePipelineEmulator, EmulatorServer], tmp_path: Path,
) -> None:
    emulator, server = codepipeline_emulator
    client = codepipeline_client(server.url)
    client.create_custom_action_type(**TeamLedgerAction.definition().document)
    config = {"Ledger": str(tmp_path), "Outcome": "pass", "Token": "ledger-secret-q"}
    mine = emulator.start_execution("Test/Custom/LedgerTeam/1", {**config, "Team": "web"},
                                    action="Ledger")
    other = emulator.start_execution("Test/Custom/LedgerTeam/1", {**config, "Team": "api"},
                                     action="Ledger")
    store = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    worker = Worker(store, CodePipeline(client), {"teamledger": TeamLedgerAction()},
                    Settings(query={"teamledger": {"Team": "web"}}))
    assert worker.poll_now() == 1
    assert [j.job_id for j in store.list_jobs()] == [mine["jobId"]]
    assert emulator.job(other["jobId"])["status"] == "Queued"
    worker.scheduler.close()
    store.close()
