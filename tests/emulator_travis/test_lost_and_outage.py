"""Answers lost after Travis acted, and an outage a test switches on and off."""

from __future__ import annotations

import pytest
import requests

from actions.travis.emulator import TravisEmulator
from engine.clock import FakeClock
from tests.emulator_travis.conftest import Api, repo_path


def test_a_lost_answer_to_a_trigger_still_leaves_its_request(
    api: Api, clock: FakeClock, emulator: TravisEmulator
) -> None:
    """The dangerous case for a client: it sees a dropped connection, yet a build is coming."""
    emulator.faults.configure(lost_rate=1.0)
    with pytest.raises(requests.ConnectionError):
        api.trigger(message="[cpworker:lost-1]")
    emulator.faults.configure(lost_rate=0.0)
    assert [r["message"] for r in emulator.requests()] == ["[cpworker:lost-1]"]
    clock.advance(3)
    assert [b["message"] for b in emulator.builds()] == ["[cpworker:lost-1]"]
    assert emulator.call_counts() == {"POST /repo/{slug}/requests": 1}
    assert emulator.faults.counts()["lost"] == 1


def test_lost_answers_follow_the_seed(emulator: TravisEmulator) -> None:
    emulator.faults.configure(throttle_rate=0.2, error_rate=0.1, lost_rate=0.05, seed=3)
    first = [emulator.faults.draw() for _ in range(400)]
    emulator.faults.configure(seed=3)
    assert [emulator.faults.draw() for _ in range(400)] == first
    assert {None, "throttle", "error", "lost"} == set(first)


def test_an_unreachable_travis_resets_every_call_and_does_nothing(
    api: Api, emulator: TravisEmulator
) -> None:
    emulator.faults.configure(outage=True)
    with pytest.raises(requests.ConnectionError):
        api.trigger()
    with pytest.raises(requests.ConnectionError):
        api.get(repo_path() + "/requests")
    assert emulator.requests() == []
    assert emulator.call_counts() == {}
    assert emulator.faults.counts()["refused"] == 2
    emulator.faults.configure(outage=False)
    assert api.trigger().status_code == 202


def test_an_unavailable_travis_answers_the_front_ends_503_page(
    api: Api, emulator: TravisEmulator
) -> None:
    emulator.faults.configure(outage="unavailable")
    response = api.trigger()
    assert response.status_code == 503
    assert response.headers["Content-Type"].startswith("text/html")
    assert emulator.requests() == []
    emulator.faults.configure(outage=False)
    assert api.trigger().status_code == 202


def test_outage_and_lost_rate_over_the_admin_api(api: Api, emulator: TravisEmulator) -> None:
    answer = api.admin("POST", "/_emulator/faults", {"outage": "unreachable", "lost_rate": 0.5})
    assert answer.status_code == 200, answer.text
    assert (answer.json()["outage"], answer.json()["lost_rate"]) == ("unreachable", 0.5)
    # The admin side is the test's hand: an outage never touches it.
    assert api.admin("GET", "/_emulator/health").status_code == 200
    with pytest.raises(requests.ConnectionError):
        api.get("/user")
    off = api.admin("POST", "/_emulator/faults", {"outage": False, "lost_rate": 0})
    assert off.json()["outage"] is None
    assert api.admin("GET", "/_emulator/calls").json()["faults"]["refused"] == 1
    assert api.get("/user").status_code == 200
    bad = api.admin("POST", "/_emulator/faults", {"outage": "sometimes"})
    assert bad.status_code == 400 and "outage must be one of" in bad.json()["error"]


def test_reset_ends_an_outage(emulator: TravisEmulator) -> None:
    emulator.faults.configure(outage="unavailable", lost_rate=0.3)
    emulator.reset()
    assert (emulator.faults.outage, emulator.faults.lost_rate) == (None, 0.0)
