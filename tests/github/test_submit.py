"""submit(): one workflow run per action execution, in both API modes, whatever happened to
earlier attempts."""

from __future__ import annotations

from actions.github import GitHubAction, marker
from actions.github.emulator import GitHubEmulator
from engine import Failed, FailureType, FakeClock, InProgress, RetryLater, RunDetails
from engine.devtools.emulator import Response
from tests.github.conftest import (
    REF,
    REPO,
    REVISION,
    RUN_DELAY,
    TOKEN,
    Job,
    Wire,
    ghes,
    github_error,
    make_action,
)


def test_a_dispatch_with_run_details_records_the_run_id_at_once(
    action: GitHubAction, github: GitHubEmulator, clock: FakeClock, wire: Wire
) -> None:
    job = Job(clock, Inputs='{"environment": "production"}')
    outcome = job.submit(action)
    (run,) = github.runs(REPO)
    assert isinstance(outcome, InProgress)
    assert outcome.data["run_id"] == run["id"]
    assert outcome.data["revision"] == REVISION and outcome.data["dispatched_at"] == clock.now()
    assert outcome.details is not None and outcome.details.external_id == str(run["id"])
    (body,) = wire.bodies()
    assert body == {"ref": REF, "return_run_details": True, "inputs": {
        "environment": "production",
        "cpworker_marker": marker(job.execution_id), "cpworker_revision": REVISION}}
    assert run["display_title"] == f"Deploy {REVISION} [{marker(job.execution_id)}]"
    (post,) = wire.calls("POST")
    assert post.header("authorization") == f"Bearer {TOKEN}"
    assert post.header("x-github-api-version") == "2022-11-28"
    assert post.header("accept") == "application/vnd.github+json"


def test_ghes_refuses_run_details_so_the_dispatch_is_sent_once_more_without_and_remembered(
    action: GitHubAction, github: GitHubEmulator, clock: FakeClock, wire: Wire, url: str
) -> None:
    ghes(github)
    first = Job(clock).submit(action)
    assert isinstance(first, InProgress)
    assert "run_id" not in first.data and first.data["dispatched_at"] == clock.now()
    assert first.data["marker"] == marker(Job(clock).execution_id)
    assert first.details == RunDetails(None, f"GitHub workflow deploy.yml dispatched on {REF}, "
                                       f"revision {REVISION[:7]}; waiting for its run to show",
                                       0)
    assert first.check_in is not None and first.check_in <= RUN_DELAY
    assert [("return_run_details" in b) for b in wire.bodies()] == [True, False]
    assert len(github.runs(REPO)) == 1  # the refused dispatch created nothing
    assert action.run_details_refused(url)

    Job(clock, "other-execution").submit(action)
    assert [("return_run_details" in b) for b in wire.bodies()] == [True, False, False]
    assert len(github.runs(REPO)) == 2
    # Another process (a fresh action) asks again, once.
    make_action(url).submit(Job(clock, "third").context())
    assert [("return_run_details" in b) for b in wire.bodies()][3:] == [True, False]


def test_in_ghes_mode_the_run_is_found_by_its_marker_once_it_shows(
    action: GitHubAction, github: GitHubEmulator, clock: FakeClock
) -> None:
    ghes(github)
    # Someone else's dispatch of the same workflow, a moment earlier, must not be taken.
    Job(clock, "someone-else").submit(action)
    clock.advance(0.5)
    job = Job(clock)
    job.submit(action)
    waiting = job.check(action)
    assert isinstance(waiting, InProgress) and waiting.details is not None
    assert "waiting for its run to show" in (waiting.details.summary or "")
    clock.advance(RUN_DELAY)
    found = job.check(action)
    mine = next(r for r in github.runs(REPO) if marker(job.execution_id) in r["display_title"])
    assert isinstance(found, InProgress) and found.data["run_id"] == mine["id"]
    assert found.details is not None and found.details.external_id == str(mine["id"])
    assert len(github.runs(REPO)) == 2


def test_a_resumed_submit_finds_the_earlier_run_by_marker_in_both_modes(
    action: GitHubAction, github: GitHubEmulator, clock: FakeClock, wire: Wire
) -> None:
    first = Job(clock).submit(action)
    assert isinstance(first, InProgress)
    crashed = Job(clock)  # the engine lost the answer: no run id in the run data
    outcome = crashed.submit(action, resumed=True)
    assert isinstance(outcome, InProgress) and outcome.data["run_id"] == first.data["run_id"]

    ghes(github)
    other = Job(clock, "ghes-execution")
    other.submit(action)
    clock.advance(RUN_DELAY)
    again = Job(clock, "ghes-execution").submit(action, resumed=True)
    assert isinstance(again, InProgress) and "run_id" in again.data
    assert len(github.runs(REPO)) == 2
    assert sum(github.dispatches().values()) == 2


