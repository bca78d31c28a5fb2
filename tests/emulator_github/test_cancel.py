"""Cancel (202, taking effect after cancel_delay; 409 once over) and force-cancel."""

from __future__ import annotations

from actions.github.emulator import GitHubEmulator
from engine.clock import FakeClock
from tests.emulator_github.conftest import READ_ONLY, REPO, Api, body, github_error

CANCEL_DOCS = "https://docs.github.com/rest/actions/workflow-runs#cancel-a-workflow-run"
FORCE_DOCS = "https://docs.github.com/rest/actions/workflow-runs#force-cancel-a-workflow-run"
COMPLETED = "Cannot cancel a workflow run that is completed."


def _running(api: Api, clock: FakeClock, emulator: GitHubEmulator, **schedule: object) -> int:
    emulator.set_schedule(REPO, start_after=1, finish_after=100, **schedule)  # type: ignore[arg-type]
    run_id: int = body(api.dispatch(inputs={"revision": "r1"}, details=True),
                       200)["workflow_run_id"]
    clock.advance(5)
    assert body(api.run(run_id), 200)["status"] == "in_progress"
    return run_id


def test_a_cancel_is_accepted_and_takes_effect_after_the_delay(
        api: Api, clock: FakeClock, emulator: GitHubEmulator) -> None:
    run_id = _running(api, clock, emulator)
    assert body(api.cancel(run_id), 202) == {}
    assert body(api.run(run_id), 200)["status"] == "in_progress"
    clock.advance(1.9)
    assert body(api.run(run_id), 200)["status"] == "in_progress"
    assert body(api.cancel(run_id), 202) == {}  # a second cancel does not push it back
    clock.advance(0.1)
    run = body(api.run(run_id), 200)
    assert (run["status"], run["conclusion"]) == ("completed", "cancelled")
    assert run["updated_at"] == "2027-01-15T08:00:07Z"
    github_error(api.cancel(run_id), 409, COMPLETED, CANCEL_DOCS)
    github_error(api.cancel(run_id, force=True), 409, COMPLETED, FORCE_DOCS)


def test_a_queued_run_can_be_cancelled(api: Api, clock: FakeClock,
                                       emulator: GitHubEmulator) -> None:
    emulator.set_schedule(REPO, start_after=50, finish_after=100)
    run_id = body(api.dispatch(inputs={"revision": "r1"}, details=True), 200)["workflow_run_id"]
    assert body(api.cancel(run_id), 202) == {}
    clock.advance(2)
    assert body(api.run(run_id), 200)["conclusion"] == "cancelled"


def test_a_run_that_finishes_first_keeps_its_conclusion(
        api: Api, clock: FakeClock, emulator: GitHubEmulator) -> None:
    emulator.set_schedule(REPO, start_after=0, finish_after=1, conclusion="success")
    run_id = body(api.dispatch(inputs={"revision": "r1"}, details=True), 200)["workflow_run_id"]
    assert body(api.cancel(run_id), 202) == {}
    clock.advance(5)
    assert body(api.run(run_id), 200)["conclusion"] == "success"


def test_a_hanging_run_ignores_cancels_until_force_cancel(
        api: Api, clock: FakeClock, emulator: GitHubEmulator) -> None:
    run_id = _running(api, clock, emulator, ignore_cancel=True)
    assert body(api.cancel(run_id), 202) == {}
    clock.advance(30)
    assert body(api.run(run_id), 200)["status"] == "in_progress"
    assert body(api.cancel(run_id, force=True), 202) == {}
    run = body(api.run(run_id), 200)  # at once, no delay
    assert (run["status"], run["conclusion"]) == ("completed", "cancelled")
    [record] = emulator.runs(REPO)
    assert record["cancel_requested"] and record["force_cancelled"]


def test_one_run_can_be_made_to_hang_and_to_listen_again(
        api: Api, clock: FakeClock, emulator: GitHubEmulator) -> None:
    run_id = _running(api, clock, emulator)
    assert body(api.admin("POST", f"/runs/{run_id}", {"ignore_cancel": True}),
                200)["ignore_cancel"] is True
    api.cancel(run_id)
    clock.advance(10)
    assert body(api.run(run_id), 200)["status"] == "in_progress"
    emulator.set_run(run_id, ignore_cancel=False)
    assert body(api.run(run_id), 200)["conclusion"] == "cancelled"


def test_cancelling_needs_write_access(api: Api, clock: FakeClock,
                                       emulator: GitHubEmulator) -> None:
    run_id = _running(api, clock, emulator)
    github_error(api.cancel(run_id, token=READ_ONLY), 403,
                 "Resource not accessible by personal access token", CANCEL_DOCS)
    github_error(api.cancel(run_id, token=None), 404, "Not Found", CANCEL_DOCS)
    github_error(api.cancel(run_id + 1), 404, "Not Found", CANCEL_DOCS)
    clock.advance(10)
    assert body(api.run(run_id), 200)["status"] == "in_progress"
