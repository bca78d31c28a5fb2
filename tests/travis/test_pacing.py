"""POSTs paced per token so that Travis's ban (50 POSTs in 30 s, then an hour) never strikes."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from actions.travis import PostPacer, TravisAction
from actions.travis.emulator import TravisEmulator
from actions.travis.errors import BLOCKED_WAIT
from actions.travis.pacing import LIMIT, WINDOW, key_for
from actions.travis.target import Target
from engine import Failed, FailureType, FakeClock, InProgress, RetryLater
from engine.devtools.testing import TEST_SETTINGS, ActionHarness
from engine.history import timeline
from tests.travis.conftest import SLUG, TOKEN, Job, Wire, configuration, quick_client


def test_forty_go_out_at_once_and_the_rest_get_turns_of_their_own() -> None:
    pacer = PostPacer()
    key = key_for("https://api.travis-ci.com", TOKEN)
    assert TOKEN not in key
    assert [pacer.admit(key, 100.0) for _ in range(LIMIT)] == [None] * LIMIT
    waits = [pacer.admit(key, 100.0) for _ in range(3)]
    assert all(w is not None for w in waits)
    turns = [w.seconds for w in waits if w is not None]
    assert turns == [WINDOW, WINDOW + WINDOW / LIMIT, WINDOW + 2 * WINDOW / LIMIT]
    assert [w.queued for w in waits if w is not None] == [0, 1, 2]
    assert pacer.sent(key, 100.0) == LIMIT
    # Another token, or the same token at another Travis, is counted apart.
    assert pacer.admit(key_for("https://api.travis-ci.com", "another"), 100.0) is None
    assert pacer.admit(key_for("https://travis.example.com/api", TOKEN), 100.0) is None
    # Once the window has passed, there is room again.
    assert pacer.admit(key, 100.0 + WINDOW) is None


def test_a_recorded_cancel_takes_a_place_in_the_window() -> None:
    pacer = PostPacer(limit=2, window=30.0)
    pacer.record("k", 0.0)
    assert pacer.admit("k", 1.0) is None
    wait = pacer.admit("k", 2.0)
    assert wait is not None and wait.seconds == pytest.approx(28.0) and wait.sent == 2


def test_the_action_paces_its_triggers_and_says_so_in_a_wait_that_uses_no_attempt(
    action: TravisAction, travis: TravisEmulator, clock: FakeClock, wire: Wire
) -> None:
    travis.update_repository(SLUG, request_limit=1000)
    jobs = [Job(clock, execution_id=f"execution-{n}") for n in range(LIMIT + 5)]
    outcomes = [job.submit(action) for job in jobs]
    assert sum(isinstance(o, InProgress) for o in outcomes) == LIMIT
    paced = [o for o in outcomes if isinstance(o, RetryLater)]
    assert len(paced) == 5
    for outcome in paced:
        assert not outcome.counted and outcome.after is not None and outcome.after >= WINDOW
        assert "pacing POSTs to Travis: 40 sent with this token" in outcome.reason
        assert "Travis bans a token for an hour" in outcome.reason
    assert len(wire.calls("POST")) == LIMIT and not travis.is_banned(TOKEN)
    # At its turn each paced job looks for its request (none: the process knows all of the
    # pending ones are others'), and triggers.
    clock.advance(max(o.after or 0.0 for o in paced))
    late = [job.submit(action, resumed=True) for job in jobs[LIMIT:]]
    assert all(isinstance(o, InProgress) for o in late)
    assert len(travis.requests(SLUG)) == LIMIT + 5 and not travis.is_banned(TOKEN)


def test_cancels_count_towards_the_token_s_posts(
    action: TravisAction, travis: TravisEmulator, clock: FakeClock
) -> None:
    travis.set_schedule(SLUG, start_after=1, finish_after=100)
    job = Job(clock)
    job.submit(action)
    clock.advance(3.0)
    job.check(action)
    assert action.cancel(job.context()).ok
    target = Target.parse(job.configuration, action.settings.api_url)
    assert isinstance(target, Target)
    assert action.pacer.sent(key_for(target.endpoint.url, TOKEN), clock.now()) == 2


def test_a_banned_token_is_waited_out_not_failed(
    action: TravisAction, travis: TravisEmulator, clock: FakeClock
) -> None:
    travis.configure(ban_posts=1)
    Job(clock, execution_id="first").submit(action)  # the one POST allowed: banned from now
    outcome = Job(clock).submit(action)
    assert isinstance(outcome, RetryLater)
    assert (outcome.after, outcome.counted) == (BLOCKED_WAIT, False)
    assert "50 POSTs in 30 seconds" in outcome.reason and "Forbidden" in outcome.reason


@pytest.mark.parametrize("shape", ["json", "text"])
def test_a_wrong_token_is_a_permission_error_naming_the_property_in_either_shape(
    action: TravisAction, travis: TravisEmulator, clock: FakeClock, shape: str
) -> None:
    travis.configure(wrong_token=shape)
    outcome = Job(clock, APIToken="trv-nobody-knows-me").submit(action)
    assert isinstance(outcome, Failed)
    assert outcome.failure_type is FailureType.PERMISSION_ERROR
    assert "wrong_credentials" in outcome.message and "access denied" in outcome.message
    assert "set the action's APIToken" in outcome.message
    assert "trv-nobody-knows-me" not in outcome.message


# --- through the engine: 200 executions queued at once ----------------------------------------


@pytest.fixture
def harness(url: str, clock: FakeClock, tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[ActionHarness]:
    monkeypatch.setenv("CPWORKER_TRAVIS_API_URL", url)
    settings = replace(TEST_SETTINGS, effect_threads=8, report_progress=False)
    with ActionHarness(TravisAction(quick_client()), tmp_path, clock=clock,
                       settings=settings) as running:
        yield running


def run_all(harness: ActionHarness, max_steps: int = 20_000) -> None:
    """Step the engine, moving the fake clock to the next due time, until CodePipeline holds
    nothing unfinished."""
    for _ in range(max_steps):
        if harness.step():
            continue
        now = harness.clock.now()
        due = harness.store.earliest_due(now)
        if due is None and not any(e["status"] == "InProgress"
                                   for e in harness.emulator.executions()):
            return
        harness.clock.advance(max(0.001, (due or now + 1.0) - now))
    raise AssertionError("the executions did not finish")


def test_two_hundred_executions_at_once_never_trip_the_ban(
    harness: ActionHarness, travis: TravisEmulator, clock: FakeClock
) -> None:
    travis.update_repository(SLUG, request_limit=1000)  # Travis admins can raise the hourly cap
    travis.set_schedule(SLUG, start_after=5, finish_after=60)
    executions = [harness.start(configuration()) for _ in range(200)]
    run_all(harness)

    assert travis.bans() == [] and travis.attack.banned_calls == 0
    statuses = {e["actionExecutionId"]: e["status"] for e in harness.emulator.executions()}
    assert all(statuses[e] == "Succeeded" for e in executions)
    requests = travis.requests(SLUG)
    assert len(requests) == 200 and len(travis.builds(SLUG)) == 200
    assert all(b["state"] == "passed" for b in travis.builds(SLUG))
    # Never more than the pacer's 40 in any 30 s, as Travis saw them.
    times = sorted(r["created_at"] for r in requests)
    assert max(sum(1 for t in times if start <= t < start + WINDOW) for start in times) <= LIMIT
    # The waits are in the histories, each an attempt that used up nothing.
    paced = [e for x in executions for e in harness.history(x)
             if e.type == "attempt_failed" and "pacing POSTs" in str(e.data.get("error"))]
    assert len({e.job_id for e in paced}) >= 200 - LIMIT
    assert all(e.data["counted"] is False for e in paced)
    paced_job = harness.store.get(paced[-1].job_id)
    assert paced_job is not None
    shown = timeline(harness.store, paced_job)  # what `cpworker inspect` prints
    assert "attempt_failed" in shown and "pacing POSTs to Travis" in shown
