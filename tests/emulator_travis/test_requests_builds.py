"""Triggering a build, watching the request become a build, and the build run its schedule."""

from __future__ import annotations

import pytest

from actions.travis.emulator import TravisEmulator
from engine.clock import FakeClock
from tests.emulator_travis.conftest import (
    MARKER,
    OTHER_SLUG,
    SLUG,
    Api,
    accepted,
    repo_path,
    run_to_build,
)


def test_trigger_is_accepted_pending_with_no_build(api: Api, emulator: TravisEmulator) -> None:
    response = api.trigger(branch="release", config={"script": "make"})
    assert response.status_code == 202
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    repo_id = emulator.requests()[0]["repository_id"]
    assert body["@type"] == "pending"
    assert body["resource_type"] == "request"
    assert body["remaining_requests"] == 10
    assert body["repository"] == {
        "@type": "repository",
        "@href": f"/repo/{repo_id}",
        "@representation": "minimal",
        "id": repo_id,
        "name": "app",
        "slug": SLUG,
    }
    request = body["request"]
    assert isinstance(request["id"], int)
    assert request["branch"] == "release"
    assert request["message"] == MARKER
    # queries/request.rb#schedule echoes the config as the JSON string it queues, and as the
    # one entry of `configs` (#request_configs).
    assert request["config"] == '{"script": "make"}'
    assert request["configs"] == [{"config": '{"script": "make"}', "mode": "deep_merge_append"}]
    assert "sha" not in request  # None values are dropped (#compact)
    assert request["merge_mode"] == "deep_merge_append"
    assert request["user"] == {"id": 1}
    assert request["repository"]["owner_name"] == "octo"
    assert request["repository"]["name"] == "app"
    # Travis reports the GitHub id here, not its own repository id.
    assert request["repository"]["id"] != repo_id

    found = api.request(request["id"])
    assert found["state"] == "pending"
    assert found["result"] is None
    assert found["builds"] == []
    assert found["commit"] is None
    assert found["event_type"] == "api"
    # Stored without branch, commit or message until processed (queries/request.rb
    # #create_request; models/request.rb#branch_name reads the commit's branch).
    assert found["branch_name"] is None
    assert found["message"] is None
    assert found["config"] == {} and found["raw_configs"] == []
    assert emulator.builds() == []


def test_branch_defaults_to_the_repositorys_default_branch(
    api: Api, emulator: TravisEmulator
) -> None:
    emulator.add_repository("octo/legacy", token="legacy-token", default_branch="master")
    body = accepted(api, slug="octo/legacy", token="legacy-token")
    assert body["request"]["branch"] == "master"


def test_the_build_appears_only_after_the_delay(
    api: Api, clock: FakeClock, emulator: TravisEmulator
) -> None:
    request_id = accepted(api)["request"]["id"]
    clock.advance(1.9)
    assert api.request(request_id)["builds"] == []
    clock.advance(0.1)
    request = api.request(request_id)
    assert request["state"] == "finished"
    assert request["result"] == "approved"
    assert request["message"] is None  # the override lives in commit.message only
    assert request["commit"]["message"] == MARKER
    assert len(request["builds"]) == 1
    build = request["builds"][0]
    assert build["@type"] == "build"
    assert build["state"] == "created"
    assert build["number"] == "1"
    assert emulator.builds()[0]["id"] == build["id"]


def test_build_delay_is_configurable_per_repository(
    api: Api, clock: FakeClock, emulator: TravisEmulator
) -> None:
    emulator.add_repository("octo/slow", token="slow-token", build_delay=30)
    request_id = accepted(api, slug="octo/slow", token="slow-token")["request"]["id"]
    clock.advance(29)
    assert api.request(request_id, slug="octo/slow", token="slow-token")["builds"] == []
    clock.advance(1)
    assert len(api.request(request_id, slug="octo/slow", token="slow-token")["builds"]) == 1


def test_build_runs_created_started_passed_on_the_default_schedule(
    api: Api, clock: FakeClock
) -> None:
    build_id = run_to_build(api, clock)["id"]
    created = api.build(build_id)
    assert created["state"] == "created"
    assert created["started_at"] is None
    clock.advance(1.0)
    started = api.build(build_id)
    assert started["state"] == "started"
    assert started["started_at"] is not None
    assert started["finished_at"] is None
    assert started["duration"] is None
    clock.advance(4.0)
    passed = api.build(build_id)
    assert passed["state"] == "passed"
    assert passed["duration"] == 4
    assert passed["finished_at"] is not None
    assert passed["started_at"] < passed["finished_at"]


