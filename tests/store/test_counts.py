"""What the metrics read from the store, on every backend: jobs by state, leases held, and
every commit told to the observer with its changes."""

from __future__ import annotations

from engine.projection import Event, project
from engine.store import Change, EventStore
from tests.store.builders import LEASE, LOST, SUCCESS, T0, first, write


def test_jobs_are_counted_by_state_and_by_action(store: EventStore) -> None:
    write(store, "a", T0, *SUCCESS)
    write(store, "b", T0, *LOST)
    write(store, "c", T0, *SUCCESS[:3])
    write(store, "d", T0, action="other")
    assert store.count_by_state() == {"succeeded": 1, "lost": 1, "running": 1, "acquired": 1}
    assert store.count_by_state(["other"]) == {"acquired": 1}
    assert store.count_by_state(["nobody"]) == {}


def test_leases_are_counted_per_owner(store: EventStore) -> None:
    for name in ("a", "b", "c"):
        write(store, name, T0)
    store.claim_due(T0 + 1, 2, "w1", LEASE)
    store.claim_due(T0 + 1, 5, "w2", LEASE)
    assert (store.count_leased("w1"), store.count_leased("w2"), store.count_leased("w3")) == \
        (2, 1, 0)


def test_every_commit_that_wrote_is_told_with_its_changes(store: EventStore) -> None:
    told: list[tuple[list[str], float]] = []
    store.on_commit = lambda changes, seconds: told.append(
        ([e.type for c in changes for e in c.events], seconds))
    change = first("a")
    store.commit([change])
    store.commit([], None)  # nothing written: nothing told
    later = Event("a", 2, "acknowledged", T0 + 1, {})
    store.commit([Change([later], project(change.job, later), new=False)])
    assert [types for types, _ in told] == [["acquired"], ["acknowledged"]]
    assert all(seconds >= 0 for _, seconds in told)
