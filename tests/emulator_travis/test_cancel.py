"""POST /build/{id}/cancel (PROTOCOL B6)."""

from __future__ import annotations

import pytest

from actions.travis.emulator import TravisEmulator
from engine.clock import FakeClock
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
    # Like Travis, the 202 shows the build as it was, and the cancel is queued
    # (queries/build.rb#cancel): the build goes on until it is handled.
    assert body["build"]["state"] == "started"
    assert api.build(build_id)["state"] == "started"
    assert emulator.builds()[0]["cancel_requested"] is True
    assert emulator.builds()[0]["canceled"] is False

    clock.advance(emulator.cancel_delay)
    canceled = api.build(build_id)
    assert canceled["state"] == "canceled"
    assert canceled["finished_at"] is not None
    assert canceled["duration"] == 2
    clock.advance(60)
    assert api.build(build_id)["state"] == "canceled"
    assert emulator.builds()[0]["canceled"] is True


@pytest.mark.parametrize("intermediate", [None, "received"])
def test_cancel_a_build_that_has_not_started(
    api: Api, clock: FakeClock, emulator: TravisEmulator, intermediate: str | None
) -> None:
    emulator.set_schedule(SLUG, intermediate=intermediate, start_after=5, finish_after=10)
    build = run_to_build(api, clock)
    assert build["state"] == (intermediate or "created")
    assert api.cancel(build["id"]).status_code == 202
    clock.advance(emulator.cancel_delay)
    canceled = api.build(build["id"])
    assert canceled["state"] == "canceled"
    assert canceled["started_at"] is None
    assert canceled["duration"] is None


def test_the_cancel_delay_is_a_setting(
    api: Api, clock: FakeClock, emulator: TravisEmulator
) -> None:
    emulator.set_schedule(SLUG, start_after=0, finish_after=100)
    assert emulator.configure(cancel_delay=7.5)["cancel_delay"] == 7.5
    build_id = run_to_build(api, clock)["id"]
    api.cancel(build_id)
    clock.advance(7.4)
    assert api.build(build_id)["state"] == "started"
    clock.advance(0.1)
    assert api.build(build_id)["state"] == "canceled"


def test_a_build_that_finishes_before_its_queued_cancel_keeps_its_result(
    api: Api, clock: FakeClock, emulator: TravisEmulator
) -> None:
    emulator.set_schedule(SLUG, start_after=0, finish_after=1, result="failed")
    emulator.configure(cancel_delay=5.0)
    build_id = run_to_build(api, clock)["id"]
    assert api.cancel(build_id).status_code == 202
    clock.advance(10)
    assert api.build(build_id)["state"] == "failed"
    assert emulator.builds()[0]["canceled"] is False


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


def test_a_second_cancel_while_the_first_is_queued_is_accepted_and_409_once_canceled(
    api: Api, clock: FakeClock, emulator: TravisEmulator
) -> None:
    """Only a build already in a final state is not cancelable (queries/build.rb#cancel)."""
    build_id = run_to_build(api, clock)["id"]
    assert api.cancel(build_id).status_code == 202
    assert api.cancel(build_id).status_code == 202
    clock.advance(emulator.cancel_delay)
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
