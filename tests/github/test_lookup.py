"""The marker lookup: runs listed by GitHub page by page, matched by display_title, bounded by
the time the execution first meant to dispatch."""

from __future__ import annotations

import pytest

from actions.github import MARKER_INPUT, REVISION_INPUT, Endpoint, GitHubClient, Repo, marker
from actions.github.emulator import GitHubEmulator
from actions.github.lookup import Absent, Mine, Unsure, find_run, iso
from engine import FakeClock
from engine.devtools.emulator import Response
from tests.github.conftest import (
    EXECUTION,
    NAME,
    OWNER,
    REF,
    REVISION,
    RUN_DELAY,
    TOKEN,
    WORKFLOW,
    Wire,
    quick_client,
)

REPO_REF = Repo(OWNER, NAME, WORKFLOW)

@pytest.fixture
def client() -> GitHubClient:
    return quick_client()

def dispatch(client: GitHubClient, url: str, execution: str) -> None:
    client.dispatch(Endpoint(url, TOKEN), REPO_REF, REF,
                    {MARKER_INPUT: marker(execution), REVISION_INPUT: REVISION}, False)

def test_the_marker_is_found_on_a_later_page_through_the_link_header(
    client: GitHubClient, github: GitHubEmulator, clock: FakeClock, url: str, wire: Wire
) -> None:
    since = clock.now()
    dispatch(client, url, EXECUTION)
    for n in range(130):
        clock.advance(1.0)  # under the secondary limit of 80 POSTs a minute
        dispatch(client, url, f"other-{n}")
    clock.advance(RUN_DELAY)
    found = find_run(client, Endpoint(url, TOKEN), REPO_REF, EXECUTION, since=since)
    assert isinstance(found, Mine)
    assert marker(EXECUTION) in found.run["display_title"]
    lists = wire.calls("GET", "/runs")
    assert len(lists) == 2  # page 1 of 100 runs, then the Link header's next page
    first = dict(lists[0].query)
    assert first == {"event": ["workflow_dispatch"], "created": [f">={iso(since)}"],
                     "per_page": ["100"]}

def test_a_run_that_is_not_listed_yet_is_absent_and_one_of_another_execution_is_not_mine(
    client: GitHubClient, github: GitHubEmulator, clock: FakeClock, url: str
) -> None:
    since = clock.now()
    dispatch(client, url, "someone-else")
    dispatch(client, url, EXECUTION)
    assert find_run(client, Endpoint(url, TOKEN), REPO_REF, EXECUTION, since=since) == Absent()
    clock.advance(RUN_DELAY)
    assert isinstance(find_run(client, Endpoint(url, TOKEN), REPO_REF, EXECUTION,
                               since=since), Mine)
    assert find_run(client, Endpoint(url, TOKEN), REPO_REF, "a-third", since=since) == Absent()

def test_runs_created_before_the_bound_are_not_read(
    client: GitHubClient, github: GitHubEmulator, clock: FakeClock, url: str
) -> None:
    dispatch(client, url, EXECUTION)
    clock.advance(1000.0)
    later = clock.now()
    assert find_run(client, Endpoint(url, TOKEN), REPO_REF, EXECUTION, since=later) == Absent()

def test_paging_stops_at_an_older_run_when_the_server_ignores_created(
    client: GitHubClient, clock: FakeClock, url: str, wire: Wire
) -> None:
    wire.script.append(Response.json(200, {"workflow_runs": [
        {"id": 2, "display_title": "Deploy [cpworker:other]", "created_at": iso(clock.now())},
        {"id": 1, "display_title": f"Deploy [{marker(EXECUTION)}]",
         "created_at": iso(clock.now() - 7200)}]},
        headers={"Link": f'<{url}/repos/octo/app/actions/runs?page=2>; rel="next"'}))
    found = find_run(client, Endpoint(url, TOKEN), REPO_REF, EXECUTION,
                     since=clock.now() - 60)
    assert found == Absent() and len(wire.seen) == 1

def test_runs_without_any_marker_are_counted_as_a_hint(
    client: GitHubClient, clock: FakeClock, url: str, wire: Wire
) -> None:
    wire.script.append(Response.json(200, {"workflow_runs": [
        {"id": 3, "display_title": "Deploy", "created_at": iso(clock.now())},
        {"id": 2, "display_title": "Deploy [cpworker:other]", "created_at": iso(clock.now())}]}))
    assert find_run(client, Endpoint(url, TOKEN), REPO_REF, EXECUTION,
                    since=clock.now() - 60) == Absent(unmarked=1)

def test_a_next_link_to_another_host_is_not_followed_with_the_token(
    client: GitHubClient, clock: FakeClock, url: str, wire: Wire
) -> None:
    wire.script.append(Response.json(200, {"workflow_runs": []}, headers={
        "Link": '<https://elsewhere.example/steal?page=2>; rel="next"'}))
    assert find_run(client, Endpoint(url, TOKEN), REPO_REF, EXECUTION,
                    since=clock.now()) == Absent()
    assert len(wire.seen) == 1

def test_more_pages_than_the_lookup_reads_is_unsure(
    client: GitHubClient, clock: FakeClock, url: str, wire: Wire
) -> None:
    page = {"workflow_runs": [{"id": n, "display_title": f"[cpworker:x-{n}]",
                               "created_at": iso(clock.now())} for n in range(100)]}
    for _ in range(10):
        wire.script.append(Response.json(200, page, headers={
            "Link": f'<{url}/repos/octo/app/actions/workflows/deploy.yml/runs?page=2>; '
                    'rel="next"'}))
    assert find_run(client, Endpoint(url, TOKEN), REPO_REF, EXECUTION,
                    since=clock.now() - 60) == Unsure(1000)
