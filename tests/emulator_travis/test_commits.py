"""Which commit a request builds, and what a request shows of itself before and after processing.

travis-api stores an API request with no branch, commit or message and forwards sha and message
to its gatekeeper (queries/request.rb); the emulator's gatekeeper builds the sha sent, or the
branch's head when it processes the request.
"""

from __future__ import annotations

import pytest

from actions.travis.emulator import TravisEmulator
from engine.clock import FakeClock
from tests.emulator_travis.conftest import MARKER, SLUG, Api, accepted, repo_path

SHA_A = "a" * 40
SHA_B = "b" * 40


def test_a_request_with_a_sha_builds_that_commit_and_says_so_everywhere(
    api: Api, clock: FakeClock, emulator: TravisEmulator
) -> None:
    emulator.push(SLUG, "main", sha=SHA_A, message="the release candidate")
    emulator.push(SLUG, "main", sha=SHA_B)  # the branch moved on
    body = accepted(api, sha=SHA_A)
    assert body["request"]["sha"] == SHA_A
    request_id = body["request"]["id"]
    clock.advance(2.0)
    request = api.request(request_id)
    assert request["commit"]["sha"] == SHA_A
    assert request["commit"]["message"] == MARKER  # the message sent overrides the commit's
    assert request["commit"]["ref"] is None
    assert request["branch_name"] == "main"
    build = api.build(request["builds"][0]["id"])
    assert build["commit"]["sha"] == SHA_A
    (recorded,) = emulator.requests()
    assert (recorded["sha"], recorded["commit_sha"]) == (SHA_A, SHA_A)
    assert emulator.builds()[0]["sha"] == SHA_A


def test_an_abbreviated_sha_is_resolved_to_the_commit_it_names(
    api: Api, clock: FakeClock, emulator: TravisEmulator
) -> None:
    emulator.push(SLUG, "main", sha=SHA_A)
    request_id = accepted(api, sha=SHA_A[:7], message=None)["request"]["id"]
    clock.advance(2.0)
    commit = api.request(request_id)["commit"]
    assert commit["sha"] == SHA_A
    assert commit["message"] == f"Commit {SHA_A[:7]} on main"  # no message sent: the commit's


def test_without_a_sha_the_branch_head_at_processing_time_is_built(
    api: Api, clock: FakeClock, emulator: TravisEmulator
) -> None:
    """The request carries only the branch: a push between the POST and the processing wins."""
    emulator.push(SLUG, "main", sha=SHA_A)
    request_id = accepted(api)["request"]["id"]
    emulator.push(SLUG, "main", sha=SHA_B)
    clock.advance(2.0)
    assert api.request(request_id)["commit"]["sha"] == SHA_B
    assert emulator.head(SLUG, "main") == SHA_B


def test_a_branch_nobody_pushed_to_has_a_stable_made_up_head(
    api: Api, clock: FakeClock, emulator: TravisEmulator
) -> None:
    first = accepted(api, branch="dev")["request"]["id"]
    second = accepted(api, branch="dev")["request"]["id"]
    clock.advance(2.0)
    shas = {api.request(r)["commit"]["sha"] for r in (first, second)}
    assert shas == {emulator.head(SLUG, "dev")}
    assert len(emulator.head(SLUG, "dev")) == 40


def test_an_unknown_sha_is_built_as_given_by_default(
    api: Api, clock: FakeClock, emulator: TravisEmulator
) -> None:
    request_id = accepted(api, sha="c" * 40)["request"]["id"]
    clock.advance(2.0)
    request = api.request(request_id)
    assert request["result"] == "approved"
    assert request["commit"]["sha"] == "c" * 40


def test_a_repository_that_rejects_unknown_shas_processes_the_request_as_rejected(
    api: Api, clock: FakeClock, emulator: TravisEmulator
) -> None:
    emulator.update_repository(SLUG, unknown_sha="reject")
    emulator.push(SLUG, "main", sha=SHA_A)
    body = accepted(api, sha="c" * 40)  # accepted: travis-api checks nothing of the sha
    known = accepted(api, sha=SHA_A)["request"]["id"]
    clock.advance(2.0)
    request = api.request(body["request"]["id"], params={"include": "request.messages"})
    assert (request["state"], request["result"]) == ("finished", "rejected")
    assert request["builds"] == [] and request["commit"] is None
    assert request["branch_name"] is None
    reason = f"Could not find commit {'c' * 40} in {SLUG}."
    assert request["messages"][0]["args"]["message"] == reason
    assert request["message"] == reason  # the "status" default shows Travis's own words
    assert api.request(known)["result"] == "approved"
    assert len(emulator.builds()) == 1


