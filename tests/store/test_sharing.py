"""Workers sharing one database: each claims, counts and waits for its own actions' jobs only,
keeps its leases by renewing them, and on PostgreSQL leases run on the database's clock.

Lease expiry is tested with short leases on the real clock, passed as `now` too, so the same
test holds on SQLite (the caller's clock) and PostgreSQL (the server's, on this same host).
"""

from __future__ import annotations

import time

from engine.store import ClaimRequest, EventStore
from tests.store.builders import LEASE, LOST, T0, assert_leased, first, ids, lease_of, past, write

SHORT = 0.3
"""A lease that has run out once past(SHORT + margin) returns."""


def two_actions(store: EventStore) -> None:
    """Jobs of actions a and b, due in turns: a-1 at T0+1, b-2 at T0+2, a-3, b-4."""
    for i, action in enumerate(["a", "b", "a", "b"], start=1):
        write(store, f"{action}-{i}", T0 + i, action=action)


def test_claims_take_only_the_jobs_of_the_workers_actions(store: EventStore) -> None:
    two_actions(store)
    write(store, "c-9", T0, action="c")
    assert ids(store.claim_due(T0 + 10, 5, "wa", LEASE, actions=["a"])) == ["a-1", "a-3"]
    assert ids(store.claim_due(T0 + 10, 1, "wb", LEASE, actions=("b", "x"))) == ["b-2"]
    assert store.claim_due(T0 + 10, 5, "wa", LEASE, actions=["a"], skip=["a-1", "a-3"]) == []
    assert store.claim_due(T0 + 10, 5, "wn", LEASE, actions=[]) == []
    assert ids(store.claim_due(T0 + 10, 5, "wall", LEASE)) == ["c-9", "b-4"]
    assert lease_of(store, "a-1")[0] == "wa" and lease_of(store, "b-2")[0] == "wb"


def test_a_commit_claims_only_the_jobs_of_its_actions(store: EventStore) -> None:
    two_actions(store)
    step = first("a-5", T0 + 5, action="a")
    claimed = store.commit([step], ClaimRequest(T0 + 10, 10, "wa", LEASE, actions=["a"]))
    assert ids(claimed) == ["a-1", "a-3", "a-5"]
    assert_leased(store, "a-5", "wa", T0 + 10)
    alone = store.commit([], ClaimRequest(T0 + 10, 10, "wb", LEASE, actions=["b"]))
    assert ids(alone) == ["b-2", "b-4"]


def test_count_active_and_earliest_due_by_action(store: EventStore) -> None:
    two_actions(store)
    write(store, "a-done", T0, *LOST, action="a")  # final: counted by nobody
    assert store.count_active() == 4
    assert store.count_active(["a"]) == 2
    assert store.count_active(["b", "z"]) == 2
    assert store.count_active(["z"]) == 0 and store.count_active([]) == 0
    assert store.earliest_due(T0, ["b"]) == T0 + 2
    assert store.earliest_due(T0, ["a"]) == T0 + 1
    store.claim_due(T0 + 2, 5, "wb", LEASE, actions=["b"])
    assert store.earliest_due(T0 + 2, ["b"]) == T0 + 4
    assert store.earliest_due(T0 + 2, ["z"]) is None
    assert store.earliest_due(T0 + 2) == T0 + 1


def test_renew_extends_the_leases_the_owner_holds(store: EventStore) -> None:
    for job_id in ["job-a", "job-b", "job-c"]:
        write(store, job_id, T0)
    now = time.time()
    assert ids(store.claim_due(now, 2, "w1", SHORT)) == ["job-a", "job-b"]
    assert ids(store.claim_due(now, 5, "w2", LEASE)) == ["job-c"]
    # job-c is w2's and job-x does not exist: only job-a is renewed.
    assert store.renew(["job-a", "job-c", "job-x"], "w1", LEASE, now=now) == 1
    assert store.renew([], "w1", LEASE) == 0
    assert_leased(store, "job-a", "w1", now)
    later = past(SHORT + 0.2)
    # job-b's short lease ran out: another owner takes it; job-a's renewed lease holds.
    assert ids(store.claim_due(later, 5, "w3", LEASE)) == ["job-b"]
    assert lease_of(store, "job-a")[0] == "w1" and lease_of(store, "job-c")[0] == "w2"
    # w1 lost job-b: renewing it tells so.
    assert store.renew(["job-a", "job-b"], "w1", LEASE, now=later) == 1


def test_an_expired_lease_is_free_to_others(store: EventStore) -> None:
    write(store, "job-a", T0)
    now = time.time()
    assert ids(store.claim_due(now, 5, "w1", SHORT)) == ["job-a"]
    assert store.claim_due(now, 5, "w2", LEASE) == []
    assert store.earliest_due(now) is None
    later = past(SHORT + 0.2)
    assert store.earliest_due(later) == T0
    assert ids(store.claim_due(later, 5, "w2", LEASE)) == ["job-a"]
    assert_leased(store, "job-a", "w2", later)
    assert store.renew(["job-a"], "w1", LEASE, now=later) == 0


def test_on_postgresql_leases_run_on_the_databases_clock(pg_store: EventStore) -> None:
    """Workers' clocks disagree; the lease means the same to all of them."""
    store = pg_store
    write(store, "job-a", T0)
    real = time.time()
    behind, ahead = real - 3600, real + 86_400
    assert ids(store.claim_due(behind, 5, "slow", LEASE)) == ["job-a"]
    assert_leased(store, "job-a", "slow", behind)  # from the server's now, not `behind`
    # A worker a day ahead would see the lease long expired on its own clock.
    assert store.claim_due(ahead, 5, "fast", LEASE) == []
    assert store.earliest_due(ahead) is None
    assert store.renew(["job-a"], "slow", SHORT, now=behind) == 1
    past(SHORT + 0.2)
    # And a worker an hour behind sees it expired once the server's clock says so.
    assert ids(store.claim_due(behind, 5, "fast", LEASE)) == ["job-a"]
