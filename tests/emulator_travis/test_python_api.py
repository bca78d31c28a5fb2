"""The admin Python API and the pure helpers, without a socket: mistakes fail loudly and early."""

from __future__ import annotations

from typing import Any

import pytest

from actions.travis.emulator import TravisEmulator
from actions.travis.emulator._render import paginate
from actions.travis.emulator._wire import split_path
from engine.clock import FakeClock


def test_constructor_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="request limit"):
        TravisEmulator(request_limit=-1)
    with pytest.raises(ValueError, match="build delay"):
        TravisEmulator(build_delay=-0.5)


def test_repository_records_and_lookups() -> None:
    emulator = TravisEmulator(clock=FakeClock())
    record = emulator.add_repository("me/one", token="t1", request_limit=4)
    assert record["id"] == 1001
    assert record["request_limit"] == 4
    assert record["build_delay"] == 2.0
    assert emulator.add_repository("me/two")["id"] == 1002
    with pytest.raises(ValueError, match="already exists"):
        emulator.add_repository("ME/one")
    for bad in ("one", "me/", "/one", "me/one/two", " me/x"):
        with pytest.raises(ValueError, match="owner/name"):
            emulator.add_repository(bad)
    for call in (
        lambda: emulator.add_token("me/none", "t"),
        lambda: emulator.set_schedule("me/none"),
        lambda: emulator.requests("me/none"),
        lambda: emulator.builds("me/none"),
        lambda: emulator.update_repository("me/none", active=False),
    ):
        with pytest.raises(LookupError, match="no repository 'me/none'"):
            call()


def test_a_bad_token_leaves_no_half_made_repository() -> None:
    emulator = TravisEmulator(clock=FakeClock())
    with pytest.raises(ValueError, match="whitespace"):
        emulator.add_repository("me/one", token="ok", read_only_tokens=["not ok"])
    assert emulator.repositories() == []


@pytest.mark.parametrize(
    ("kwargs", "complaint"),
    [
        ({"result": "green"}, "result must be one of"),
        ({"start_after": -1}, "start_after must be a number"),
        ({"start_after": 3, "finish_after": 2}, "must not come before"),
        ({"reject": ""}, "reject must be a non-empty message"),
        ({"intermediate": "started"}, "intermediate must name a state"),
    ],
)
def test_schedule_validation(kwargs: dict[str, Any], complaint: str) -> None:
    emulator = TravisEmulator(clock=FakeClock())
    emulator.add_repository("me/one")
    with pytest.raises(ValueError, match=complaint):
        emulator.set_schedule("me/one", **kwargs)


@pytest.mark.parametrize(
    ("count", "limit", "offset", "last", "previous"),
    [
        (0, 25, 0, 0, None),
        (50, 25, 0, 25, None),
        (51, 25, 25, 50, 0),
        (10, 3, 2, 9, 0),
        (10, 3, 7, 9, 4),
    ],
)
def test_pagination_links(
    count: int, limit: int, offset: int, last: int, previous: int | None
) -> None:
    items = list(range(count))
    query = {"limit": [str(limit)], "offset": [str(offset)], "state": ["pending"]}
    page, info, href = paginate(items, query, "/repo/1/requests")
    assert page == items[offset : offset + limit]
    assert info["count"] == count
    assert info["last"]["offset"] == last
    assert (info["prev"] or {}).get("offset") == previous
    assert info["is_last"] is (offset + limit >= count)
    assert href == f"/repo/1/requests?state=pending&limit={limit}&offset={offset}"


def test_split_path_keeps_an_encoded_slug_whole() -> None:
    assert split_path("/repo/octo%2Fapp/requests") == (["repo", "octo/app", "requests"], False)
    assert split_path("/v3/repo/github/octo%2Fapp/builds") == (
        ["repo", "octo/app", "builds"],
        True,
    )
    assert split_path("/repo/octo/app/requests") == (["repo", "octo", "app", "requests"], False)
