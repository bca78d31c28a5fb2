"""The rows a store keeps of its own last commits, so that a claim need not read them back.

A claim takes a held row only at the last_seq it reads from the table, so another writer's
step is read back; and a finished job, never claimed again, is not held at all (held, every
finished job's row stayed until thousands of newer ones pushed it out: the worker's memory grew
for as long as that took).
"""

from __future__ import annotations

from engine.store import EventStore, open_store
from tests.store.builders import LEASE, RETRYING, SUCCESS, T0, first, then

NOW = T0 + 10_000.0


def test_a_claim_returns_the_row_as_stored(store: EventStore) -> None:
    change = first("job-a", T0)
    store.commit([change, then(change.job, T0 + 1, *RETRYING)])
    [claimed] = store.claim_due(NOW, 5, "w", LEASE)
    assert claimed == store.get("job-a")


def test_another_writers_step_is_read_back_not_taken_from_memory(store_url: str) -> None:
    mine, theirs = open_store(store_url), open_store(store_url)
    try:
        change = first("job-b", T0)
        mine.commit([change])
        moved = then(change.job, T0 + 1, *RETRYING)
        theirs.commit([moved])  # mine still holds the row at seq 1
        [claimed] = mine.claim_due(NOW, 5, "w", LEASE)
        assert claimed.last_seq == moved.job.last_seq and claimed == theirs.get("job-b")
    finally:
        mine.close()
        theirs.close()


def test_a_finished_job_is_not_held(store: EventStore) -> None:
    working, done = first("job-working", T0), first("job-done", T0)
    store.commit([working, done])
    held = store._rows.known([])  # the store's private cache: what this test is about
    assert {"job-working", "job-done"} <= set(held)
    store.commit([then(done.job, T0 + 1, *SUCCESS)])
    held = store._rows.known([])
    assert "job-done" not in held and "job-working" in held