@pytest.mark.parametrize("result", ["failed", "errored", "canceled"])
def test_repository_schedule_decides_the_result(
    api: Api, clock: FakeClock, emulator: TravisEmulator, result: str
) -> None:
    emulator.set_schedule(SLUG, start_after=10, finish_after=70, result=result)
    build_id = run_to_build(api, clock)["id"]
    clock.advance(9.9)
    assert api.build(build_id)["state"] == "created"
    clock.advance(0.1)
    assert api.build(build_id)["state"] == "started"
    clock.advance(59.9)
    assert api.build(build_id)["state"] == "started"
    clock.advance(0.1)
    finished = api.build(build_id)
    assert finished["state"] == result
    assert finished["duration"] == 60


def test_branch_schedule_beats_the_repository_schedule(
    api: Api, clock: FakeClock, emulator: TravisEmulator
) -> None:
    emulator.set_schedule(SLUG, result="failed", start_after=0, finish_after=1)
    emulator.set_schedule(SLUG, "hotfix", result="errored", start_after=0, finish_after=1)
    on_main = accepted(api)["request"]["id"]
    on_hotfix = accepted(api, branch="hotfix")["request"]["id"]
    clock.advance(3.0)
    assert api.request(on_main)["builds"][0]["state"] == "failed"
    assert api.request(on_hotfix)["builds"][0]["state"] == "errored"


def test_schedule_applies_to_requests_accepted_after_it(
    api: Api, clock: FakeClock, emulator: TravisEmulator
) -> None:
    before = accepted(api)["request"]["id"]
    emulator.set_schedule(SLUG, result="failed")
    after = accepted(api)["request"]["id"]
    clock.advance(10.0)
    assert api.request(before)["builds"][0]["state"] == "passed"
    assert api.request(after)["builds"][0]["state"] == "failed"


def test_unknown_intermediate_state_before_start(
    api: Api, clock: FakeClock, emulator: TravisEmulator
) -> None:
    emulator.set_schedule(SLUG, intermediate="queued", start_after=5, finish_after=6)
    build_id = run_to_build(api, clock)["id"]
    assert api.build(build_id)["state"] == "queued"
    clock.advance(5)
    assert api.build(build_id)["state"] == "started"
    clock.advance(1)
    assert api.build(build_id)["state"] == "passed"


def test_zero_delay_creates_the_build_before_anyone_looks(
    api: Api, emulator: TravisEmulator
) -> None:
    emulator.update_repository(SLUG, build_delay=0)
    request_id = accepted(api)["request"]["id"]
    assert len(api.request(request_id)["builds"]) == 1


def test_rejected_request_has_no_build_and_explains_with_include(
    api: Api, clock: FakeClock, emulator: TravisEmulator
) -> None:
    emulator.set_schedule(SLUG, "gh-pages", reject="Branch gh-pages not included per configuration")
    request_id = accepted(api, branch="gh-pages")["request"]["id"]
    assert api.request(request_id, params={"include": "request.messages"})["messages"] == []
    clock.advance(2.0)
    plain = api.request(request_id)
    assert plain["state"] == "finished"
    assert plain["result"] == "rejected"
    assert plain["builds"] == []
    assert "messages" not in plain
    detailed = api.request(request_id, params={"include": "request.messages"})
    assert [m["args"]["message"] for m in detailed["messages"]] == [
        "Branch gh-pages not included per configuration"
    ]
    assert detailed["messages"][0]["level"] == "error"
    assert emulator.builds() == []
    assert emulator.requests()[0]["result"] == "rejected"
    # Another branch is still accepted.
    other = accepted(api, branch="main")["request"]["id"]
    clock.advance(2.0)
    assert api.request(other)["result"] == "approved"


