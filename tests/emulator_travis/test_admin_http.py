"""The admin interface under /_emulator/: what a CLI or another process uses to set the stage."""

from __future__ import annotations

from typing import Any

import pytest

from actions.travis.emulator import TravisEmulator
from engine.clock import FakeClock
from tests.emulator_travis.conftest import MARKER, SLUG, WRITE, Api, accepted


def _ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def test_health(api: Api) -> None:
    assert _ok(api.admin("GET", "/_emulator/health")) == {"ok": True, "service": "travis"}


def test_add_repository_and_use_it(api: Api, emulator: TravisEmulator) -> None:
    record = _ok(
        api.admin(
            "POST",
            "/_emulator/repos",
            {
                "slug": "acme/site",
                "token": "acme-write",
                "read_only_tokens": ["acme-read"],
                "default_branch": "trunk",
                "request_limit": 3,
                "build_delay": 0.5,
            },
        ),
        201,
    )
    assert isinstance(record["id"], int)
    assert record["slug"] == "acme/site"
    assert record["default_branch"] == "trunk"
    assert record["request_limit"] == 3
    assert record["build_delay"] == 0.5
    assert record["tokens"] == 2
    assert "acme-write" not in str(record)

    accepted_body = accepted(api, slug="acme/site", token="acme-write")
    assert accepted_body["remaining_requests"] == 3
    assert accepted_body["request"]["branch"] == "trunk"
    assert api.trigger(slug="acme/site", token="acme-read").status_code == 403
    listed = _ok(api.admin("GET", "/_emulator/repos"))["repositories"]
    assert [r["slug"] for r in listed] == [SLUG, "octo/other", "acme/site"]


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        ({"slug": "no-slash"}, "owner/name"),
        ({"slug": SLUG}, "already exists"),
        ({"slug": "a/b", "colour": "red"}, "unknown keys ['colour']"),
        ({"slug": "a/b", "request_limit": "ten"}, "request_limit must be of type int"),
        ({"slug": "a/b", "request_limit": True}, "request_limit must be of type int"),
        ({"slug": "a/b", "build_delay": -1}, "build delay must be a number"),
        ({"slug": "a/b", "token": "has space"}, "without whitespace"),
        ({"slug": "a/b", "read_only_tokens": "tok"}, "read_only_tokens must be a list"),
        ({}, "slug is required"),
    ],
)
def test_bad_repository_input_is_400(
    api: Api, emulator: TravisEmulator, body: dict[str, Any], complaint: str
) -> None:
    response = api.admin("POST", "/_emulator/repos", body)
    assert response.status_code == 400
    assert complaint in response.json()["error"]
    assert [r["slug"] for r in emulator.repositories()] == [SLUG, "octo/other"]


def test_body_must_be_a_json_object(api: Api) -> None:
    response = api.session.post(api.base_url + "/_emulator/repos", data=b"slug=a/b", timeout=10)
    assert response.status_code == 400
    assert response.json() == {"error": "the body must be JSON"}


def test_add_token_with_encoded_or_plain_slug(api: Api) -> None:
    added = _ok(api.admin("POST", "/_emulator/repos/octo%2Fapp/tokens", {"token": "late-token"}))
    assert added == {"ok": True, "slug": SLUG, "read_only": False}
    assert api.trigger(token="late-token").status_code == 202
    _ok(api.admin("POST", "/_emulator/repos/octo/app/tokens", {"token": "rt", "read_only": True}))
    assert api.trigger(token="rt").status_code == 403
    missing = api.admin("POST", "/_emulator/repos/octo%2Fnope/tokens", {"token": "x"})
    assert missing.status_code == 404
    assert "no repository 'octo/nope'" in missing.json()["error"]
    assert api.admin("POST", "/_emulator/repos/octo%2Fapp/tokens", {}).status_code == 400


def test_schedule_over_http(api: Api, clock: FakeClock) -> None:
    _ok(
        api.admin(
            "POST",
            "/_emulator/repos/octo%2Fapp/schedule",
            {"branch": "nightly", "start_after": 0, "finish_after": 3, "result": "errored"},
        )
    )
    _ok(api.admin("POST", "/_emulator/repos/octo%2Fapp/schedule", {"reject": "paused"}))
    nightly = accepted(api, branch="nightly")["request"]["id"]
    main = accepted(api)["request"]["id"]
    clock.advance(5)
    assert api.request(nightly)["builds"][0]["state"] == "errored"
    assert api.request(main)["result"] == "rejected"


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        ({"result": "green"}, "result must be one of"),
        ({"start_after": 5, "finish_after": 1}, "must not come before"),
        ({"start_after": "soon"}, "start_after must be a number"),
        ({"intermediate": "passed"}, "intermediate must name a state"),
        ({"branch": ""}, "branch must be a non-empty name"),
        ({"when": 1}, "unknown keys"),
    ],
)
def test_bad_schedule_is_400(api: Api, body: dict[str, Any], complaint: str) -> None:
    response = api.admin("POST", "/_emulator/repos/octo%2Fapp/schedule", body)
    assert response.status_code == 400
    assert complaint in response.json()["error"]


