"""POST .../dispatches: GitHub's answers, and the run each accepted dispatch creates."""

from __future__ import annotations

from typing import Any

import pytest

from actions.github.emulator import GitHubEmulator
from engine.clock import FakeClock
from tests.emulator_github.conftest import (
    OTHER,
    OTHER_REPO,
    PUBLIC_REPO,
    READ_ONLY,
    REPO,
    WRITE,
    Api,
    body,
    github_error,
)

DOCS = "https://docs.github.com/rest/actions/workflows#create-a-workflow-dispatch-event"
INPUTS = {"revision": "4f2c8d0", "marker": "cpworker:exec-1"}


def test_a_dispatch_answers_204_and_its_run_is_listed_only_after_the_delay(
        api: Api, clock: FakeClock, emulator: GitHubEmulator) -> None:
    response = api.dispatch(inputs=INPUTS)
    assert response.status_code == 204 and response.content == b""
    assert body(api.runs(), 200) == {"total_count": 0, "workflow_runs": []}
    # The dispatch took effect: the admin view has the run, not listed yet.
    [pending] = emulator.runs(REPO)
    assert pending["listed"] is False and pending["inputs"]["revision"] == "4f2c8d0"
    assert api.run(pending["id"]).status_code == 404
    clock.advance(2.9)
    assert body(api.runs(), 200)["total_count"] == 0
    clock.advance(0.1)
    [run] = body(api.runs(), 200)["workflow_runs"]
    assert run["id"] == pending["id"] and run["status"] == "queued"
    assert run["event"] == "workflow_dispatch" and run["conclusion"] is None


def test_return_run_details_answers_200_with_the_run(api: Api, server: Any) -> None:
    response = api.dispatch(inputs=INPUTS, details=True)
    answer = body(response, 200)
    run_id = answer["workflow_run_id"]
    assert answer == {
        "workflow_run_id": run_id,
        "run_url": f"{server.url}/repos/{REPO}/actions/runs/{run_id}",
        "html_url": f"https://github.com/{REPO}/actions/runs/{run_id}"}
    # The id came back, so the run exists: readable at once by its run_url.
    assert body(api.session.get(answer["run_url"], headers={
        "Authorization": f"Bearer {WRITE}"}, timeout=10), 200)["id"] == run_id


def test_return_run_details_can_wait_for_the_run_delay_too(
        api: Api, clock: FakeClock, emulator: GitHubEmulator) -> None:
    emulator.configure(details_visible_at_once=False)
    run_id = body(api.dispatch(inputs=INPUTS, details=True), 200)["workflow_run_id"]
    assert api.run(run_id).status_code == 404
    clock.advance(3.0)
    assert body(api.run(run_id), 200)["id"] == run_id


@pytest.mark.parametrize("status", [400, 422])
def test_ghes_mode_refuses_return_run_details_and_creates_nothing(
        api: Api, emulator: GitHubEmulator, status: int) -> None:
    emulator.configure(return_run_details_supported=False, ghes_refusal_status=status)
    github_error(api.dispatch(inputs=INPUTS, details=True), status,
                 'Invalid request.\n\n"return_run_details" is not a permitted key.', DOCS)
    assert emulator.runs() == []
    assert api.dispatch(inputs=INPUTS).status_code == 204  # the fallback works


def test_github_com_refuses_other_unknown_keys_with_422(api: Api) -> None:
    github_error(api.dispatch(inputs=INPUTS, colour="red", size="xl"), 422,
                 'Invalid request.\n\n"colour", "size" are not permitted keys.', DOCS)


def test_the_run_resource(api: Api, clock: FakeClock, emulator: GitHubEmulator,
                          server: Any) -> None:
    head = emulator.head(REPO, "main")
    run_id = body(api.dispatch(inputs=INPUTS, details=True), 200)["workflow_run_id"]
    run = body(api.run(run_id), 200)
    login = run["actor"]["login"]
    assert run["display_title"] == f"Deploy 4f2c8d0 [cpworker:exec-1] by {login}"
    assert run["name"] == "Deploy" and run["run_number"] == 1 and run["run_attempt"] == 1
    assert run["head_branch"] == "main" and run["head_sha"] == head
    assert run["path"] == ".github/workflows/deploy.yml@refs/heads/main"
    assert run["url"] == f"{server.url}/repos/{REPO}/actions/runs/{run_id}"
    assert run["html_url"] == f"https://github.com/{REPO}/actions/runs/{run_id}"
    assert run["created_at"] == run["updated_at"] == run["run_started_at"] == "2027-01-15T08:00:00Z"
    assert run["repository"]["full_name"] == REPO
    assert "inputs" not in run and "4f2c8d0" not in str(
        {k: v for k, v in run.items() if k != "display_title"})


