"""`cpworker register`: idempotent for an identical type, a clear error for a changed one."""

from __future__ import annotations

import copy

import pytest
from click.testing import CliRunner

from engine.action import ActionDefinition
from engine.cli import main
from engine.devtools.emulator import CodePipelineEmulator, EmulatorServer
from engine.devtools.testing import codepipeline_client
from engine.errors import ConfigurationProblem
from engine.registration import register
from tests.actions.ledger import LedgerAction

LEDGER = "tests.actions.ledger:LedgerAction"


def cli(server: EmulatorServer, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["register", "--endpoint-url", server.url,
                                       "--region", "us-east-1", *args],
                                env={"AWS_ACCESS_KEY_ID": "t", "AWS_SECRET_ACCESS_KEY": "t"})
    return result.exit_code, result.output


def test_register_creates_then_finds_the_identical_type(
    codepipeline_emulator: tuple[CodePipelineEmulator, EmulatorServer],
) -> None:
    emulator, server = codepipeline_emulator
    assert cli(server, LEDGER, "--dry-run") == (0, "Test/Custom/Ledger/1: would create\n")
    assert emulator.action_types() == []
    assert cli(server, LEDGER) == (0, "Test/Custom/Ledger/1: created\n")
    assert cli(server, LEDGER) == (0, "Test/Custom/Ledger/1: exists\n")
    assert emulator.call_counts().get("CreateCustomActionType") == 1


def test_a_changed_definition_under_the_same_version_is_refused_with_the_rule(
    codepipeline_emulator: tuple[CodePipelineEmulator, EmulatorServer],
) -> None:
    _, server = codepipeline_emulator
    client = codepipeline_client(server.url)
    assert register(client, LedgerAction.definition()).status == "created"
    document = copy.deepcopy(dict(LedgerAction.definition().document))
    document["configurationProperties"][1]["description"] = "changed"
    changed = ActionDefinition.from_document(document)
    with pytest.raises(ConfigurationProblem) as raised:
        register(client, changed)
    message = str(raised.value)
    assert "different configurationProperties" in message
    assert "raise the version" in message
    assert "never changes a custom action type under the same version" in message
    code, output = cli(server, "tests.actions.ledger:LedgerAction")
    assert code == 0 and "exists" in output


@pytest.mark.parametrize(("name", "type_id"), [("travis", "Test/Custom/Travis/1"),
                                               ("github", "Test/Custom/GitHubActions/1")])
def test_both_shipped_actions_register_by_name(
    codepipeline_emulator: tuple[CodePipelineEmulator, EmulatorServer], name: str, type_id: str,
) -> None:
    """`cpworker register travis` and `cpworker register github`, as the README says."""
    emulator, server = codepipeline_emulator
    assert cli(server, name) == (0, f"{type_id}: created\n")
    assert cli(server, name) == (0, f"{type_id}: exists\n")
    assert [t["id"]["provider"] for t in emulator.action_types()] == [type_id.split("/")[2]]