def test_a_dispatch_answered_500_after_it_ran_is_looked_up_not_sent_again(
    action: GitHubAction, github: GitHubEmulator, clock: FakeClock, wire: Wire
) -> None:
    ghes(github)
    Job(clock, "taught-the-action-ghes").submit(action)
    github.errors_after_effect = True
    github.faults.configure(error_rate=1.0)
    job = Job(clock)
    outcome = job.submit(action)
    assert isinstance(outcome, RetryLater) and outcome.counted
    assert outcome.after == RUN_DELAY and "may have reached GitHub" in outcome.reason
    assert len(github.runs(REPO)) == 2
    github.faults.configure(error_rate=0.0)
    clock.advance(outcome.after)
    again = job.submit(action, attempt=1)
    assert isinstance(again, InProgress) and "run_id" in again.data
    assert len(github.runs(REPO)) == 2 and len(wire.calls("POST")) == 3


def test_a_resumed_submit_that_finds_nothing_dispatches(
    action: GitHubAction, github: GitHubEmulator, clock: FakeClock
) -> None:
    outcome = Job(clock).submit(action, resumed=True)
    assert isinstance(outcome, InProgress) and "run_id" in outcome.data
    assert len(github.runs(REPO)) == 1


def test_a_dispatch_that_could_land_after_the_calls_deadline_is_not_sent(
    action: GitHubAction, github: GitHubEmulator, clock: FakeClock, wire: Wire
) -> None:
    outcome = Job(clock).submit(action, deadline=clock.now() + 1.0)
    assert isinstance(outcome, RetryLater) and not outcome.counted and outcome.after == 0.0
    assert wire.calls("POST") == [] and github.runs(REPO) == []


def test_the_submit_grace_covers_the_call_and_the_runs_delay(url: str) -> None:
    action = make_action(url)
    assert action.submit_grace == sum(action.client.timeout) + RUN_DELAY + 1.0


def test_a_job_without_a_commit_fails_as_configuration_error_before_any_call(
    action: GitHubAction, clock: FakeClock, wire: Wire
) -> None:
    outcome = Job(clock, revision=None).submit(action)
    assert isinstance(outcome, Failed)
    assert outcome.failure_type is FailureType.CONFIGURATION_ERROR
    assert "input artifact" in outcome.message and "Fix:" in outcome.message
    assert wire.seen == []


def test_a_lookup_over_too_many_runs_waits_instead_of_dispatching(
    action: GitHubAction, clock: FakeClock, wire: Wire, url: str
) -> None:
    page = {"total_count": 5000, "workflow_runs": [
        {"id": n, "display_title": f"Deploy x [cpworker:other-{n}]",
         "created_at": "2099-01-01T00:00:00Z"} for n in range(100)]}
    for _ in range(10):
        wire.script.append(Response.json(200, page, headers={
            "Link": f'<{url}/repos/octo/app/actions/workflows/deploy.yml/runs?page=2>; '
                    'rel="next"'}))
    outcome = Job(clock).submit(action, resumed=True)
    assert isinstance(outcome, RetryLater) and not outcome.transient
    assert "1000 runs" in outcome.reason
    assert wire.calls("POST") == []


def test_a_secondary_rate_limit_on_the_dispatch_is_waited_out_uncounted(
    action: GitHubAction, github: GitHubEmulator, clock: FakeClock
) -> None:
    github.impose_secondary_limit(TOKEN, 120.0)
    outcome = Job(clock).submit(action)
    assert isinstance(outcome, RetryLater) and not outcome.counted
    assert outcome.after == 120.0 and "secondary rate limit" in outcome.reason
    assert github.runs(REPO) == []


def test_a_primary_limit_waits_until_the_reset(
    action: GitHubAction, clock: FakeClock, wire: Wire
) -> None:
    reset = int(clock.now()) + 900
    wire.script.append(github_error(403, "API rate limit exceeded for user ID 1.",
                                    **{"x-ratelimit-remaining": "0",
                                       "x-ratelimit-reset": str(reset)}))
    outcome = Job(clock).submit(action)
    assert isinstance(outcome, RetryLater) and not outcome.counted
    assert outcome.after is not None and 899 <= outcome.after <= 902
    assert "hourly budget is spent" in outcome.reason


def test_no_outcome_carries_the_token(
    action: GitHubAction, clock: FakeClock, wire: Wire
) -> None:
    wire.script.append(github_error(401, f"Bad credentials {TOKEN}"))
    outcome = Job(clock).submit(action)
    assert isinstance(outcome, Failed) and TOKEN not in outcome.message
    assert outcome.failure_type is FailureType.PERMISSION_ERROR