def test_the_head_sha_is_the_branch_head_at_dispatch_time(
        api: Api, clock: FakeClock, emulator: GitHubEmulator) -> None:
    first = body(api.dispatch(inputs=INPUTS, details=True), 200)["workflow_run_id"]
    moved = emulator.push(REPO, "main", "a" * 40)
    second = body(api.dispatch(inputs=INPUTS, details=True), 200)["workflow_run_id"]
    assert body(api.run(first), 200)["head_sha"] != moved
    assert body(api.run(second), 200)["head_sha"] == moved


def test_refs_branches_and_tags(api: Api, emulator: GitHubEmulator) -> None:
    emulator.push(REPO, "release", "b" * 40)
    emulator.tag(REPO, "v1.2.0", "c" * 40)
    for ref, branch, sha in (("release", "release", "b" * 40),
                             ("refs/heads/release", "release", "b" * 40),
                             ("v1.2.0", "v1.2.0", "c" * 40),
                             ("refs/tags/v1.2.0", "v1.2.0", "c" * 40)):
        run = body(api.run(body(api.dispatch(ref=ref, inputs=INPUTS, details=True), 200)
                           ["workflow_run_id"]), 200)
        assert (run["head_branch"], run["head_sha"]) == (branch, sha), ref
    # A commit is not a ref (PROTOCOL D): GitHub answers "No ref found for".
    github_error(api.dispatch(ref="b" * 40, inputs=INPUTS), 422, f"No ref found for: {'b' * 40}",
                 DOCS)


def test_display_title_without_run_name_is_the_workflow_name(api: Api) -> None:
    run_id = body(api.dispatch(workflow="plain.yml", details=True), 200)["workflow_run_id"]
    assert body(api.run(run_id), 200)["display_title"] == "Plain"


def test_defaults_fill_the_inputs_and_the_run_name_sees_them(
        api: Api, emulator: GitHubEmulator) -> None:
    emulator.add_workflow(REPO, "env.yml", run_name="to ${{ inputs.environment }} "
                          "from ${{ github.ref_name }}",
                          inputs={"environment": {"default": "staging"}})
    run_id = body(api.dispatch(workflow="env.yml", details=True), 200)["workflow_run_id"]
    assert body(api.run(run_id), 200)["display_title"] == "to staging from main"
    assert emulator.runs()[-1]["inputs"] == {"environment": "staging"}


def test_a_whitespace_run_name_falls_back_to_the_workflow_name(
        api: Api, emulator: GitHubEmulator) -> None:
    emulator.add_workflow(REPO, "blank.yml", name="Blank", run_name="${{ inputs.note }}",
                          inputs=["note"])
    run_id = body(api.dispatch(workflow="blank.yml", details=True), 200)["workflow_run_id"]
    assert body(api.run(run_id), 200)["display_title"] == "Blank"


def test_the_workflow_may_be_named_by_its_numeric_id(api: Api, emulator: GitHubEmulator) -> None:
    [repo] = [r for r in emulator.repositories() if r["full_name"] == REPO]
    workflow_id = next(w["id"] for w in repo["workflows"] if w["file"] == "plain.yml")
    assert api.dispatch(workflow=str(workflow_id)).status_code == 204
    assert emulator.runs()[0]["workflow"] == "plain.yml"


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"inputs": {**INPUTS, "extra": "x", "more": "y"}},
     'Unexpected inputs provided: ["extra", "more"]'),
    ({"inputs": {"marker": "m"}}, "Required input 'revision' not provided"),
    ({"inputs": {**INPUTS, "marker": True}},
     "Invalid request.\n\nFor 'properties/marker', true is not a string."),
    ({"inputs": ["revision"]},
     "Invalid request.\n\nFor 'properties/inputs', [\"revision\"] is not an object."),
    ({"ref": "nope", "inputs": INPUTS}, "No ref found for: nope"),
    ({"workflow": "push-only.yml"}, "Workflow does not have 'workflow_dispatch' trigger"),
    ({"inputs": INPUTS, "details": "yes"},
     "Invalid request.\n\nFor 'properties/return_run_details', \"yes\" is not a boolean."),
])
def test_422_refusals_create_nothing(api: Api, emulator: GitHubEmulator,
                                     kwargs: dict[str, Any], message: str) -> None:
    details = kwargs.pop("details", None)
    response = api.dispatch(**kwargs) if details is None else api.call(
        "POST", f"/repos/{REPO}/actions/workflows/deploy.yml/dispatches",
        body={"ref": "main", "inputs": kwargs["inputs"], "return_run_details": details})
    github_error(response, 422, message, DOCS)
    assert emulator.runs() == [] and emulator.dispatches()[REPO] == 0