def test_settings_deactivate_a_repository(api: Api) -> None:
    record = _ok(api.admin("POST", "/_emulator/repos/octo%2Fapp/settings", {"active": False}))
    assert record["active"] is False
    assert api.trigger().status_code == 406
    _ok(api.admin("POST", "/_emulator/repos/octo%2Fapp/settings", {"active": True}))
    assert api.trigger().status_code == 202


def test_requests_builds_and_calls(api: Api, clock: FakeClock) -> None:
    accepted(api)
    accepted(api, slug="octo/other", token="other-token-1", message="elsewhere")
    clock.advance(2)
    api.get("/user")

    requests_all = _ok(api.admin("GET", "/_emulator/requests"))["requests"]
    assert [r["message"] for r in requests_all] == [MARKER, "elsewhere"]
    mine = _ok(api.admin("GET", "/_emulator/requests?repo=octo/app"))["requests"]
    assert len(mine) == 1
    assert mine[0]["branch"] == "main"
    assert mine[0]["state"] == "finished"
    assert mine[0]["result"] == "approved"

    builds = _ok(api.admin("GET", "/_emulator/builds?repo=octo%2Fother"))["builds"]
    assert [(b["repository"], b["message"], b["state"]) for b in builds] == [
        ("octo/other", "elsewhere", "created")
    ]
    assert builds[0]["request_id"] == requests_all[1]["id"]

    calls = _ok(api.admin("GET", "/_emulator/calls"))["calls"]
    assert calls == {"POST /repo/{slug}/requests": 2, "GET /user": 1}

    unknown = api.admin("GET", "/_emulator/requests?repo=octo/nope")
    assert unknown.status_code == 404


def test_faults_over_http(api: Api, emulator: TravisEmulator) -> None:
    before = _ok(api.admin("GET", "/_emulator/faults"))
    assert before == {
        "seed": 7,
        "throttle_rate": 0.0,
        "error_rate": 0.0,
        "lost_rate": 0.0,
        "latency": 0.0,
        "outage": None,
        "retry_after": None,
        "errors_after_create": False,
    }
    after = _ok(
        api.admin(
            "POST",
            "/_emulator/faults",
            {"throttle_rate": 1.0, "retry_after": 12, "errors_after_create": True, "seed": 3},
        )
    )
    assert after["throttle_rate"] == 1.0
    assert after["seed"] == 3
    assert after["retry_after"] == 12
    assert emulator.errors_after_create is True
    throttled = api.get("/user")
    assert throttled.status_code == 429
    assert throttled.headers["Retry-After"] == "12"

    for bad, complaint in (
        ({"error_rate": 2}, "error_rate must be between 0 and 1"),
        ({"chaos": 1}, "unknown fault settings"),
        ({"retry_after": -1}, "retry_after must be >= 0"),
        ({"errors_after_create": "yes"}, "errors_after_create must be of type bool"),
    ):
        response = api.admin("POST", "/_emulator/faults", bad)
        assert response.status_code == 400
        assert complaint in response.json()["error"]
    assert _ok(api.admin("GET", "/_emulator/faults")) == after


def test_reset_forgets_everything(api: Api, emulator: TravisEmulator, clock: FakeClock) -> None:
    accepted(api)
    emulator.request_limit = 1
    _ok(api.admin("POST", "/_emulator/faults", {"error_rate": 0.5, "retry_after": 5}))
    assert _ok(api.admin("POST", "/_emulator/reset")) == {"ok": True}
    assert emulator.repositories() == []
    assert emulator.requests() == []
    assert emulator.call_counts() == {}
    assert emulator.faults.as_dict()["error_rate"] == 0.0
    assert emulator.retry_after is None
    # The old token is gone with its repository.
    assert api.trigger().status_code == 403
    emulator.add_repository(SLUG, token=WRITE)
    first = accepted(api)
    assert first["request"]["id"] == 200_001
    assert first["remaining_requests"] == 10
    assert first["repository"]["id"] == 1001


def test_unknown_admin_route_is_404(api: Api) -> None:
    response = api.admin("GET", "/_emulator/nothing")
    assert response.status_code == 404
    assert response.json() == {"error": "no admin endpoint GET /_emulator/nothing"}
    assert api.admin("POST", "/_emulator/repos/octo%2Fapp/paint", {}).status_code == 404