def test_numeric_repository_id_v3_prefix_and_provider_paths(
    api: Api, clock: FakeClock, emulator: TravisEmulator
) -> None:
    repo_id = accepted(api)["repository"]["id"]
    by_id = api.call("POST", f"/repo/{repo_id}/requests", body={"request": {"message": "by id"}})
    assert by_id.status_code == 202
    prefixed = api.call(
        "POST", f"/v3{repo_path()}/requests", body={"message": "prefixed"}, version=False
    )
    assert prefixed.status_code == 202, prefixed.text
    with_provider = api.get(f"/repo/github/{repo_id}/requests")
    assert with_provider.status_code == 200
    assert [r["message"] for r in emulator.requests()] == [MARKER, "by id", "prefixed"]


def test_unencoded_slug_matches_no_route(api: Api) -> None:
    response = api.call("POST", f"/repo/{SLUG}/requests", body={})
    assert response.status_code == 404
    assert response.json()["error_type"] == "not_found"


@pytest.mark.parametrize(
    ("request_body", "complaint"),
    [
        ({"request": {"merge_mode": "squash"}}, "merge_mode must be one of"),
        ({"request": {"branch": 7}}, "branch must be a string"),
        ({"request": {"branch": ""}}, "branch must not be empty"),
        ({"request": {"config": [1, 2]}}, "config must be an object"),
        ({"request": "main"}, "'request' must be an object"),
        ([1, 2], "must be a JSON object"),
    ],
)
def test_bad_request_body_is_400_wrong_params(
    api: Api, emulator: TravisEmulator, request_body: object, complaint: str
) -> None:
    response = api.call("POST", repo_path() + "/requests", body=request_body)
    assert response.status_code == 400
    body = response.json()
    assert body["@type"] == "error"
    assert body["error_type"] == "wrong_params"
    assert complaint in body["error_message"]
    assert emulator.requests() == []


def test_invalid_json_is_400(api: Api) -> None:
    response = api.session.post(
        api.base_url + repo_path() + "/requests",
        data=b"{not json",
        headers={"Travis-API-Version": "3", "Authorization": "token write-token-1"},
        timeout=10,
    )
    assert response.status_code == 400
    assert response.json()["error_type"] == "wrong_params"


def test_request_listing_is_newest_first_with_pagination_and_filters(
    api: Api, clock: FakeClock
) -> None:
    ids = [accepted(api, message=f"{MARKER} #{n}")["request"]["id"] for n in range(3)]
    clock.advance(2.0)
    newest = accepted(api, message="still pending", branch="dev")["request"]["id"]

    response = api.get(repo_path() + "/requests")
    assert response.status_code == 200
    listing = response.json()
    assert listing["@type"] == "requests"
    assert [r["id"] for r in listing["requests"]] == [newest, *reversed(ids)]
    assert listing["@pagination"]["count"] == 4
    assert listing["@pagination"]["limit"] == 25
    assert listing["@pagination"]["is_last"] is True
    # The marker is found where PROTOCOL B9 says to look: the commit message.
    finished = [r for r in listing["requests"] if r["state"] == "finished"]
    assert sorted(r["commit"]["message"] for r in finished) == [f"{MARKER} #{n}" for n in range(3)]

    page = api.get(repo_path() + "/requests", params={"limit": 2, "offset": 1}).json()
    assert [r["id"] for r in page["requests"]] == [ids[2], ids[1]]
    assert page["@pagination"]["is_first"] is False
    assert page["@pagination"]["next"]["offset"] == 3
    assert page["@pagination"]["prev"]["offset"] == 0

    pending = api.get(repo_path() + "/requests", params={"state": "pending"}).json()
    assert [r["id"] for r in pending["requests"]] == [newest]
    approved = api.get(repo_path() + "/requests", params={"result": "approved"}).json()
    assert len(approved["requests"]) == 3
    # ?branch= goes through branch_id (queries/requests.rb), which a pending API request
    # does not have yet: it shows up in its branch's list only once processed.
    on_dev = api.get(repo_path() + "/requests", params={"branch": "dev"}).json()
    assert on_dev["requests"] == []
    on_main = api.get(repo_path() + "/requests", params={"branch": "main"}).json()
    assert [r["id"] for r in on_main["requests"]] == list(reversed(ids))
    clock.advance(2.0)
    on_dev = api.get(repo_path() + "/requests", params={"branch": "dev"}).json()
    assert [r["id"] for r in on_dev["requests"]] == [newest]


