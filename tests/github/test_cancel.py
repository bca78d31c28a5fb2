"""cancel(): a gentle cancel, a look a little later, force-cancel for a run that goes on."""

from __future__ import annotations

from actions.github import GitHubAction
from actions.github.action import CANCEL_RECHECK, FORCE_CANCEL_AFTER
from actions.github.emulator import GitHubEmulator
from engine import Cancelled, FakeClock, RetryLater
from tests.github.conftest import REPO, Job, Wire, ghes, make_action


def test_a_cancel_is_checked_a_little_later_and_then_done(
    action: GitHubAction, github: GitHubEmulator, clock: FakeClock, wire: Wire
) -> None:
    job = Job(clock)
    job.submit(action)
    first = action.cancel(job.context())
    assert isinstance(first, RetryLater) and first.after == CANCEL_RECHECK and first.counted
    clock.advance(CANCEL_RECHECK)
    second = action.cancel(job.context(attempt=1))
    assert isinstance(second, Cancelled) and second.ok and "was cancelled" in second.message
    assert "(cancelled;" in second.message
    assert github.runs(REPO)[0]["conclusion"] == "cancelled"
    assert len(wire.calls("POST", "/cancel")) == 1 and wire.calls("POST", "/force-cancel") == []


def test_a_run_that_ignores_the_cancel_is_force_cancelled_after_a_while(
    action: GitHubAction, github: GitHubEmulator, clock: FakeClock, wire: Wire
) -> None:
    github.set_schedule(REPO, finish_after=3600.0, ignore_cancel=True)
    job = Job(clock)
    job.submit(action)
    assert isinstance(action.cancel(job.context()), RetryLater)
    clock.advance(CANCEL_RECHECK)
    waiting = action.cancel(job.context(attempt=1))
    assert isinstance(waiting, RetryLater)
    assert waiting.after == FORCE_CANCEL_AFTER - CANCEL_RECHECK
    assert wire.calls("POST", "/force-cancel") == []
    clock.advance(waiting.after)
    forced = action.cancel(job.context(attempt=2))
    assert isinstance(forced, Cancelled) and forced.ok and "force-cancelled" in forced.message
    (run,) = github.runs(REPO)
    assert run["force_cancelled"] and run["conclusion"] == "cancelled"


def test_a_finished_run_is_not_cancelled(
    action: GitHubAction, github: GitHubEmulator, clock: FakeClock, wire: Wire
) -> None:
    github.set_schedule(REPO, start_after=0.0, finish_after=1.0)
    job = Job(clock)
    job.submit(action)
    clock.advance(2.0)
    outcome = action.cancel(job.context())
    assert isinstance(outcome, Cancelled) and outcome.ok and "already finished" in outcome.message
    assert wire.calls("POST", "/cancel") == []


def test_in_ghes_mode_the_run_is_found_by_marker_to_be_cancelled(
    action: GitHubAction, github: GitHubEmulator, clock: FakeClock
) -> None:
    ghes(github)
    github.set_schedule(REPO, finish_after=3600.0)
    job = Job(clock)
    job.submit(action)
    early = action.cancel(job.context())
    assert isinstance(early, RetryLater) and "is listed yet" in early.reason
    assert early.after == action.submit_grace
    assert not github.runs(REPO)[0]["cancel_requested"]
    clock.advance(early.after)
    assert isinstance(action.cancel(job.context(attempt=1)), RetryLater)
    assert github.runs(REPO)[0]["cancel_requested"]


def test_a_dispatch_whose_run_never_shows_has_nothing_to_cancel(
    action: GitHubAction, github: GitHubEmulator, clock: FakeClock
) -> None:
    ghes(github)
    job = Job(clock, Workflow="no-run-name.yml")
    job.submit(action)
    clock.advance(action.give_up_after)
    outcome = action.cancel(job.context(attempt=3))
    assert isinstance(outcome, Cancelled) and outcome.ok and "appeared" in outcome.message


def test_a_worker_that_restarted_sends_the_cancel_again_then_forces(
    action: GitHubAction, github: GitHubEmulator, clock: FakeClock, url: str
) -> None:
    github.set_schedule(REPO, finish_after=3600.0, ignore_cancel=True)
    job = Job(clock)
    job.submit(action)
    assert isinstance(action.cancel(job.context()), RetryLater)
    clock.advance(CANCEL_RECHECK)
    restarted = make_action(url)
    again = restarted.cancel(job.context(attempt=1))
    assert isinstance(again, RetryLater) and again.after == CANCEL_RECHECK
    clock.advance(FORCE_CANCEL_AFTER)
    forced = restarted.cancel(job.context(attempt=2))
    assert isinstance(forced, Cancelled) and "force-cancelled" in forced.message


def test_nothing_dispatched_means_nothing_to_cancel(
    action: GitHubAction, clock: FakeClock, wire: Wire
) -> None:
    outcome = action.cancel(Job(clock).context())
    assert isinstance(outcome, Cancelled) and outcome.ok and wire.seen == []
