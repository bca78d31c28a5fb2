"""The revision the pipeline releases is the one Travis builds (or the branch head, if asked)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from actions.travis import TravisAction
from actions.travis.emulator import TravisEmulator
from engine import Done, Failed, FailureType, FakeClock, InProgress, RunDetails
from engine.cli import main
from engine.devtools.emulator import Response
from engine.devtools.testing import ActionHarness
from engine.machine import JobState
from tests.travis.conftest import BRANCH, REVISION, SLUG, Job, Wire, configuration, quick_client

MOVED_ON = "9" * 40


def test_the_input_artifact_s_revision_is_built_though_the_branch_moved_on(
    action: TravisAction, travis: TravisEmulator, clock: FakeClock, wire: Wire
) -> None:
    travis.push(SLUG, BRANCH, sha=REVISION)
    job = Job(clock)
    assert isinstance(job.submit(action), InProgress)
    travis.push(SLUG, BRANCH, sha=MOVED_ON)  # pushed before Travis processed the request
    (sent,) = wire.calls("POST")
    assert sent.json()["request"]["sha"] == REVISION
    assert sent.json()["request"]["branch"] == BRANCH
    clock.advance(60.0)
    outcome = job.check(action)
    assert isinstance(outcome, Done)
    assert travis.builds(SLUG)[0]["sha"] == REVISION
    assert outcome.output_variables["CommitId"] == REVISION
    assert job.run["revision"] == REVISION and job.run["commit"] == REVISION


def test_build_branch_head_builds_the_head_when_travis_gets_to_it(
    action: TravisAction, travis: TravisEmulator, clock: FakeClock, wire: Wire
) -> None:
    travis.push(SLUG, BRANCH, sha=REVISION)
    job = Job(clock, BuildBranchHead="True")
    pending = job.submit(action)
    assert isinstance(pending, InProgress)
    assert pending.details == RunDetails(
        None, f"Travis request {job.run['request_id']} pending, head of {BRANCH}", 0)
    assert job.run["revision"] is None
    assert "sha" not in wire.calls("POST")[0].json()["request"]
    travis.push(SLUG, BRANCH, sha=MOVED_ON)
    clock.advance(2.0)
    running = job.check(action)
    assert isinstance(running, InProgress) and running.details is not None
    assert running.details.summary == f"Travis build #1 created, {MOVED_ON[:7]}"
    assert job.run["commit"] == MOVED_ON


def test_no_revision_and_no_branch_head_is_a_configuration_error_before_any_call(
    action: TravisAction, clock: FakeClock, wire: Wire
) -> None:
    outcome = Job(clock, revision=None).submit(action)
    assert isinstance(outcome, Failed)
    assert outcome.failure_type is FailureType.CONFIGURATION_ERROR
    assert "no revision to build" in outcome.message
    assert "source artifact" in outcome.message and "BuildBranchHead" in outcome.message
    assert wire.seen == []
    assert action.find(Job(clock, revision=None).context(resumed=True)) is None
    assert wire.seen == []


def test_no_revision_is_fine_when_the_branch_head_is_asked_for(
    action: TravisAction, travis: TravisEmulator, clock: FakeClock
) -> None:
    outcome = Job(clock, revision=None, BuildBranchHead="true").submit(action)
    assert isinstance(outcome, InProgress)
    assert travis.requests(SLUG)[0]["sha"] is None


def test_a_revision_that_is_not_a_commit_id_is_a_configuration_error(
    action: TravisAction, clock: FakeClock, wire: Wire
) -> None:
    outcome = Job(clock, revision="3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY").submit(action)  # S3
    assert isinstance(outcome, Failed)
    assert outcome.failure_type is FailureType.CONFIGURATION_ERROR
    assert "not a git commit id" in outcome.message and "SourceArtifact" in outcome.message
    assert wire.seen == []


def test_the_first_input_artifact_naming_a_commit_is_built(
    action: TravisAction, travis: TravisEmulator, clock: FakeClock
) -> None:
    job = Job(clock, revision=None)
    job.input_artifacts = (
        {"name": "Settings", "revision": "3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY"},
        {"name": "Code", "revision": REVISION.upper()},
        {"name": "Other", "revision": MOVED_ON},
    )
    assert isinstance(job.submit(action), InProgress)
    assert travis.requests(SLUG)[0]["sha"] == REVISION


def test_build_branch_head_must_be_true_or_false(
    action: TravisAction, clock: FakeClock, wire: Wire
) -> None:
    outcome = Job(clock, BuildBranchHead="yes").submit(action)
    assert isinstance(outcome, Failed)
    assert outcome.failure_type is FailureType.CONFIGURATION_ERROR
    assert "BuildBranchHead 'yes' must be true or false" in outcome.message
    assert wire.seen == []


# --- a sha Travis does not have: what Travis does with it is a setting of the emulator --------


def test_a_sha_travis_rejects_fails_saying_the_revision_cannot_be_built(
    action: TravisAction, travis: TravisEmulator, clock: FakeClock
) -> None:
    travis.update_repository(SLUG, unknown_sha="reject")
    job = Job(clock)
    assert isinstance(job.submit(action), InProgress)
    clock.advance(3.0)
    outcome = job.check(action)
    assert isinstance(outcome, Failed)
    assert outcome.failure_type is FailureType.REVISION_UNAVAILABLE
    assert f"the revision {REVISION} (input artifact SourceArtifact) cannot be built" \
        in outcome.message
    assert "Could not find commit" in outcome.message  # Travis's own words
    assert travis.builds(SLUG) == []


def test_a_sha_whose_build_errors_fails_naming_the_revision(
    action: TravisAction, travis: TravisEmulator, clock: FakeClock
) -> None:
    travis.update_repository(SLUG, unknown_sha="errored")
    job = Job(clock)
    job.submit(action)
    clock.advance(10.0)
    outcome = job.check(action)
    assert isinstance(outcome, Failed)
    assert outcome.failure_type is FailureType.JOB_FAILED
    assert f"Travis build #1 of {REVISION[:12]} errored" in outcome.message


def test_a_sha_travis_accepts_as_given_is_built(
    action: TravisAction, travis: TravisEmulator, clock: FakeClock
) -> None:
    travis.update_repository(SLUG, unknown_sha="accept")
    job = Job(clock)
    job.submit(action)
    clock.advance(10.0)
    assert isinstance(job.check(action), Done)
    assert travis.builds(SLUG)[0]["sha"] == REVISION


def test_a_build_of_another_commit_is_never_reported_as_the_revision_s(
    action: TravisAction, travis: TravisEmulator, clock: FakeClock, wire: Wire
) -> None:
    """A Travis that ignored the sha would test one commit while the pipeline ships another."""
    job = Job(clock)
    job.submit(action)
    clock.advance(10.0)
    job.check(action)  # the build id is recorded now
    build: dict[str, Any] = {"@type": "build", "id": job.run["build_id"], "number": "1",
                             "state": "passed", "commit": {"sha": MOVED_ON}}
    wire.script.append(Response.json(200, build))
    outcome = job.check(action)
    assert isinstance(outcome, Failed)
    assert outcome.failure_type is FailureType.REVISION_OUT_OF_SYNC
    assert f"of commit {MOVED_ON[:12]}, not of the revision {REVISION[:12]}" in outcome.message


# --- through the engine ---------------------------------------------------------------------


@pytest.fixture
def harness(url: str, clock: FakeClock, tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[ActionHarness]:
    monkeypatch.setenv("CPWORKER_TRAVIS_API_URL", url)
    with ActionHarness(TravisAction(quick_client()), tmp_path, clock=clock) as running:
        yield running


def test_a_branch_that_moves_between_start_and_submission_still_gets_its_revision_built(
    harness: ActionHarness, travis: TravisEmulator, tmp_path: Path
) -> None:
    travis.update_repository(SLUG, unknown_sha="reject")  # only commits pushed here exist
    execution = harness.start(configuration())
    harness.step()  # polled: the job and its input artifact are recorded, nothing submitted
    assert travis.requests(SLUG) == []
    (job,) = harness.jobs(execution)
    artifacts: Any = job.pipeline["artifacts"]
    released = artifacts["input"][0]["revision"]
    travis.push(SLUG, BRANCH, sha=released)
    travis.push(SLUG, BRANCH, sha=MOVED_ON)  # the branch moves on before the submission

    final = harness.run(execution)
    assert final.state is JobState.SUCCEEDED
    (build,) = travis.builds(SLUG)
    assert build["sha"] == released != travis.head(SLUG, BRANCH)
    assert harness.results(execution)[-1]["request"]["outputVariables"]["CommitId"] == released
    # inspect shows the revision: in the summaries, and in full in the run data (--json).
    shown = CliRunner().invoke(main, ["--db", f"sqlite:///{tmp_path / 'state.db'}", "inspect",
                                      final.job_id])
    assert f"revision {released[:7]}" in shown.output or f", {released[:7]}" in shown.output
    as_json = CliRunner().invoke(main, ["--db", f"sqlite:///{tmp_path / 'state.db'}", "inspect",
                                        job.job_id, "--json"])
    assert f'"revision": "{released}"' in as_json.output
