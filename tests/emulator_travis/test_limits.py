"""The per-repository limit of API-triggered requests per hour (PROTOCOL B8)."""

from __future__ import annotations

from actions.travis.emulator import TravisEmulator
from engine.clock import FakeClock
from tests.emulator_travis.conftest import OTHER, OTHER_SLUG, SLUG, Api, repo_path


def _remaining(api: Api) -> list[int]:
    """Use up the default limit of ten, returning what each 202 said was left."""
    seen = []
    for _ in range(10):
        response = api.trigger()
        assert response.status_code == 202, response.text
        seen.append(response.json()["remaining_requests"])
    return seen


def test_remaining_requests_counts_down_before_each_request(api: Api) -> None:
    assert _remaining(api) == [10, 9, 8, 7, 6, 5, 4, 3, 2, 1]


def test_eleventh_request_in_an_hour_is_429_json_without_retry_after(
    api: Api, clock: FakeClock, emulator: TravisEmulator
) -> None:
    first_at = clock.now()
    _remaining(api)
    clock.advance(1800)
    response = api.trigger(message="one too many")
    assert response.status_code == 429
    assert response.headers["Content-Type"] == "application/json"
    assert "Retry-After" not in response.headers
    repo_id = emulator.repositories()[0]["id"]
    assert response.json() == {
        "@type": "error",
        "error_type": "request_limit_reached",
        "error_message": "request limit reached for resource",
        "max_requests": 10,
        "per_seconds": 3600,
        "repository": {
            "@type": "repository",
            "@href": f"/repo/{repo_id}",
            "@representation": "minimal",
            "id": repo_id,
            "name": "app",
            "slug": SLUG,
        },
    }
    assert len(emulator.requests(SLUG)) == 10

    # The window slides: one second short of an hour after the first ten, still refused.
    clock.advance(first_at + 3599 - clock.now())
    assert api.trigger().status_code == 429
    clock.advance(1)
    allowed = api.trigger()
    assert allowed.status_code == 202
    assert allowed.json()["remaining_requests"] == 10
    assert api.trigger().status_code == 202
    assert api.trigger().json()["remaining_requests"] == 8


def test_the_limit_is_per_repository(api: Api) -> None:
    _remaining(api)
    assert api.trigger().status_code == 429
    other = api.trigger(slug=OTHER_SLUG, token=OTHER)
    assert other.status_code == 202
    assert other.json()["remaining_requests"] == 10


def test_limit_configured_per_repository_and_per_emulator(
    api: Api, emulator: TravisEmulator
) -> None:
    emulator.add_repository("octo/busy", token="busy-token", request_limit=2)
    assert api.trigger(slug="octo/busy", token="busy-token").json()["remaining_requests"] == 2
    assert api.trigger(slug="octo/busy", token="busy-token").status_code == 202
    refused = api.trigger(slug="octo/busy", token="busy-token")
    assert refused.status_code == 429
    assert refused.json()["max_requests"] == 2

    emulator.request_limit = 3
    assert [api.trigger().json()["remaining_requests"] for _ in range(3)] == [3, 2, 1]
    assert api.trigger().status_code == 429


def test_refused_calls_do_not_use_up_the_limit(api: Api, emulator: TravisEmulator) -> None:
    bad = api.call("POST", repo_path() + "/requests", body={"request": {"merge_mode": "x"}})
    assert bad.status_code == 400
    assert api.trigger(token="not-a-token").status_code == 403
    assert api.trigger().json()["remaining_requests"] == 10


def test_rejected_requests_count_towards_the_limit(
    api: Api, clock: FakeClock, emulator: TravisEmulator
) -> None:
    emulator.set_schedule(SLUG, reject="no builds today")
    api.trigger()
    clock.advance(5)
    assert emulator.requests()[0]["result"] == "rejected"
    assert api.trigger().json()["remaining_requests"] == 9