def test_limit_is_capped_at_100_and_must_be_an_integer(api: Api) -> None:
    capped = api.get(repo_path() + "/requests", params={"limit": 500}).json()
    assert capped["@pagination"]["limit"] == 100
    bad = api.get(repo_path() + "/requests", params={"limit": "lots"})
    assert bad.status_code == 400
    assert bad.json()["error_message"] == "limit must be an integer"


def test_builds_listing_shows_marker_in_commit_message(
    api: Api, clock: FakeClock, emulator: TravisEmulator
) -> None:
    emulator.set_schedule(SLUG, "feature", start_after=0, finish_after=0, result="failed")
    first = accepted(api, message=f"{MARKER} first")["request"]["id"]
    accepted(api, message="something else", branch="feature")
    clock.advance(2.0)
    third = accepted(api, message=f"{MARKER} third")["request"]["id"]
    clock.advance(2.0)
    accepted(api, message="no build yet")

    listing = api.get(
        repo_path() + "/builds",
        params={"build.event_type": "api", "branch.name": "main", "limit": 100},
    ).json()
    assert listing["@type"] == "builds"
    builds = listing["builds"]
    assert [b["number"] for b in builds] == ["3", "1"]
    # :standard has no request; include=build.request adds it (renderer/build.rb).
    assert all("request" not in b for b in builds)
    included = api.get(repo_path() + "/builds", params={
        "branch.name": "main", "include": "build.request"}).json()["builds"]
    assert [b["request"]["id"] for b in included] == [third, first]
    assert [b["commit"]["message"] for b in builds] == [f"{MARKER} third", f"{MARKER} first"]
    for build in builds:
        assert build["branch"]["name"] == "main"
        assert build["created_by"]["login"] == "travis-user-1"
        assert build["event_type"] == "api"
        assert build["repository"]["slug"] == SLUG
        assert build["jobs"][0]["@type"] == "job"

    failed = api.get(repo_path() + "/builds", params={"build.state": "failed"}).json()
    assert [b["branch"]["name"] for b in failed["builds"]] == ["feature"]
    push = api.get(repo_path() + "/builds", params={"build.event_type": "push"}).json()
    assert push["builds"] == []
    oldest_first = api.get(repo_path() + "/builds", params={"sort_by": "number"}).json()
    assert [b["number"] for b in oldest_first["builds"]] == ["1", "2", "3"]
    first_page = api.get(repo_path() + "/builds", params={"limit": 1}).json()
    assert [b["number"] for b in first_page["builds"]] == ["3"]
    assert first_page["@pagination"]["count"] == 3


def test_previous_state_is_the_branchs_last_build_state(
    api: Api, clock: FakeClock, emulator: TravisEmulator
) -> None:
    emulator.set_schedule(SLUG, start_after=0, finish_after=1, result="failed")
    first = run_to_build(api, clock)
    clock.advance(5)
    second = run_to_build(api, clock)
    assert first["previous_state"] is None
    assert second["previous_state"] == "failed"


def test_repositories_do_not_share_build_numbers_or_visibility(api: Api, clock: FakeClock) -> None:
    run_to_build(api, clock)
    other = accepted(api, slug=OTHER_SLUG, token="other-token-1")["request"]["id"]
    clock.advance(2.0)
    other_build = api.request(other, slug=OTHER_SLUG, token="other-token-1")["builds"][0]
    assert other_build["number"] == "1"
    # The default token belongs to octo/app only.
    assert api.get(f"/build/{other_build['id']}").status_code == 404


def test_repository_and_user_endpoints(api: Api, emulator: TravisEmulator) -> None:
    repo = api.get(repo_path()).json()
    assert repo["@type"] == "repository"
    assert repo["slug"] == SLUG
    assert repo["active"] is True
    assert repo["default_branch"]["name"] == "main"
    user = api.get("/user").json()
    assert user == {
        "@type": "user",
        "@href": "/user/1",
        "@representation": "standard",
        "id": 1,
        "login": "travis-user-1",
    }


def test_request_of_another_repository_is_not_found(api: Api, clock: FakeClock) -> None:
    other = accepted(api, slug=OTHER_SLUG, token="other-token-1")["request"]["id"]
    response = api.get(f"{repo_path()}/request/{other}")
    assert response.status_code == 404
    assert response.json()["resource_type"] == "request"
