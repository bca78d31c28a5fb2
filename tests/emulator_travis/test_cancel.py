"""POST /build/{id}/cancel (PROTOCOL B6)."""

from __future__ import annotations

import pytest

from engine.clock import FakeClock
from engine.emulator.travis import TravisEmulator
from tests.emulator_travis.conftest import OTHER, READ_ONLY, SLUG, Api, run_to_build


def test_cancel_a_started_build(api: Api, clock: FakeClock, emulator: TravisEmulator) -> None:
    build_id = run_to_build(api, clock)["id"]
    clock.advance(2.0)
    response = api.cancel(build_id)
    assert response.status_code == 202
    body = response.json()
    assert body["@type"] == "pending"
    assert body["resource_type"] == "build"
    assert body["state_change"] == "cancel"
    assert body["build"]["id"] == build_id
    # Like Travis, the 202 shows the build as it was; the change is visible on the next read.
    assert body["build"]["state"] == "started"

    canceled = api.build(build_id)
    assert canceled["state"] == "canceled"
    assert canceled["finished_at"] is not None
    assert canceled["duration"] == 1
    clock.advance(60)
    assert api.build(build_id)["state"] == "canceled"
    assert emulator.builds()[0]["canceled"] is True


@pytest.mark.parametrize("intermediate", [None, "received"])
def test_cancel_a_build_that_has_not_started(
    api: Api, clock: FakeClock, emulator: TravisEmulator, intermediate: str | None
) -> None:
    emulator.set_schedule(SLUG, intermediate=intermediate)
    build = run_to_build(api, clock)
    assert build["state"] == (intermediate or "created")
    assert api.cancel(build["id"]).status_code == 202
    canceled = api.build(build["id"])
    assert canceled["state"] == "canceled"
    assert canceled["started_at"] is None
    assert canceled["duration"] is None


def test_cancel_a_finished_build_is_409(api: Api, clock: FakeClock) -> None:
    build_id = run_to_build(api, clock)["id"]
    clock.advance(10)
    response = api.cancel(build_id)
    assert response.status_code == 409
    assert response.json() == {
        "@type": "error",
        "error_type": "build_not_cancelable",
        "error_message": "build is not running, cannot cancel",
    }
    assert api.build(build_id)["state"] == "passed"


def test_cancel_twice_is_409_the_second_time(api: Api, clock: FakeClock) -> None:
    build_id = run_to_build(api, clock)["id"]
    assert api.cancel(build_id).status_code == 202
    assert api.cancel(build_id).status_code == 409


def test_cancel_needs_write_access_and_visibility(api: Api, clock: FakeClock) -> None:
    build_id = run_to_build(api, clock)["id"]
    read_only = api.cancel(build_id, token=READ_ONLY)
    assert read_only.status_code == 403
    body = read_only.json()
    assert body["error_type"] == "insufficient_access"
    assert body["permission"] == "cancel"
    assert body["build"]["id"] == build_id
    stranger = api.cancel(build_id, token=OTHER)
    assert stranger.status_code == 404
    assert stranger.json()["error_message"] == "build not found (or insufficient access)"
    assert api.cancel(build_id, token=None).status_code == 403
    unknown = api.cancel(999_999)
    assert unknown.status_code == 404
    assert unknown.json()["resource_type"] == "build"
    assert api.build(build_id)["state"] == "created"
