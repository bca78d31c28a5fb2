"""Finding the Travis request an earlier submit of this execution made, as Travis really shows it.

Travis has no idempotency key (PROTOCOL B9): every request carries the execution's marker in its
message, and a submit that may have reached Travis before looks for it first. What Travis shows
of a request it made from an API call (travis-ci/travis-api at d1cbb6d):

- Until its gatekeeper has processed it, the request has no branch, no commit and no message
  (`queries/request.rb#create_request` stores only event_type, state, repository and owner; the
  renderer shows the row's own columns, `renderer/request.rb`). `?branch=` filters on the
  branch_id it does not have yet (`queries/requests.rb`): a branch-filtered list cannot show it,
  so the lookup lists the repository's requests unfiltered, newest first.
- Once processed it has a commit whose message is the one sent (PROTOCOL B9). The request's own
  `message` is Travis's status text (observed), or perhaps the message sent: both are searched.

So a pending request that this process did not create itself cannot be told apart from one of
ours whose answer was lost: it is "not known yet" (look again later), never "absent". The list is
bounded by time: `from` asks Travis for requests since the execution's first submit (less a
margin for the clocks of Travis and the worker), and paging stops at the first request older
than that, should the server ignore `from`.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from actions._http import Endpoint
from actions.travis.client import TravisClient

PAGE = 100
"""Requests per page: Travis's maximum (`paginator.rb`)."""
MAX_PAGES = 20
"""Pages read before the lookup gives up telling: 2,000 requests since the execution's first
submit is beyond any repository's 10 API requests an hour (an admin may raise it)."""
CLOCK_SKEW = 300.0
"""Seconds Travis's clock (its created_at) may be behind the worker's."""
PENDING_HORIZON = 1800.0
"""A request pending for longer is stuck at Travis, not a submit of ours still being processed
(Travis processes requests within seconds to minutes): it is not waited for."""


@dataclass(frozen=True)
class Mine:
    """The request carrying this execution's marker (or created by this process for it)."""

    request_id: int


@dataclass(frozen=True)
class NotYet:
    """Recent pending requests whose messages Travis does not show yet: one may be ours."""

    pending: tuple[int, ...]


@dataclass(frozen=True)
class Absent:
    """Every request since the bound is visibly someone else's."""


@dataclass(frozen=True)
class Unsure:
    """Too many requests since the bound to read them all."""

    read: int


Found = Mine | NotYet | Absent | Unsure


class SentLedger:
    """Requests this process created, by id: a pending one among them is known, whoever's it is.

    A pending request's marker is hidden, but the 202 that created it named its id; with many
    executions on one repository, most pending requests a lookup meets are this process's own.
    Bounded; lost with the process (a restart knows nothing, and then waits for processing).
    """

    def __init__(self, size: int = 8192) -> None:
        self._size = size
        self._owners: OrderedDict[tuple[str, int], str] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, place: str, request_id: int, execution_id: str) -> None:
        with self._lock:
            self._owners[(place, request_id)] = execution_id
            while len(self._owners) > self._size:
                self._owners.popitem(last=False)

    def owner(self, place: str, request_id: int) -> str | None:
        with self._lock:
            return self._owners.get((place, request_id))


def place_of(endpoint: Endpoint, slug: str) -> str:
    """Request ids are unique per Travis installation; the slug is kept for readability."""
    return f"{endpoint.url} {slug.lower()}"


def find_request(client: TravisClient, endpoint: Endpoint, slug: str, marker: str,
                 execution_id: str, *, since: float, now: float,
                 ledger: SentLedger) -> Found:
    """Where this execution's request stands among the repository's requests since `since`.

    Raises actions.travis.errors.TravisError when a listing fails.
    """
    place = place_of(endpoint, slug)
    unclear: list[int] = []
    read = 0
    for page in range(MAX_PAGES):
        requests, is_last = client.list_requests(endpoint, slug, since=iso(since), limit=PAGE,
                                                 offset=page * PAGE)
        for request in requests:
            request_id = int_or_none(request.get("id"))
            if request_id is None:
                continue
            created = timestamp(request.get("created_at"))
            if created is not None and created < since:
                return NotYet(tuple(unclear)) if unclear else Absent()
            read += 1
            owner = ledger.owner(place, request_id)
            if marker in texts(request) or owner == execution_id:
                return Mine(request_id)
            if owner is None and not processed(request) and (
                    created is None or now - created < PENDING_HORIZON):
                unclear.append(request_id)
        if is_last:
            return NotYet(tuple(unclear)) if unclear else Absent()
    return Unsure(read)


def texts(request: Mapping[str, Any]) -> str:
    """Where a request's marker can show: its commit's message, and its own message."""
    commit = request.get("commit")
    found = [commit.get("message") if isinstance(commit, dict) else None, request.get("message")]
    return "\n".join(t for t in found if isinstance(t, str))


def processed(request: Mapping[str, Any]) -> bool:
    """Whether Travis's gatekeeper has handled the request: it has a commit, a result or a
    build. The state's values beyond "pending" are not documented (PROTOCOL D9), so it is not
    read."""
    return bool(request.get("commit") or request.get("result") or request.get("builds"))


def iso(moment: float) -> str:
    """A time as Travis's `from` filter reads it."""
    return datetime.fromtimestamp(moment, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def timestamp(value: object) -> float | None:
    """Travis's UTC time stamps (2024-05-01T12:00:00Z, with or without milliseconds)."""
    if not isinstance(value, str) or not value:
        return None
    text = value.strip().replace("Z", "+00:00")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def int_or_none(value: object) -> int | None:
    """An id Travis sent as a number or a digit string; None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None
