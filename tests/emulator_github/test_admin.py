"""The admin interface under /_emulator/ and its Python twin: set the stage, see what a client
did (the inputs of each run included), reset."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from actions.github.emulator import GitHubEmulator
from engine.clock import FakeClock, SystemClock
from engine.devtools.testing import SharedServer
from tests.emulator_github.conftest import REPO, WRITE, Api, body


def test_health(api: Api) -> None:
    assert body(api.admin("GET", "/health"), 200) == {"ok": True, "service": "github"}


def test_set_up_a_repository_over_http_and_use_it(api: Api, emulator: GitHubEmulator,
                                                  clock: FakeClock) -> None:
    record = body(api.admin("POST", "/repos", {
        "repository": "acme/site", "token": "ghp_acme", "read_only_tokens": ["ghp_acme_ro"],
        "default_branch": "trunk", "workflows": {"ship.yml": {
            "name": "Ship", "run_name": "Ship ${{ inputs.rev }}", "inputs": ["rev"]}}}), 201)
    assert record["full_name"] == "acme/site" and record["private"] is True
    assert list(record["branches"]) == ["trunk"] and record["workflows"][0]["file"] == "ship.yml"
    assert "ghp_acme" not in str(record) and len(record["tokens"]) == 2
    sha = body(api.admin("POST", "/repos/acme/site/push", {"branch": "trunk", "sha": "d" * 40}),
               200)["sha"]
    body(api.admin("POST", "/repos/acme/site/schedule",
                   {"workflow": "ship.yml", "start_after": 0, "finish_after": 2,
                    "conclusion": "failure"}), 200)
    body(api.admin("POST", "/repos/acme/site/workflows", {"file": "other.yml"}), 201)
    body(api.admin("POST", "/repos/acme/site/tokens", {"token": "ghp_extra"}), 200)
    body(api.admin("POST", "/repos/acme/site/tags", {"tag": "v1"}), 200)
    assert api.dispatch("acme/site", "ship.yml", ref="trunk", inputs={"rev": "abc"},
                        token="ghp_extra").status_code == 204
    assert body(api.admin("POST", "/clock/advance", {"seconds": 5}), 200)["now"] == clock.now()
    [run] = body(api.admin("GET", "/runs?repo=acme/site"), 200)["runs"]
    assert run["inputs"] == {"rev": "abc"} and run["head_sha"] == sha
    assert (run["status"], run["conclusion"], run["listed"]) == ("completed", "failure", True)
    assert body(api.admin("GET", "/dispatches"), 200)["dispatches"] == {
        REPO: 0, "octo/other": 0, "octo/public": 0, "acme/site": 1}
    calls = body(api.admin("GET", "/calls"), 200)
    assert calls["calls"] == {
        "POST /repos/{owner}/{repo}/actions/workflows/{workflow_id}/dispatches": 1}
    usage = body(api.admin("GET", "/rate-limits"), 200)["rate_limits"]
    assert usage[0]["used"] == 1 and "ghp_extra" not in str(usage)


@pytest.mark.parametrize(("path", "payload", "status", "complaint"), [
    ("/repos", {"repository": "no-slash"}, 400, "owner/name"),
    ("/repos", {"repository": REPO}, 400, "already exists"),
    ("/repos", {"repository": "a/b", "colour": "red"}, 400, "unknown keys ['colour']"),
    ("/repos", {"repository": "a/b", "token": "has space"}, 400, "without whitespace"),
    ("/repos", {"repository": "a/b", "workflows": {"x.txt": {}}}, 400, "deploy.yml"),
    ("/repos", {"repository": "a/b", "workflows": {"x.yml": {
        "run_name": "${{ secrets.TOKEN }}"}}}, 400, "evaluates"),
    ("/repos", {"repository": "a/b", "workflows": {"x.yml": {
        "run_name": "${{ inputs.nope }}"}}}, 400, "does not declare"),
    ("/repos/octo/nowhere/push", {"branch": "main"}, 404, "no repository"),
    ("/repos/octo/app/schedule", {"conclusion": "great"}, 400, "conclusion must be"),
    ("/repos/octo/app/schedule", {"workflow": "nope.yml"}, 404, "no workflow"),
    ("/repos/octo/app/push", {"branch": "main", "sha": "xyz"}, 400, "40 hex"),
    ("/behaviour", {"run_delay": -1}, 400, "run_delay"),
    ("/behaviour", {"primary_status": 500}, 400, "403 or 429"),
    ("/behaviour", {"nope": 1}, 400, "unknown settings"),
    ("/faults", {"error_status": 503}, 400, "500 or 502"),
    ("/runs/12345", {"ignore_cancel": True}, 404, "no run"),
    ("/nowhere", {}, 404, "no admin endpoint"),
])
def test_bad_admin_input(api: Api, emulator: GitHubEmulator, path: str,
                         payload: dict[str, Any], status: int, complaint: str) -> None:
    before = emulator.behaviour(), [r["full_name"] for r in emulator.repositories()]
    response = api.admin("POST", path, payload)
    assert response.status_code == status, response.text
    assert complaint in response.json()["error"]
    assert (emulator.behaviour(), [r["full_name"] for r in emulator.repositories()]) == before


def test_behaviour_over_http(api: Api) -> None:
    changed = body(api.admin("POST", "/behaviour", {
        "run_delay": 0.5, "return_run_details_supported": False, "rate_limit": 100,
        "secondary_retry_after": None}), 200)
    assert changed["run_delay"] == 0.5 and changed["return_run_details_supported"] is False
    assert changed["rate_limit"] == 100 and changed["secondary_retry_after"] is None
    assert body(api.admin("GET", "/behaviour"), 200) == changed


def test_no_token_in_any_admin_view(api: Api, emulator: GitHubEmulator) -> None:
    api.dispatch(inputs={"revision": "r"})
    for path in ("/repos", "/runs", "/dispatches", "/calls", "/rate-limits", "/behaviour",
                 "/faults"):
        assert WRITE not in api.admin("GET", path).text, path


def test_reset_forgets_everything(api: Api, emulator: GitHubEmulator) -> None:
    api.dispatch(inputs={"revision": "r"})
    emulator.configure(run_delay=9.0)
    emulator.faults.configure(error_rate=0.5)
    assert body(api.admin("POST", "/reset"), 200) == {"ok": True}
    assert emulator.repositories() == [] and emulator.runs() == []
    assert emulator.call_counts() == {} and emulator.rate_limits() == []
    assert emulator.behaviour()["run_delay"] == 3.0
    assert emulator.faults.as_dict()["error_rate"] == 0.0
    assert api.runs().status_code == 401  # the token is forgotten too


def test_the_clock_cannot_be_advanced_on_a_real_clock(shared_server: SharedServer) -> None:
    server = shared_server.plug(GitHubEmulator(clock=SystemClock()))
    try:
        response = requests.post(f"{server.url}/_emulator/clock/advance", json={"seconds": 1},
                                 timeout=10)
    finally:
        shared_server.unplug()
    assert response.status_code == 409 and "real clock" in response.json()["error"]


def test_run_ids_depend_on_the_seed(clock: FakeClock, shared_server: SharedServer) -> None:
    def first_id(seed: int) -> int:
        github = GitHubEmulator(clock=clock, seed=seed, run_delay=0)
        github.add_repository("a/b", token="t", workflows={"w.yml": {}})
        server = shared_server.plug(github)
        try:
            answer = requests.post(f"{server.url}/repos/a/b/actions/workflows/w.yml/dispatches",
                                   json={"ref": "main", "return_run_details": True},
                                   headers={"Authorization": "Bearer t"}, timeout=10)
        finally:
            shared_server.unplug()
        run_id: int = answer.json()["workflow_run_id"]
        return run_id

    assert first_id(1) == first_id(1) != first_id(2)
