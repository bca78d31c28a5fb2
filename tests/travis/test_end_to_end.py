"""The action through the real engine: CodePipeline emulator, SQLite store, Travis emulator.

Both emulators and the engine share one FakeClock; the harness moves it to the next due time,
so Travis's schedule advances with the engine's checks and a build of minutes takes
milliseconds.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from actions.travis import TravisAction, marker
from actions.travis.emulator import TravisEmulator
from engine import FakeClock
from engine.devtools.testing import TEST_SETTINGS, ActionHarness
from engine.machine import JobState
from tests.travis.conftest import SLUG, TOKEN, Wire, configuration, quick_client


@pytest.fixture
def harness(url: str, clock: FakeClock, tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[ActionHarness]:
    monkeypatch.setenv("CPWORKER_TRAVIS_API_URL", url)
    with ActionHarness(TravisAction(quick_client()), tmp_path, clock=clock) as running:
        yield running


def ours(travis: TravisEmulator, execution: str) -> list[dict[str, Any]]:
    return [r for r in travis.requests(SLUG) if marker(execution) in (r["message"] or "")]


def released(harness: ActionHarness, execution: str) -> str:
    """The revision CodePipeline sent with the job (its input artifact), as the worker saw it."""
    artifacts: Any = harness.jobs(execution)[0].pipeline["artifacts"]
    revision: str = artifacts["input"][0]["revision"]
    return revision


def failure(harness: ActionHarness, execution: str) -> dict[str, Any]:
    details: dict[str, Any] = harness.results(execution)[-1]["request"]["failureDetails"]
    return details


def test_a_passing_build_succeeds_with_output_variables_and_a_live_console_link(
    harness: ActionHarness, travis: TravisEmulator
) -> None:
    # Long enough to outlast the first continuation (the harness reaches it at the 300 s
    # continuation timeout), so a check sees the build running and reports it to the console.
    travis.set_schedule(SLUG, start_after=5, finish_after=1000)
    execution = harness.start(configuration())
    final = harness.run(execution)
    assert final.state is JobState.SUCCEEDED

    (request,) = ours(travis, execution)
    assert len(travis.requests(SLUG)) == 1
    build_id = str(request["build_id"])
    results = harness.results(execution)
    assert all(r["accepted"] for r in results)
    progress = [r["request"] for r in results if r["request"].get("continuationToken")]
    assert progress, "the console should be told about the run before it ends"
    revision = released(harness, execution)
    assert request["sha"] == revision and request["commit_sha"] == revision
    # The console hears first of the build, whose link it shows; the pending request before it
    # is in the history only (the default progress mode, "link").
    assert progress[0]["executionDetails"]["externalExecutionId"] == build_id
    assert progress[0]["executionDetails"]["summary"].startswith("Travis build #1 ")
    pending = f"Travis request {request['id']} pending, revision {revision[:7]}"
    assert not any(p["executionDetails"]["summary"] == pending for p in progress)
    assert any(e.data.get("details", {}).get("summary") == pending
               for e in harness.history(execution))
    last = results[-1]["request"]
    assert "continuationToken" not in last
    assert last["outputVariables"] == {
        "BuildId": build_id, "BuildNumber": "1",
        "BuildUrl": f"https://app.travis-ci.com/github/octo/app/builds/{build_id}",
        "CommitId": revision,
    }
    assert final.run["revision"] == revision and final.run["commit"] == revision
    assert last["executionDetails"]["externalExecutionId"] == build_id
    assert final.external_id == build_id


def test_a_failing_build_fails_the_execution_as_job_failed(
    harness: ActionHarness, travis: TravisEmulator
) -> None:
    travis.set_schedule(SLUG, result="failed")
    execution = harness.start(configuration())
    assert harness.run(execution).state is JobState.FAILED
    details = failure(harness, execution)
    build_id = travis.builds(SLUG)[0]["id"]
    assert details["type"] == "JobFailed"
    assert f"/octo/app/builds/{build_id}" in details["message"]
    assert details["externalExecutionId"] == str(build_id)
    assert len(ours(travis, execution)) == 1


def test_a_rejected_request_fails_as_configuration_error(
    harness: ActionHarness, travis: TravisEmulator
) -> None:
    travis.set_schedule(SLUG, reject="Branch main not included per configuration.")
    execution = harness.start(configuration())
    assert harness.run(execution).state is JobState.FAILED
    details = failure(harness, execution)
    assert details["type"] == "ConfigurationError"
    assert "Branch main not included per configuration." in details["message"]
    assert travis.builds(SLUG) == []


def test_a_500_that_hides_a_created_request_still_gives_exactly_one_build(
    harness: ActionHarness, travis: TravisEmulator
) -> None:
    travis.errors_after_create = True
    travis.faults.configure(error_rate=1.0)
    execution = harness.start(configuration())
    for _ in range(20):
        harness.step()
        if "attempt_failed" in harness.event_types(execution):
            break
    assert len(travis.requests(SLUG)) == 1  # created, though the worker saw a 500
    travis.faults.configure(error_rate=0.0)

    assert harness.run(execution).state is JobState.SUCCEEDED
    assert len(travis.requests(SLUG)) == 1 and len(ours(travis, execution)) == 1
    failed = [e.data for e in harness.history(execution) if e.type == "attempt_failed"]
    assert failed[0]["counted"] and "HTTP 500" in failed[0]["error"]
    assert any(not f["counted"] and "pending" in f["error"] for f in failed[1:])


def test_the_hourly_limit_is_waited_out_and_the_build_then_runs(
    harness: ActionHarness, travis: TravisEmulator, clock: FakeClock
) -> None:
    travis.update_repository(SLUG, request_limit=1)
    earlier = harness.start(configuration())
    assert harness.run(earlier).state is JobState.SUCCEEDED
    later = harness.start(configuration())
    assert harness.run(later).state is JobState.SUCCEEDED
    waits = [e.data for e in harness.history(later) if e.type == "attempt_failed"]
    assert waits and all(not w["counted"] for w in waits)
    assert all("request_limit_reached" in w["error"] for w in waits)
    assert len(ours(travis, later)) == 1 and len(travis.requests(SLUG)) == 2


def test_a_lasting_travis_outage_is_retried_until_the_time_budget_then_fails(
    url: str, clock: FakeClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    travis: TravisEmulator, wire: Wire,
) -> None:
    """Server errors are transient: retried past --max-attempts, for as long as the run's time
    budget lasts, and only then reported as SystemUnavailable."""
    monkeypatch.setenv("CPWORKER_TRAVIS_API_URL", url)
    settings = replace(TEST_SETTINGS, time_budget=1800.0)
    with ActionHarness(TravisAction(quick_client()), tmp_path, clock=clock,
                       settings=settings) as harness:
        travis.faults.configure(error_rate=1.0)
        execution = harness.start(configuration())
        started = clock.now()
        assert harness.run(execution, max_steps=2000).state is JobState.FAILED
        details = failure(harness, execution)
        assert details["type"] == "SystemUnavailable"
        assert "out of time" in details["message"] and "30 min" in details["message"]
        assert SLUG in details["message"] and TOKEN not in details["message"]
        retries = [e for e in harness.history(execution) if e.type == "attempt_failed"]
        assert len(retries) > settings.max_attempts
        assert clock.now() - started >= settings.time_budget
        # POST once, then every resumed attempt looked for the marker instead of posting again.
        assert len(wire.calls("POST")) == 1


def test_no_result_sent_to_codepipeline_carries_the_token(
    harness: ActionHarness, travis: TravisEmulator
) -> None:
    travis.set_schedule(SLUG, result="errored")
    execution = harness.start(configuration())
    harness.run(execution)
    assert TOKEN not in repr(harness.results(execution))
    assert TOKEN not in repr(harness.history(execution))
