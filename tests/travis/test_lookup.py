"""The marker lookup on Travis as it is: pending requests show nothing, lists are bounded in time.

A worker that takes over a submission is another process: it is played here by a second
TravisAction, which shares nothing with the first but Travis.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from actions.travis import TravisAction, marker
from actions.travis.emulator import TravisEmulator
from actions.travis.lookup import CLOCK_SKEW, MAX_PAGES, iso
from engine import FakeClock, InProgress, RetryLater
from engine.devtools.emulator import Response
from tests.travis.conftest import SLUG, Job, Wire, quick_client


@pytest.fixture
def successor(action: TravisAction) -> Iterator[TravisAction]:
    """The worker that takes over after a crash: same Travis, nothing else in common."""
    taken_over = TravisAction(quick_client())
    yield taken_over
    taken_over.close()


@pytest.mark.parametrize("processed_message", ["status", "sent", "none"])
def test_a_pending_request_is_waited_for_then_found_whatever_a_request_shows_as_message(
    action: TravisAction, successor: TravisAction, travis: TravisEmulator, clock: FakeClock,
    wire: Wire, processed_message: str,
) -> None:
    """Travis's source leaves open what a processed request shows as its own message: the
    marker is found in either place, and while pending in neither."""
    travis.configure(processed_message=processed_message)
    travis.update_repository(SLUG, build_delay=25.0)  # slower than the action's grace
    first = Job(clock).submit(action)
    assert isinstance(first, InProgress)
    crashed = Job(clock)  # the 202's request id never reached the log
    waiting = crashed.submit(successor, resumed=True)
    assert isinstance(waiting, RetryLater) and not waiting.counted
    assert "still pending" in waiting.reason and str(first.data["request_id"]) in waiting.reason
    assert successor.find(crashed.context(resumed=True)) is None
    clock.advance(25.0)
    found = crashed.submit(successor, resumed=True)
    assert isinstance(found, InProgress)
    assert found.data["request_id"] == first.data["request_id"]
    assert len(wire.calls("POST")) == 1 and len(travis.requests(SLUG)) == 1


def test_pending_requests_this_process_made_for_others_do_not_hold_a_submit_up(
    action: TravisAction, successor: TravisAction, travis: TravisEmulator, clock: FakeClock
) -> None:
    travis.update_repository(SLUG, build_delay=25.0)
    Job(clock, execution_id="someone-else").submit(action)
    # The process that made it knows whose it is, and triggers at once...
    assert isinstance(Job(clock).submit(action, resumed=True), InProgress)
    # ...a process that did not must wait until Travis shows it.
    waiting = Job(clock, execution_id="a-third").submit(successor, resumed=True)
    assert isinstance(waiting, RetryLater) and "still pending" in waiting.reason
    assert len(travis.requests(SLUG)) == 2


def page(*requests: dict[str, Any], last: bool = True) -> Response:
    return Response.json(200, {"@type": "requests", "@pagination": {"is_last": last},
                               "requests": list(requests)})


def test_paging_stops_at_the_first_request_older_than_the_bound_even_if_from_is_ignored(
    action: TravisAction, clock: FakeClock, wire: Wire, travis: TravisEmulator
) -> None:
    now = clock.now()
    old = {"id": 9, "state": "pending", "result": None, "commit": None,
           "created_at": iso(now - 30 * 3600)}  # older than any submission: never ours
    wire.script.append(page(old, last=False))
    outcome = Job(clock).submit(action, resumed=True)
    assert isinstance(outcome, InProgress)
    assert len(wire.calls("GET", "/requests")) == 1


def test_the_lookup_is_bounded_by_the_first_submit_when_the_engine_says_when(
    action: TravisAction, clock: FakeClock, wire: Wire
) -> None:
    job = Job(clock)
    base = job.context(resumed=True)
    intended = clock.now() - 120.0
    context = replace(base, intended_at=intended)
    assert isinstance(action.submit(context), InProgress)
    (listing,) = wire.calls("GET", "/requests")
    assert listing.query["from"] == [iso(intended - CLOCK_SKEW)]
    # Without it: CodePipeline's 24 hours, the longest a submission can go on.
    Job(clock, execution_id="other").submit(action, resumed=True)
    listing = wire.calls("GET", "/requests")[-1]
    assert listing.query["from"] == [iso(clock.now() - 24 * 3600 - CLOCK_SKEW)]


def test_too_many_requests_to_read_is_not_taken_as_absent(
    action: TravisAction, clock: FakeClock, wire: Wire, travis: TravisEmulator
) -> None:
    someone = {"id": 7, "state": "finished", "result": "approved", "builds": [],
               "commit": {"message": "not ours"}, "created_at": iso(clock.now())}
    wire.script += [page(someone, last=False) for _ in range(MAX_PAGES)]
    outcome = Job(clock).submit(action, resumed=True)
    assert isinstance(outcome, RetryLater)
    assert outcome.counted and not outcome.transient
    assert f"{MAX_PAGES} requests" in outcome.reason and marker(Job(clock).execution_id) \
        in outcome.reason
    assert wire.calls("POST") == [] and travis.requests(SLUG) == []
