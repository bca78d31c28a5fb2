"""The offline kit drives a real action through the real engine against the emulator."""

from __future__ import annotations

import copy
from pathlib import Path

from engine.devtools.testing import ActionHarness
from engine.machine import JobState
from tests.actions.ledger import LedgerAction

TOKEN = "ledger-secret-harness"


def config(ledger: Path, outcome: str, steps: int = 3) -> dict[str, str]:
    return {"Ledger": str(ledger), "Outcome": outcome, "Steps": str(steps), "Token": TOKEN}


def test_a_passing_run_succeeds_through_a_continuation(tmp_path: Path) -> None:
    with ActionHarness(LedgerAction(), tmp_path) as harness:
        execution = harness.start(config(tmp_path, "pass"))
        final = harness.run(execution)
        assert final.state is JobState.SUCCEEDED
        first, second = harness.jobs(execution)
        assert first.state is JobState.HANDED_ON and first.continued_by == second.job_id
        assert harness.event_types(execution) == [
            "acquired", "acknowledged", "submit_intended", "run_started", "progress_changed",
            "continuation_reported", "continuation_joined",
            "acquired", "acknowledged", "continuation_resumed", "checked", "checked",
            "run_succeeded", "result_reported",
        ]
        results = harness.results(execution)
        assert [r["accepted"] for r in results] == [True, True]
        assert results[0]["request"]["continuationToken"]
        assert results[1]["request"]["outputVariables"] == {"RunId": final.external_id}


def test_a_failing_run_reports_job_failed(tmp_path: Path) -> None:
    with ActionHarness(LedgerAction(), tmp_path) as harness:
        execution = harness.start(config(tmp_path, "fail", steps=1))
        final = harness.run(execution)
        assert final.state is JobState.FAILED
        failure = harness.results(execution)[-1]["request"]["failureDetails"]
        assert failure["type"] == "JobFailed"
        assert final.external_id and final.external_id in failure["message"]


def test_a_broken_check_is_retried_then_fails_as_system_unavailable(tmp_path: Path) -> None:
    with ActionHarness(LedgerAction(), tmp_path) as harness:
        execution = harness.start(config(tmp_path, "error", steps=1))
        final = harness.run(execution)
        assert final.state is JobState.FAILED
        types = harness.event_types(execution)
        assert types.count("attempt_failed") == harness.worker.settings.max_attempts - 1
        failure = harness.results(execution)[-1]["request"]["failureDetails"]
        assert failure["type"] == "SystemUnavailable"
        assert "the ledger broke" in failure["message"]


def test_a_malformed_job_fails_as_configuration_error_and_the_engine_goes_on(
    tmp_path: Path,
) -> None:
    with ActionHarness(LedgerAction(), tmp_path, register=False) as harness:
        # The type registered in CodePipeline drifted from the action's file: no Outcome property.
        document = copy.deepcopy(dict(LedgerAction.definition().document))
        document["configurationProperties"] = [
            p for p in document["configurationProperties"] if p["name"] != "Outcome"
        ]
        harness.client.create_custom_action_type(**document)
        broken = harness.start({"Ledger": str(tmp_path), "Token": TOKEN})
        final = harness.run(broken)
        assert final.state is JobState.FAILED
        failure = harness.results(broken)[-1]["request"]["failureDetails"]
        assert failure["type"] == "ConfigurationError"
        assert "the required property Outcome is missing" in failure["message"]
        assert not (tmp_path / "submissions.log").exists()


def test_finished_jobs_leave_no_secret_in_memory(tmp_path: Path) -> None:
    """Every job that ends, handed on to its continuation included, is forgotten by the vault:
    a steady flow of executions keeps its memory flat instead of filling the vault to its cap."""
    with ActionHarness(LedgerAction(), tmp_path) as harness:
        executions = [harness.start(config(tmp_path, outcome))
                      for outcome in ("pass", "fail", "pass")]
        for execution in executions:
            harness.run(execution)
        jobs = [job for execution in executions for job in harness.jobs(execution)]
        assert any(job.state is JobState.HANDED_ON for job in jobs)
        assert all(job.final for job in jobs)
        assert harness.worker.vault.sizes()["entries"] == 0
