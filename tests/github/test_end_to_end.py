"""The action through the real engine: CodePipeline emulator, SQLite store, GitHub emulator, in
both API modes (github.com's return_run_details, and GitHub Enterprise Server's 204 and
lookup).

Both emulators and the engine share one FakeClock; the harness moves it to the next due time,
so GitHub's schedule advances with the engine's checks and a run of minutes takes
milliseconds.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from actions.github import marker
from actions.github.emulator import GitHubEmulator
from engine import FakeClock
from engine.devtools.testing import ActionHarness
from engine.machine import JobState
from engine.projection import Job
from tests.github.conftest import REPO, TOKEN, Wire, configuration, ghes, make_action

MODES = ["details", "ghes"]


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest, github: GitHubEmulator) -> str:
    if request.param == "ghes":
        ghes(github)
    return str(request.param)


@pytest.fixture
def harness(url: str, clock: FakeClock, tmp_path: Path, mode: str) -> Iterator[ActionHarness]:
    with ActionHarness(make_action(url), tmp_path, clock=clock) as running:
        yield running


def finish(harness: ActionHarness, execution: str) -> Job:
    """Run the execution to its end; its last job (continuations made at the same fake instant
    tie on their creation time, so the one that did not hand on is the last)."""
    harness.run(execution)
    (last,) = [j for j in harness.jobs(execution) if j.state is not JobState.HANDED_ON]
    return last


def ours(github: GitHubEmulator, execution: str) -> list[dict[str, Any]]:
    return [r for r in github.runs(REPO) if marker(execution) in r["display_title"]]


def released(harness: ActionHarness, execution: str) -> str:
    artifacts: Any = harness.jobs(execution)[0].pipeline["artifacts"]
    revision: str = artifacts["input"][0]["revision"]
    return revision


def test_a_passing_run_succeeds_with_output_variables_and_a_live_console_link(
    harness: ActionHarness, github: GitHubEmulator, wire: Wire, mode: str
) -> None:
    # Long enough to outlast the first continuation (the harness reaches it at the 300 s
    # continuation timeout), so a check sees the run going and reports it to the console.
    github.set_schedule(REPO, start_after=5, finish_after=1000)
    execution = harness.start(configuration())
    final = finish(harness, execution)
    assert final.state is JobState.SUCCEEDED

    (run,) = ours(github, execution)
    assert len(github.runs(REPO)) == 1 and sum(github.dispatches().values()) == 1
    revision = released(harness, execution)
    assert run["inputs"]["cpworker_revision"] == revision
    results = harness.results(execution)
    assert all(r["accepted"] for r in results)
    progress = [r["request"] for r in results if r["request"].get("continuationToken")]
    assert progress, "the console should be told about the run before it ends"
    shown = [p["executionDetails"].get("externalExecutionId") for p in progress]
    assert str(run["id"]) in shown
    url = f"https://github.com/{REPO}/actions/runs/{run['id']}"
    assert any(url in p["executionDetails"]["summary"] for p in progress)
    last = results[-1]["request"]
    assert "continuationToken" not in last
    assert last["outputVariables"] == {
        "RunId": str(run["id"]), "RunNumber": "1", "RunUrl": url, "Conclusion": "success",
        "HeadSha": run["head_sha"], "CommitId": revision}
    assert final.external_id == str(run["id"]) and final.run["revision"] == revision
    dispatches = wire.bodies()
    assert [("return_run_details" in b) for b in dispatches] == (
        [True] if mode == "details" else [True, False])


def test_a_failing_run_fails_the_execution_as_job_failed(
    harness: ActionHarness, github: GitHubEmulator
) -> None:
    github.set_schedule(REPO, conclusion="failure")
    execution = harness.start(configuration())
    assert finish(harness, execution).state is JobState.FAILED
    details = harness.results(execution)[-1]["request"]["failureDetails"]
    (run,) = ours(github, execution)
    assert details["type"] == "JobFailed"
    assert f"/actions/runs/{run['id']}" in details["message"]
    assert details["externalExecutionId"] == str(run["id"])


def test_an_abandoned_execution_cancels_its_run_and_force_cancels_one_that_goes_on(
    harness: ActionHarness, github: GitHubEmulator
) -> None:
    github.set_schedule(REPO, start_after=1, finish_after=100_000, ignore_cancel=True)
    execution = harness.start(configuration())
    for _ in range(200):
        harness.step()
        jobs = harness.jobs(execution)
        if jobs and jobs[-1].external_id and ours(github, execution):
            break
    (started,) = harness.emulator.executions()
    harness.emulator.stop_execution(started["id"], abandon=True,
                                    reason="superseded")
    final = finish(harness, execution)
    assert final.state is JobState.ABANDONED
    (run,) = ours(github, execution)
    assert run["cancel_requested"] and run["force_cancelled"]
    assert run["conclusion"] == "cancelled"
    types = [e.type for e in harness.store.history(final.job_id)]
    assert types[-1] == "run_cancelled" and "attempt_failed" in types


def test_a_dispatch_whose_answer_was_lost_gives_exactly_one_run(
    harness: ActionHarness, github: GitHubEmulator, wire: Wire
) -> None:
    github.errors_after_effect = True
    github.faults.configure(error_rate=1.0)
    execution = harness.start(configuration())
    for _ in range(20):
        harness.step()
        if "attempt_failed" in harness.event_types(execution):
            break
    github.faults.configure(error_rate=0.0)
    assert finish(harness, execution).state is JobState.SUCCEEDED
    assert len(ours(github, execution)) == 1 and len(github.runs(REPO)) == 1


def test_no_result_sent_to_codepipeline_carries_the_token(
    harness: ActionHarness, github: GitHubEmulator
) -> None:
    github.set_schedule(REPO, conclusion="timed_out")
    execution = harness.start(configuration())
    harness.run(execution)
    assert TOKEN not in repr(harness.results(execution))
    assert TOKEN not in repr(harness.history(execution))