def test_a_repository_whose_unknown_shas_error_makes_a_build_that_errors(
    api: Api, clock: FakeClock, emulator: TravisEmulator
) -> None:
    emulator.update_repository(SLUG, unknown_sha="errored")
    request_id = accepted(api, sha="c" * 40)["request"]["id"]
    clock.advance(2.0)
    build_id = api.request(request_id)["builds"][0]["id"]
    clock.advance(2.0)
    build = api.build(build_id)
    assert build["state"] == "errored"
    assert build["commit"]["sha"] == "c" * 40


@pytest.mark.parametrize("setting, approved, rejected", [
    ("status", None, "Branch main not included per configuration."),
    ("sent", MARKER, MARKER),
    ("none", None, None),
])
def test_what_a_processed_request_shows_as_its_message_is_a_setting(
    api: Api, clock: FakeClock, emulator: TravisEmulator,
    setting: str, approved: str | None, rejected: str | None,
) -> None:
    emulator.configure(processed_message=setting)
    good = accepted(api)["request"]["id"]
    assert api.request(good)["message"] is None  # pending: null whatever the setting
    clock.advance(2.0)
    emulator.set_schedule(SLUG, reject="Branch main not included per configuration.")
    bad = accepted(api)["request"]["id"]
    assert api.request(bad)["message"] is None
    clock.advance(2.0)
    assert api.request(good)["message"] == approved
    assert api.request(bad)["message"] == rejected
    assert api.request(bad)["commit"]["message"] == MARKER


def test_a_processed_request_reads_its_config_back_as_an_object(
    api: Api, clock: FakeClock
) -> None:
    request_id = accepted(api, config={"script": "make", ".result": "configured"})["request"]["id"]
    clock.advance(2.0)
    request = api.request(request_id)
    assert request["config"] == {"language": "shell", "os": "linux", "script": "make"}
    assert [c["source"] for c in request["raw_configs"]] == [
        "api", f"{SLUG}:.travis.yml@{request['commit']['sha'][:16]}"]


def test_requests_can_be_listed_from_and_to_a_time(
    api: Api, clock: FakeClock
) -> None:
    first = accepted(api)["request"]["id"]
    clock.advance(60.0)
    second = accepted(api)["request"]["id"]
    created = api.request(second)["created_at"]
    listed = api.get(repo_path() + "/requests", params={"from": created}).json()
    assert [r["id"] for r in listed["requests"]] == [second]
    older = api.get(repo_path() + "/requests", params={"to": api.request(first)["created_at"]})
    assert [r["id"] for r in older.json()["requests"]] == [first]
    bad = api.get(repo_path() + "/requests", params={"from": "yesterday"})
    assert bad.status_code == 400 and bad.json()["error_type"] == "wrong_params"


def test_push_and_settings_over_http(api: Api, clock: FakeClock, emulator: TravisEmulator) -> None:
    slug = repo_path().split("/")[-1]
    pushed = api.admin("POST", f"/_emulator/repos/{slug}/push",
                       {"branch": "main", "sha": SHA_A.upper(), "message": "hi"})
    assert pushed.json() == {"ok": True, "slug": SLUG, "sha": SHA_A}
    made_up = api.admin("POST", f"/_emulator/repos/{slug}/push", {"branch": "main"}).json()
    assert len(made_up["sha"]) == 40 and emulator.head(SLUG, "main") == made_up["sha"]
    bad = api.admin("POST", f"/_emulator/repos/{slug}/push", {"branch": "main", "sha": "xyz"})
    assert bad.status_code == 400 and "40 hex digits" in bad.json()["error"]
    settings = api.admin("POST", f"/_emulator/repos/{slug}/settings", {"unknown_sha": "reject"})
    assert settings.json()["unknown_sha"] == "reject"
    assert settings.json()["heads"] == {"main": made_up["sha"]}
    wrong = api.admin("POST", f"/_emulator/repos/{slug}/settings", {"unknown_sha": "maybe"})
    assert wrong.status_code == 400
    behaviour = api.admin("POST", "/_emulator/behaviour",
                          {"processed_message": "sent", "cancel_delay": 3, "ban_time": 60})
    assert behaviour.status_code == 200, behaviour.text
    assert behaviour.json()["processed_message"] == "sent"
    assert (emulator.cancel_delay, emulator.attack.ban_time) == (3.0, 60.0)
    refused = api.admin("POST", "/_emulator/behaviour", {"processed_message": "maybe"})
    assert refused.status_code == 400 and emulator.processed_message == "sent"
    emulator.reset()
    assert emulator.behaviour()["processed_message"] == "status"