def test_a_missing_ref_and_a_body_that_is_not_json(api: Api) -> None:
    path = f"/repos/{REPO}/actions/workflows/deploy.yml/dispatches"
    github_error(api.call("POST", path, body={"inputs": INPUTS}), 422,
                 "Invalid request.\n\n\"ref\" wasn't supplied.", DOCS)
    github_error(api.call("POST", path, data=b"ref=main"), 400, "Problems parsing JSON", DOCS)


def test_the_input_limits(api: Api, emulator: GitHubEmulator) -> None:
    emulator.add_workflow(REPO, "wide.yml", inputs=[f"i{n}" for n in range(26)])
    github_error(api.dispatch(workflow="wide.yml"), 422,
                 "Invalid Argument - failed to parse workflow: you may only define up to 25 "
                 "`inputs` for a `workflow_dispatch` event", DOCS)
    emulator.configure(max_inputs=30)
    assert api.dispatch(workflow="wide.yml", inputs={f"i{n}": "x" for n in range(26)}
                        ).status_code == 204
    emulator.configure(max_inputs=10)  # the limit before December 2025
    response = api.dispatch(workflow="wide.yml", inputs={f"i{n}": "x" for n in range(11)})
    assert response.status_code == 422 and "at most 10" in response.json()["message"]


def test_who_may_dispatch(api: Api, emulator: GitHubEmulator) -> None:
    # A token that cannot see a private repository: 404, exactly as for one that does not exist.
    github_error(api.dispatch(OTHER_REPO, token=WRITE, inputs=INPUTS), 404, "Not Found", DOCS)
    github_error(api.dispatch("octo/nowhere", inputs=INPUTS), 404, "Not Found", DOCS)
    github_error(api.dispatch(workflow="missing.yml", inputs=INPUTS), 404, "Not Found", DOCS)
    github_error(api.dispatch(token=None, inputs=INPUTS), 404, "Not Found", DOCS)
    # A token GitHub does not know, in either header form: 401 Bad credentials.
    github_error(api.dispatch(token="ghp_revoked", inputs=INPUTS), 401, "Bad credentials")
    github_error(api.call("POST", f"/repos/{REPO}/actions/workflows/deploy.yml/dispatches",
                          token="ghp_revoked", scheme="token", body={"ref": "main"}),
                 401, "Bad credentials")
    # Seeing is not writing.
    github_error(api.dispatch(token=READ_ONLY, inputs=INPUTS), 403,
                 "Resource not accessible by personal access token", DOCS)
    github_error(api.dispatch(PUBLIC_REPO, "plain.yml", token=None), 401,
                 "Requires authentication", DOCS)
    github_error(api.dispatch(PUBLIC_REPO, "plain.yml", token=WRITE), 403,
                 "Resource not accessible by personal access token", DOCS)
    assert emulator.runs() == []
    # The `token` scheme works as well as Bearer.
    assert api.call("POST", f"/repos/{PUBLIC_REPO}/actions/workflows/plain.yml/dispatches",
                    token=OTHER, scheme="token", body={"ref": "main"}).status_code == 204


def test_a_lost_answer_after_the_dispatch_took_effect(api: Api, emulator: GitHubEmulator,
                                                      clock: FakeClock) -> None:
    import requests

    emulator.faults.configure(lost_rate=1.0)
    with pytest.raises(requests.ConnectionError):
        api.dispatch(inputs=INPUTS)
    emulator.faults.configure(lost_rate=0.0)
    assert emulator.dispatches()[REPO] == 1
    [run] = emulator.runs(REPO)
    assert run["inputs"]["marker"] == "cpworker:exec-1" and run["listed"] is False
    clock.advance(3.0)
    [listed] = body(api.runs(), 200)["workflow_runs"]
    assert "[cpworker:exec-1]" in listed["display_title"]
    assert emulator.faults.counts()["lost"] == 1
