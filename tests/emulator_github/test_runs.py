"""Workflow runs: their status on the clock, GET by id, and the list with filters and Link
pagination."""

from __future__ import annotations

import re
from typing import Any

import pytest

from actions.github.emulator import GitHubEmulator
from engine.clock import FakeClock
from tests.emulator_github.conftest import OTHER, OTHER_REPO, REPO, Api, body, github_error

INPUTS = {"revision": "4f2c8d0"}
RUN_DOCS = "https://docs.github.com/rest/actions/workflow-runs#get-a-workflow-run"


def _dispatch(api: Api, **kwargs: Any) -> int:
    kwargs.setdefault("inputs", INPUTS)
    run_id: int = body(api.dispatch(details=True, **kwargs), 200)["workflow_run_id"]
    return run_id


def test_a_run_goes_queued_in_progress_completed_on_the_clock(
        api: Api, clock: FakeClock, emulator: GitHubEmulator) -> None:
    emulator.set_schedule(REPO, start_after=10, finish_after=40, conclusion="failure")
    run_id = _dispatch(api)
    seen = []
    for step in (0, 9.9, 0.1, 29.9, 0.1):
        clock.advance(step)
        run = body(api.run(run_id), 200)
        seen.append((run["status"], run["conclusion"], run["updated_at"]))
    assert seen == [
        ("queued", None, "2027-01-15T08:00:00Z"),
        ("queued", None, "2027-01-15T08:00:00Z"),
        ("in_progress", None, "2027-01-15T08:00:10Z"),
        ("in_progress", None, "2027-01-15T08:00:10Z"),
        ("completed", "failure", "2027-01-15T08:00:40Z"),
    ]


def test_a_workflow_schedule_beats_the_repository_schedule(
        api: Api, clock: FakeClock, emulator: GitHubEmulator) -> None:
    emulator.set_schedule(REPO, start_after=0, finish_after=1, conclusion="success")
    emulator.set_schedule(REPO, "plain.yml", start_after=0, finish_after=1,
                          conclusion="timed_out")
    deploy, plain = _dispatch(api), _dispatch(api, workflow="plain.yml", inputs=None)
    clock.advance(1)
    assert body(api.run(deploy), 200)["conclusion"] == "success"
    assert body(api.run(plain), 200)["conclusion"] == "timed_out"


def test_get_run_is_404_for_unknown_runs_and_other_repositories(
        api: Api, emulator: GitHubEmulator) -> None:
    run_id = _dispatch(api)
    github_error(api.run(run_id + 999), 404, "Not Found", RUN_DOCS)
    github_error(api.run(run_id, repo=OTHER_REPO, token=OTHER), 404, "Not Found", RUN_DOCS)
    github_error(api.run(run_id, token=None), 404, "Not Found", RUN_DOCS)


def _links(response: Any) -> dict[str, int]:
    """rel -> page, from GitHub's Link header."""
    header = response.headers.get("Link")
    if header is None:
        return {}
    return {rel: int(page) for page, rel in
            re.findall(r'<[^>]*[?&]page=(\d+)[^>]*>; rel="(\w+)"', header)}


def test_250_runs_page_newest_first_with_link_headers(
        api: Api, clock: FakeClock, emulator: GitHubEmulator) -> None:
    emulator.configure(secondary_posts_per_minute=1000)
    ids = []
    for n in range(250):
        ids.append(_dispatch(api, inputs={"revision": f"r{n}"}))
        clock.advance(1)
    first = api.runs(per_page=100)
    assert body(first, 200)["total_count"] == 250
    assert _links(first) == {"next": 2, "last": 3}
    assert f"{api.base_url}/repos/{REPO}/actions/workflows/deploy.yml/runs?per_page=100&page=2" \
        in first.headers["Link"]
    seen: list[int] = []
    page = 1
    while True:
        response = api.runs(per_page=100, page=page)
        seen += [run["id"] for run in body(response, 200)["workflow_runs"]]
        if "next" not in _links(response):
            break
        page = _links(response)["next"]
    assert seen == list(reversed(ids))
    assert _links(api.runs(per_page=100, page=2)) == {"prev": 1, "next": 3, "last": 3,
                                                       "first": 1}
    assert _links(api.runs(per_page=100, page=3)) == {"prev": 2, "first": 1}
    default = body(api.runs(), 200)
    assert len(default["workflow_runs"]) == 30 and _links(api.runs())["last"] == 9
    assert len(body(api.runs(per_page=500), 200)["workflow_runs"]) == 100
    assert body(api.runs(page=50), 200) == {"total_count": 250, "workflow_runs": []}
    assert "Link" not in api.runs(per_page=100, branch="nope").headers


def test_filters(api: Api, clock: FakeClock, emulator: GitHubEmulator) -> None:
    emulator.set_schedule(REPO, start_after=5, finish_after=10, conclusion="failure")
    emulator.push(REPO, "release")
    on_main = _dispatch(api)                       # created 08:00:00
    clock.advance(60)
    on_release = _dispatch(api, ref="release")     # created 08:01:00
    clock.advance(7)                               # main: completed; release: in_progress

    def ids(**params: str | int) -> list[int]:
        listed = api.call("GET", f"/repos/{REPO}/actions/workflows/deploy.yml/runs",
                          params=params)
        return [run["id"] for run in body(listed, 200)["workflow_runs"]]

    assert ids() == [on_release, on_main]
    assert ids(branch="release") == [on_release]
    assert ids(event="workflow_dispatch") == [on_release, on_main]
    assert ids(event="push") == []
    assert ids(status="completed") == [on_main] == ids(status="failure")
    assert ids(status="in_progress") == [on_release]
    assert ids(status="success") == []
    assert ids(head_sha=emulator.head(REPO, "release")) == [on_release]
    assert ids(created=">=2027-01-15T08:00:30Z") == [on_release]
    assert ids(created=">2027-01-15T08:01:00Z") == []
    assert ids(created=">=2027-01-15T08:01:00Z") == [on_release]
    assert ids(created="<2027-01-15T08:01:00Z") == [on_main]
    assert ids(created="<=2027-01-15T08:01:00Z") == [on_release, on_main]
    assert ids(created="2027-01-15T07:00:00Z..2027-01-15T08:00:00Z") == [on_main]
    assert ids(created="2027-01-15T08:00:01Z..*") == [on_release]
    assert ids(created="2027-01-15") == [on_release, on_main]
    assert ids(created=">2027-01-15") == [] == ids(created="2027-01-14")
    assert ids(created=">=2027-01-15T09:00:30+01:00") == [on_release]
    response = api.runs(created="yesterday")
    assert response.status_code == 422 and "created" in response.json()["message"]


@pytest.mark.parametrize("token", [None, OTHER])
def test_a_public_repository_lists_for_anyone(api: Api, token: str | None) -> None:
    assert body(api.runs("octo/public", "plain.yml", token=token), 200)["total_count"] == 0


def test_listing_a_private_repository_needs_a_token_that_sees_it(api: Api) -> None:
    docs = "https://docs.github.com/rest/actions/workflow-runs#list-workflow-runs-for-a-workflow"
    github_error(api.runs(token=None), 404, "Not Found", docs)
    github_error(api.runs(OTHER_REPO, token="ghp_write_token_1"), 404, "Not Found", docs)
    github_error(api.runs(workflow="nope.yml"), 404, "Not Found", docs)
