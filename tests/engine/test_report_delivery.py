"""Every result is delivered, or the failure is: the real engine against the CodePipeline
emulator over HTTP, on a fake clock. CodePipeline's limits are enforced by the emulator from
botocore's model (and its quota), refusals it cannot see coming are set with refuse()."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from engine import limits
from engine.action import Action, JobContext
from engine.devtools.testing import TEST_SETTINGS, ActionHarness
from engine.machine import JobState
from engine.outcomes import ActionOutcome, Done, InProgress, RunDetails
from tests.actions.ledger import LedgerAction

EMOJI = "\U0001f600"
SUMMARY = EMOJI * 3000
"""3,000 characters: 6,000 UTF-16 code units, 12,000 UTF-8 bytes."""
VARIABLES = {f"Var{i:03d}": "v" * 2000 for i in range(100)}
"""200 KB of output variables, past the 122,880-byte quota."""


class BigResult(Action):
    """Its run passes at the first check, with more to say than CodePipeline takes."""

    name = "echo"
    definition_package = "tests.actions"
    definition_file = "echo.json"
    submit_grace = 0.0

    def submit(self, job: JobContext) -> ActionOutcome:
        return InProgress(data={"run": "r-1"})

    def check(self, job: JobContext) -> ActionOutcome:
        return Done(RunDetails("r-1", SUMMARY, 100), VARIABLES)


CONFIG = {"Outcome": "pass", "Token": "echo-secret-token"}


def harness(tmp_path: Path, **emulator: Any) -> ActionHarness:
    return ActionHarness(BigResult(), tmp_path, emulator_options=emulator)


def success_calls(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in results if r["operation"] == "PutJobSuccessResult"]


def test_an_emoji_summary_and_200_kb_of_variables_are_fitted_and_delivered(
    tmp_path: Path,
) -> None:
    with harness(tmp_path) as h:
        execution = h.start(CONFIG)
        final = h.run(execution)
        assert final.state is JobState.SUCCEEDED
        [call] = h.results(execution)
        assert call["accepted"], call
        sent = call["request"]
        summary = sent["executionDetails"]["summary"]
        assert limits.measure(summary, limits.Unit.UTF16) <= 2048
        assert summary.startswith(EMOJI * 1000) and summary.endswith(limits.CUT_MARKER)
        assert 0 < len(sent["outputVariables"]) < len(VARIABLES)
        assert len(json.dumps(sent["outputVariables"]).encode()) <= 122_880
        [succeeded] = [e for e in h.history(execution) if e.type == "run_succeeded"]
        note = str(succeeded.data["note"])  # what `inspect` shows
        assert "summary cut from 6,000 to 2,048 UTF-16 code units" in note
        assert "122,880 UTF-8 bytes" in note


def test_a_service_that_counts_bytes_gets_the_summary_fitted_in_bytes(tmp_path: Path) -> None:
    with harness(tmp_path, length_unit="utf8") as h:
        execution = h.start(CONFIG)
        final = h.run(execution)
        assert final.state is JobState.SUCCEEDED
        refused, accepted = success_calls(h.results(execution))
        assert refused["error"] == "ValidationException" and accepted["accepted"]
        summary = accepted["request"]["executionDetails"]["summary"]
        assert len(summary.encode()) <= 2048 and summary.startswith(EMOJI * 500)
        assert accepted["request"]["outputVariables"] == refused["request"]["outputVariables"]
        types = h.event_types(execution)
        assert types[-3:] == ["run_succeeded", "report_degraded", "result_reported"]


def test_a_success_refused_in_every_form_is_delivered_as_a_configuration_error(
    tmp_path: Path,
) -> None:
    with harness(tmp_path) as h:
        h.emulator.refuse("PutJobSuccessResult", "ValidationException",
                          "1 validation error detected: something the worker cannot see")
        execution = h.start(CONFIG)
        final = h.run(execution)
        assert final.state is JobState.FAILED  # delivered, never abandoned
        results = h.results(execution)
        tried = success_calls(results)
        assert [r["accepted"] for r in tried] == [False] * 4
        first, in_bytes, no_details, bare = (r["request"] for r in tried)
        assert len(first["executionDetails"]["summary"]) > len(in_bytes["executionDetails"]
                                                              ["summary"])
        assert "executionDetails" not in no_details and "outputVariables" in no_details
        assert bare == {"jobId": first["jobId"]}
        last = results[-1]
        assert last["operation"] == "PutJobFailureResult" and last["accepted"]
        failure = last["request"]["failureDetails"]
        assert failure["type"] == "ConfigurationError"
        assert "The external run succeeded (r-1)" in failure["message"]
        assert "something the worker cannot see" in failure["message"]
        types = h.event_types(execution)
        assert types.count("report_degraded") == 3
        assert types[-2:] == ["success_undeliverable", "result_reported"]
        assert "abandoned" not in [j.state.value for j in h.jobs(execution)]


def test_output_variables_over_the_services_own_count_are_dropped(tmp_path: Path) -> None:
    with harness(tmp_path) as h:
        h.emulator.refuse("PutJobSuccessResult", "OutputVariablesSizeExceededException",
                          "Exceeded the total size limit for all variables in the pipeline.",
                          times=1)
        execution = h.start(CONFIG)
        final = h.run(execution)
        assert final.state is JobState.SUCCEEDED
        refused, accepted = success_calls(h.results(execution))
        assert refused["error"] == "OutputVariablesSizeExceededException"
        assert "outputVariables" not in accepted["request"]
        assert accepted["request"]["executionDetails"]["summary"].startswith(EMOJI)
        [degraded] = [e for e in h.history(execution) if e.type == "report_degraded"]
        assert "output variable(s) dropped" in str(degraded.data["reason"])
        assert "OutputVariablesSizeExceededException" in str(degraded.data["refused"])


def test_when_codepipeline_takes_no_report_at_all_the_job_ends_within_the_attempts(
    tmp_path: Path,
) -> None:
    with harness(tmp_path) as h:
        for operation in ("PutJobSuccessResult", "PutJobFailureResult"):
            h.emulator.refuse(operation, "ValidationException")
        execution = h.start(CONFIG)
        final = h.run(execution)
        assert final.state is JobState.ABANDONED
        assert "refused even the shortest failure report" in str(final.reason)
        failures = [r for r in h.results(execution) if r["operation"] == "PutJobFailureResult"]
        # The failure as decided, then in ASCII without its external id, then retried by the
        # attempts of a failure nobody expected (TEST_SETTINGS.max_attempts), and no more.
        assert len(failures) == 2 + h.worker.settings.max_attempts - 1


def test_a_job_codepipeline_forgot_while_its_secrets_were_away_is_over_at_once(
    tmp_path: Path,
) -> None:
    quiet = replace(TEST_SETTINGS, report_progress=False)
    with ActionHarness(LedgerAction(), tmp_path, settings=quiet) as h:
        started = h.emulator.start_execution(
            "Test/Custom/Ledger/1", {"Ledger": str(tmp_path), "Outcome": "pass",
                                     "Steps": "1000", "Token": "ledger-secret-gone"},
            action="Ledger")
        execution = started["actionExecutionId"]
        while not h.jobs(execution) or h.jobs(execution)[0].state is not JobState.RUNNING:
            h.step()
        # Stopped and abandoned in the console; an hour later CodePipeline has forgotten the
        # job (the emulator's job_retention), and the worker's secrets have expired meanwhile.
        h.emulator.stop_execution(started["pipelineExecutionId"], abandon=True)
        h.clock.advance(h.emulator.job_retention or 0.0)
        before = h.emulator.call_counts().get("GetJobDetails", 0)
        final = h.run(execution)
        assert final.state is JobState.ABANDONED
        assert "GetJobDetails answered JobNotFoundException" in str(final.reason)
        assert h.emulator.call_counts()["GetJobDetails"] == before + 1  # asked once, no retries
        assert h.event_types(execution)[-1] == "job_rejected"
        assert "attempt_failed" not in h.event_types(execution)
        assert h.results(execution) == []  # nothing sent for a job that is over


def test_an_acknowledgement_refused_for_good_is_retried_by_attempts_not_for_a_day(
    tmp_path: Path,
) -> None:
    with harness(tmp_path) as h:
        h.emulator.refuse("AcknowledgeJob", "ValidationException", "nonce in an invalid format")
        began = h.clock.now()
        execution = h.start(CONFIG)
        final = h.run(execution)
        assert final.state is JobState.LOST
        assert "gave up after 4 attempts to acknowledge" in str(final.reason)
        assert "AcknowledgeJob refused: ValidationException" in str(final.reason)
        assert h.clock.now() - began < 600  # bounded by the attempts, not the job timeout
        assert h.emulator.call_counts()["AcknowledgeJob"] == h.worker.settings.max_attempts
