"""Injected 500s, rack-attack's plain-text 429 and latency, reproducible from a seed."""

from __future__ import annotations

import time

from actions.travis.emulator import TravisEmulator
from engine.clock import FakeClock
from engine.devtools.emulator._http import Request
from tests.emulator_travis.conftest import SLUG, WRITE, Api, repo_path

SERVER_ERROR = {
    "@type": "error",
    "error_type": "server_error",
    "error_message": "internal server error",
}


def test_error_draw_is_a_500_json_error_and_creates_nothing(
    api: Api, emulator: TravisEmulator
) -> None:
    emulator.faults.configure(error_rate=1.0)
    response = api.trigger()
    assert response.status_code == 500
    assert response.json() == SERVER_ERROR
    assert emulator.requests() == []


def test_throttle_draw_is_rack_attacks_plain_text_429(api: Api, emulator: TravisEmulator) -> None:
    emulator.faults.configure(throttle_rate=1.0)
    response = api.get(repo_path() + "/requests")
    assert response.status_code == 429
    assert response.headers["Content-Type"].startswith("text/plain")
    assert response.text == "Retry later\n"
    assert "Retry-After" not in response.headers

    emulator.retry_after = 30
    with_header = api.get(repo_path() + "/requests")
    assert with_header.status_code == 429
    assert with_header.headers["Retry-After"] == "30"


def _statuses_over_http(api: Api, count: int) -> list[int]:
    return [api.get(repo_path() + "/requests").status_code for _ in range(count)]


def _statuses_in_process(emulator: TravisEmulator, count: int) -> list[int]:
    request = Request(
        method="GET",
        path=repo_path() + "/requests",
        query={},
        headers={"travis-api-version": "3", "authorization": f"token {WRITE}"},
        body=b"",
    )
    return [emulator(request).status for _ in range(count)]


def test_faults_are_reproducible_from_the_seed(api: Api, emulator: TravisEmulator) -> None:
    emulator.faults.configure(error_rate=0.3, throttle_rate=0.3)
    first = _statuses_over_http(api, 40)
    assert {200, 429, 500} <= set(first)

    # Reseeding restarts the same sequence ...
    emulator.faults.configure(seed=7)
    assert _statuses_over_http(api, 40) == first

    # ... and so does a new emulator built with that seed (the fixture's is seed=7).
    twin = TravisEmulator(clock=FakeClock(), seed=7)
    twin.add_repository(SLUG, token=WRITE)
    twin.faults.configure(error_rate=0.3, throttle_rate=0.3)
    assert _statuses_in_process(twin, 40) == first

    other = TravisEmulator(clock=FakeClock(), seed=8)
    other.add_repository(SLUG, token=WRITE)
    other.faults.configure(error_rate=0.3, throttle_rate=0.3)
    assert _statuses_in_process(other, 40) != first


def test_faulted_calls_are_counted(api: Api, emulator: TravisEmulator) -> None:
    emulator.faults.configure(error_rate=1.0)
    for _ in range(3):
        assert api.trigger().status_code == 500
    assert emulator.call_counts() == {"POST /repo/{slug}/requests": 3}


def test_admin_endpoints_are_never_faulted(api: Api, emulator: TravisEmulator) -> None:
    emulator.faults.configure(error_rate=0.5, throttle_rate=0.5)
    for _ in range(20):
        assert api.admin("GET", "/_emulator/health").status_code == 200
    created = api.admin("POST", "/_emulator/repos", {"slug": "octo/new", "token": "new-token"})
    assert created.status_code == 201
    assert emulator.call_counts() == {}


def test_error_after_create_leaves_a_request_behind(
    api: Api, clock: FakeClock, emulator: TravisEmulator
) -> None:
    emulator.errors_after_create = True
    emulator.faults.configure(error_rate=1.0)
    response = api.trigger(message="did it happen?")
    assert response.status_code == 500
    assert response.json() == SERVER_ERROR
    assert [r["message"] for r in emulator.requests()] == ["did it happen?"]
    # Only POST /requests strikes late; a read that draws an error still does nothing.
    assert api.get(repo_path() + "/requests").status_code == 500

    emulator.faults.configure(error_rate=0.0)
    clock.advance(2)
    builds = api.get(repo_path() + "/builds").json()["builds"]
    assert [b["commit"]["message"] for b in builds] == ["did it happen?"]


def test_latency_is_wall_time_not_emulated_time(
    api: Api, clock: FakeClock, emulator: TravisEmulator
) -> None:
    emulator.faults.configure(latency=0.2)
    before = clock.now()
    started = time.monotonic()
    assert api.get(repo_path() + "/requests").status_code == 200
    assert time.monotonic() - started >= 0.2
    assert clock.now() == before
    # Admin calls are not slowed down.
    started = time.monotonic()
    assert api.admin("GET", "/_emulator/health").status_code == 200
    assert time.monotonic() - started < 0.2
