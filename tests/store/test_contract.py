"""The event store's contract, run against every backend (a SQLite file and a PostgreSQL database).

Events are built the way the engine builds them: `project` turns each one into the row it leads
to, and a `Change` carries both to `commit`. Nothing here is mocked; where a test looks past the
API (leases, raw timestamps) it reads the tables themselves.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import fields, replace
from datetime import datetime, timezone
from importlib.resources import files
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.exc import IntegrityError

from engine.errors import AmbiguousJob, ConcurrencyConflict, UnknownJob
from engine.machine import JobState
from engine.outcomes import JSON
from engine.projection import EVENT_SCHEMA_VERSION, Event, Job, NewEvent, fold, project
from engine.store import Change, ClaimRequest, EventStore, open_store
from engine.store.schema import jobs, metadata
from engine.store.sql import REVISIONS, worker_id
from tests.store.builders import (
    FINAL_STATES,
    HANDED_ON,
    LEASE,
    LOST,
    RETRYING,
    SUCCESS,
    T0,
    acquired_event,
    assert_leased,
    first,
    ids,
    lease_of,
    then,
    types,
    write,
)

# --- one transaction for the log and the projection -------------------------------------------


def test_a_commit_appends_the_events_and_writes_the_row(store: EventStore) -> None:
    change = first("job-a")
    store.commit([change])
    assert store.history("job-a") == list(change.events)
    assert store.get("job-a") == change.job
    assert store.get("job-a") == Job(
        job_id="job-a", state=JobState.ACQUIRED, action="ledger", action_type="Custom/Test/1",
        execution_id="exec-1", created_at=T0, updated_at=T0, last_seq=1, next_due_at=T0,
        pipeline={"name": "demo", "stage": "Build"}, nonce="nonce-job-a",
    )
    following = then(change.job, T0 + 1, *SUCCESS[:2])
    store.commit([following])
    assert types(store.history("job-a")) == ["acquired", "acknowledged", "submit_intended"]
    assert store.get("job-a") == following.job
    assert following.job.state is JobState.SUBMITTED


def test_a_group_commit_is_all_or_nothing(store: EventStore) -> None:
    existing = write(store, "job-z")
    moving = write(store, "job-c")
    batch = [  # job-z sorts last: the others come before it in every statement
        first("job-b"),                                    # a new job
        then(moving, T0 + 5, NewEvent("acknowledged")),    # an update to another job
        first("job-z", T0 + 5),                            # and one that lost a race
    ]
    with pytest.raises(ConcurrencyConflict) as raised:
        store.commit(batch)
    assert isinstance(raised.value.__cause__, IntegrityError)
    assert store.get("job-b") is None and store.history("job-b") == []
    assert store.get("job-c") == moving and types(store.history("job-c")) == ["acquired"]
    assert store.get("job-z") == existing and len(store.history("job-z")) == 1


def test_a_conflict_on_the_second_jobs_row_undoes_the_first_job(store: EventStore) -> None:
    existing = write(store, "job-z")
    # A writer that believes job-z is new: its event (seq 2) is free, its row insert is not.
    event = Event("job-z", 2, "acquired", T0 + 1, acquired_event("job-z", T0 + 1).data)
    stale = Change([event], project(None, event), new=True)
    fresh = first("job-b")
    with pytest.raises(ConcurrencyConflict):
        store.commit([fresh, stale])
    assert store.get("job-b") is None and store.history("job-b") == []
    assert store.history("job-z") == [acquired_event("job-z", T0)]
    assert store.get_many(["job-b", "job-z"]) == {"job-z": existing}


def test_a_duplicate_seq_is_a_conflict_that_changes_nothing(store: EventStore) -> None:
    job = write(store, "job-a", T0, NewEvent("acknowledged"))
    before = store.history("job-a")
    rival = then(replace(job, last_seq=1, state=JobState.ACQUIRED), T0 + 9,
                 NewEvent("job_lost", {"reason": "stale view"}))
    assert rival.events[0].seq == 2
    with pytest.raises(ConcurrencyConflict):
        store.commit([rival])
    assert store.history("job-a") == before
    assert store.get("job-a") == job
    with pytest.raises(ConcurrencyConflict):  # a second intake that thinks the job is new
        store.commit([first("job-a", T0 + 9)])
    assert store.history("job-a") == before


def test_commit_each_returns_the_loser_and_writes_the_rest(store: EventStore) -> None:
    job = write(store, "job-a")
    stale = write(store, "job-s")
    store.commit([then(stale, T0 + 1, NewEvent("acknowledged"))])
    winner_b, loser, winner_c = (
        first("job-b"),
        then(stale, T0 + 2, NewEvent("job_lost", {"reason": "stale"})),
        then(job, T0 + 2, NewEvent("acknowledged")),
    )
    assert store.commit_each([winner_b, loser, winner_c]) == [loser]
    assert store.get("job-b") == winner_b.job
    assert store.get("job-a") == winner_c.job
    assert types(store.history("job-s")) == ["acquired", "acknowledged"]
    survivor = store.get("job-s")
    assert survivor is not None and survivor.state is JobState.ACKNOWLEDGED


def test_racing_group_commits_one_wins_the_other_conflicts(store_url: str) -> None:
    """Two workers' batches append to the same two jobs at once, listed in opposite orders.

    Each round exactly one batch is written and the other raises ConcurrencyConflict: never a
    mix of both, and never a deadlock reported as a broken database.
    """
    stores = [open_store(store_url), open_store(store_url, migrate=False)]
    try:
        rounds = 60
        pairs = [(first(f"a-{i:02d}"), first(f"b-{i:02d}")) for i in range(rounds)]
        stores[0].commit([c for pair in pairs for c in pair])
        barrier = threading.Barrier(2)
        outcome: dict[tuple[int, int], str] = {}

        def race(who: int) -> None:
            step = [NewEvent("acknowledged"), NewEvent("job_lost", {"reason": "raced"})][who]
            for i, pair in enumerate(pairs):
                batch = [then(c.job, T0 + 1, step) for c in pair]
                barrier.wait(timeout=10)
                try:
                    stores[who].commit(batch if who == 0 else batch[::-1])
                    outcome[(i, who)] = step.type
                except ConcurrencyConflict:
                    outcome[(i, who)] = "conflict"

        with ThreadPoolExecutor(2) as pool:
            list(pool.map(race, [0, 1]))  # any other exception fails the test here
        for i, pair in enumerate(pairs):
            results = sorted([outcome[(i, 0)], outcome[(i, 1)]])
            assert results.count("conflict") == 1, results
            winner = next(r for r in results if r != "conflict")
            for change in pair:
                assert types(stores[0].history(change.job.job_id)) == ["acquired", winner]
                stored = stores[0].get(change.job.job_id)
                assert stored is not None and stored.last_seq == 2
    finally:
        for opened in stores:
            opened.close()


def test_a_commit_claims_the_next_due_machines_in_the_same_transaction(
    store: EventStore,
) -> None:
    moving = write(store, "job-x", T0)
    write(store, "job-y", T0 + 1)
    write(store, "job-z", T0 + 50)
    step = then(moving, T0 + 3, NewEvent("acknowledged"))  # due again at once (a decision)
    claimed = store.commit([step], claim=ClaimRequest(T0 + 5, 5, "w1", LEASE))
    assert claimed == [store.get("job-y"), step.job]  # the claim sees the batch's own writes
    assert_leased(store, "job-x", "w1", T0 + 5)
    assert lease_of(store, "job-z") == (None, None)
    # Alone, the claim still passes over leases and the skip list.
    alone = ClaimRequest(T0 + 60, 5, "w2", LEASE, skip=["job-x"])
    assert store.commit([], claim=alone) == [store.get("job-z")]
    assert store.commit([]) == []


def test_a_conflicting_commit_claims_nothing(store: EventStore) -> None:
    write(store, "job-y", T0)
    with pytest.raises(ConcurrencyConflict):
        store.commit([first("job-y", T0 + 1)], claim=ClaimRequest(T0 + 5, 5, "w1", LEASE))
    assert lease_of(store, "job-y") == (None, None)


# --- what events keep ---------------------------------------------------------------------------


def test_events_keep_their_order(store: EventStore) -> None:
    a = write(store, "job-a")
    b = write(store, "job-b")
    a_more = then(a, T0 + 1, *SUCCESS[:3])      # several events of one job in one change
    b_more = then(b, T0 + 1, *LOST)
    store.commit([b_more, a_more])
    store.commit([then(a_more.job, T0 + 2, *SUCCESS[3:])])
    history = store.history("job-a")
    assert [e.seq for e in history] == list(range(1, 8))
    assert types(history) == ["acquired"] + [s.type for s in SUCCESS]
    assert types(store.history("job-b")) == ["acquired", "job_lost"]
    assert store.history("nobody") == []


NESTED: dict[str, JSON] = {
    "text": "Grüße, 日本語, emoji 🚀, quotes \" ' and a backslash \\ and\na newline",
    "empty": "", "none": None, "yes": True, "no": False, "int": -42, "big": 2**53,
    "float": 3.25, "small": 1.5e-07,
    "list": [1, "two", None, [3, [4, {"five": 5}]], {}],
    "nested": {"a": {"b": {"c": {"d": ["deep", {"ü": "ß"}]}}}, "empty": {}},
    "%_like": "wildcards are just characters",
}


def test_json_payloads_round_trip(store: EventStore) -> None:
    event = acquired_event("job-a", T0, payload=NESTED, pipeline={"name": "démo ✓", "meta": NESTED},
                           run={"ids": [1, 2, 3], "deep": NESTED})
    row = project(None, event)
    store.commit([Change([event], row, new=True)])
    later = then(row, T0 + 1, NewEvent("acknowledged", {"note": NESTED}),
                 NewEvent("submit_intended", {"worker": "wörker"}))
    store.commit([later])
    stored = store.history("job-a")
    assert stored[0].data == event.data and stored[0].data["payload"] == NESTED
    assert stored[1].data == {"note": NESTED}
    job = store.get("job-a")
    assert job == later.job
    assert job is not None and job.pipeline["meta"] == NESTED and job.run["deep"] == NESTED
    # Reports and details live in JSON columns too, and come back as written.
    running = then(later.job, T0 + 2, NewEvent("run_started", {
        "details": {"external_id": "b-1", "summary": "läuft 🏃", "extra": NESTED},
        "run": {"more": [NESTED]},
    }), NewEvent("progress_changed", {"report": {"details": NESTED}}))
    store.commit([running])
    assert store.get("job-a") == running.job
    assert running.job.pending == {"details": NESTED}


@pytest.fixture
def away_from_utc(store: EventStore, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This process and the database session both in UTC-03:30, to catch local-time slips."""
    zone = "<-0330>+03:30"
    monkeypatch.setenv("TZ", zone)
    time.tzset()
    if store.dialect == "postgresql":
        with store.engine.begin() as conn:
            conn.exec_driver_sql(
                f"ALTER DATABASE \"{store.engine.url.database}\" SET timezone TO '{zone}'")
        store.engine.dispose()  # new connections take the database's setting
    try:
        yield
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.mark.usefixtures("away_from_utc")
def test_timestamps_round_trip_as_utc_epoch_seconds(store: EventStore) -> None:
    moments = [T0, 1_767_225_600.123456, 1_767_225_601.9876543, 946_684_800.000001,
               4_102_444_800.5]  # ..., 2000-01-01 and a µs, 2100-01-01
    for i, at in enumerate(moments):
        store.commit([first(f"job-{i}", at)])
    for i, at in enumerate(moments):
        (event,) = store.history(f"job-{i}")
        assert event.at == pytest.approx(at, abs=1e-6)
        job = store.get(f"job-{i}")
        assert job is not None
        for value in (job.created_at, job.updated_at, job.next_due_at):
            assert value == pytest.approx(at, abs=1e-6)
    # In the table itself: UTC epoch seconds, which a SQL shell turns into the same instant
    # (to the millisecond) whatever its session's time zone.
    with store.engine.connect() as conn:
        if store.dialect == "postgresql":
            raw = conn.exec_driver_sql(
                "SELECT job_id, at, "
                "to_char(to_timestamp(at) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.MS') "
                "FROM events"
            ).all()
        else:
            raw = conn.exec_driver_sql(
                "SELECT job_id, at, strftime('%Y-%m-%d %H:%M:%f', at, 'unixepoch') FROM events"
            ).all()
    for job_id, epoch, text in raw:
        at = moments[int(job_id.split("-")[1])]
        assert epoch == pytest.approx(at, abs=1e-6)
        shown = datetime.strptime(text, "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=timezone.utc)
        assert shown.timestamp() == pytest.approx(at, abs=0.0011)


def test_the_event_version_is_kept(store: EventStore) -> None:
    old = Event("job-a", 1, "acquired", T0, acquired_event("job-a", T0).data, version=0)
    store.commit([Change([old], project(None, old), new=True)])
    newer = then(project(None, old), T0 + 1, NewEvent("acknowledged"))
    future = replace(newer.events[0], version=EVENT_SCHEMA_VERSION + 1)
    store.commit([Change([future], newer.job, new=False)])
    store.commit([then(newer.job, T0 + 2, NewEvent("submit_intended"))])
    assert EVENT_SCHEMA_VERSION not in (0, EVENT_SCHEMA_VERSION + 1)
    assert [e.version for e in store.history("job-a")] == [
        0, EVENT_SCHEMA_VERSION + 1, EVENT_SCHEMA_VERSION]


# --- claims and leases --------------------------------------------------------------------------


def test_claim_due_takes_due_rows_earliest_first_up_to_the_limit(store: EventStore) -> None:
    for job_id, due in [("job-c", 30), ("job-a", 10), ("job-late", 100), ("job-b", 20),
                        ("job-d", 40)]:
        write(store, job_id, T0 + due)
    write(store, "job-done", T0, *LOST)  # final: never due again
    now = T0 + 50
    assert ids(store.claim_due(now, 2, "w1", LEASE)) == ["job-a", "job-b"]
    assert ids(store.claim_due(now, 5, "w2", LEASE)) == ["job-c", "job-d"]
    assert store.claim_due(now, 5, "w3", LEASE) == []
    assert store.claim_due(T0 + 100, 0, "w3", LEASE) == []
    assert ids(store.claim_due(T0 + 100, 5, "w3", LEASE)) == ["job-late"]
    assert_leased(store, "job-a", "w1", now)
    assert lease_of(store, "job-done") == (None, None)


def test_claim_due_returns_the_rows_as_stored(store: EventStore) -> None:
    job = write(store, "job-a", T0, *RETRYING)
    (claimed,) = store.claim_due(job.next_due_at or 0, 1, "w1", LEASE)
    assert claimed == job == store.get("job-a")


def test_claim_due_passes_over_the_skip_list(store: EventStore) -> None:
    for i in range(4):
        write(store, f"job-{i}", T0 + i)
    claimed = store.claim_due(T0 + 10, 10, "w1", LEASE, skip=["job-0", "job-2"])
    assert ids(claimed) == ["job-1", "job-3"]
    assert lease_of(store, "job-0") == (None, None)
    assert ids(store.claim_due(T0 + 10, 10, "w1", LEASE, skip=iter(["job-0"]))) == [
        "job-1", "job-2", "job-3"]


def test_on_sqlite_leases_run_on_the_callers_clock(sqlite_store: EventStore) -> None:
    """One host, one clock: the `now` the caller passes (a fake clock in the engine's tests)."""
    store = sqlite_store
    write(store, "job-a", T0)
    assert ids(store.claim_due(T0, 5, "w1", LEASE)) == ["job-a"]
    assert store.claim_due(T0 + LEASE - 1, 5, "w2", LEASE) == []
    # Its holder may claim it again (a restart of the same worker), which renews the lease.
    assert ids(store.claim_due(T0 + 10, 5, "w1", LEASE)) == ["job-a"]
    assert lease_of(store, "job-a") == ("w1", T0 + 10 + LEASE)
    assert store.claim_due(T0 + LEASE + 5, 5, "w2", LEASE) == []
    expired = T0 + 10 + LEASE + 0.5
    assert ids(store.claim_due(expired, 5, "w2", LEASE)) == ["job-a"]
    assert lease_of(store, "job-a") == ("w2", expired + LEASE)
    assert store.renew(["job-a"], "w2", LEASE, now=expired + 30) == 1
    assert lease_of(store, "job-a") == ("w2", expired + 30 + LEASE)
    assert store.claim_due(expired + LEASE + 1, 5, "w1", LEASE) == []


def test_committing_a_step_ends_the_lease(store: EventStore) -> None:
    job = write(store, "job-a", T0)
    store.claim_due(T0, 1, "w1", LEASE)
    step = then(job, T0 + 1, NewEvent("acknowledged"))
    store.commit([step])
    assert lease_of(store, "job-a") == (None, None)
    assert ids(store.claim_due(T0 + 1, 1, "w2", LEASE)) == ["job-a"]


def test_release_frees_only_the_callers_leases(store: EventStore) -> None:
    write(store, "job-a", T0)
    write(store, "job-b", T0 + 1)
    store.claim_due(T0 + 1, 1, "w1", LEASE)
    store.claim_due(T0 + 1, 1, "w2", LEASE)
    store.release(["job-a", "job-b"], "w1")
    store.release([], "w1")
    assert lease_of(store, "job-a") == (None, None)
    assert_leased(store, "job-b", "w2", T0 + 1)


def test_concurrent_claimers_never_get_the_same_job(store_url: str) -> None:
    """Two workers (two threads, two connection pools) claiming at once split the due rows."""
    stores = [open_store(store_url), open_store(store_url, migrate=False)]
    try:
        count = 80
        stores[0].commit([first(f"job-{i:03d}", T0 + i) for i in range(count)])
        barrier = threading.Barrier(2)

        def claim_all(who: int) -> list[str]:
            got: list[str] = []
            barrier.wait(timeout=10)
            # skip: a holder may claim its own rows again, so it passes over what it has.
            while batch := stores[who].claim_due(T0 + count, 3, f"worker-{who}", 600, skip=got):
                got.extend(ids(batch))
            return got

        with ThreadPoolExecutor(2) as pool:
            first_claims, second_claims = pool.map(claim_all, [0, 1])
        assert not set(first_claims) & set(second_claims)
        assert sorted(first_claims + second_claims) == [f"job-{i:03d}" for i in range(count)]
        assert len(first_claims) + len(second_claims) == count
    finally:
        for opened in stores:
            opened.close()


def test_claim_due_skips_rows_another_claim_has_locked(pg_store: EventStore) -> None:
    """PostgreSQL's SKIP LOCKED: a row mid-claim elsewhere is passed over, not waited for."""
    write(pg_store, "job-a", T0)
    write(pg_store, "job-b", T0 + 1)
    with pg_store.engine.connect() as other, ThreadPoolExecutor(1) as pool:
        other.execute(sa.select(jobs.c.job_id).where(jobs.c.job_id == "job-a").with_for_update())
        claim = pool.submit(pg_store.claim_due, T0 + 5, 5, "w1", LEASE)
        try:
            assert ids(claim.result(timeout=5)) == ["job-b"]
        finally:
            other.rollback()  # lets a claim that did wait finish, so the test ends either way
    assert ids(pg_store.claim_due(T0 + 5, 5, "w2", LEASE)) == ["job-a"]


def test_earliest_due_ignores_leased_and_final_rows(store: EventStore) -> None:
    assert store.earliest_due(T0) is None
    write(store, "job-done", T0 - 100, *LOST)
    assert store.earliest_due(T0) is None
    write(store, "job-soon", T0 + 5)
    write(store, "job-later", T0 + 20)
    assert store.earliest_due(T0) == T0 + 5
    store.claim_due(T0 + 5, 1, "w1", LEASE)
    assert store.earliest_due(T0 + 6) == T0 + 20
    if store.dialect == "sqlite":  # on the caller's clock (PostgreSQL: tests/store/test_sharing)
        assert store.earliest_due(T0 + 5 + LEASE + 1) == T0 + 5  # that lease has expired
    assert ids(store.claim_due(T0 + 20, 5, "w1", LEASE)) == ["job-soon", "job-later"]
    assert store.earliest_due(T0 + 21) is None


def _reaped() -> int:
    """The pid of a process that ran, exited and was reaped: nobody holds it now."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_a_claim_tells_who_held_each_job_before_it(store: EventStore) -> None:
    write(store, "job-fresh", T0)
    write(store, "job-held", T0)
    assert ids(store.claim_due(T0, 1, "w-old", -1.0, skip=["job-fresh"])) == ["job-held"]  # run out
    holders: dict[str, str | None] = {}
    claim = ClaimRequest(T0 + 5, 5, "w-new", LEASE, holders=holders)
    assert sorted(ids(store.commit([], claim))) == ["job-fresh", "job-held"]
    assert holders == {"job-fresh": None, "job-held": "w-old"}


def test_release_dead_leases_frees_only_leases_whose_holder_died_here(store: EventStore) -> None:
    host = socket.gethostname()
    dead_pid = _reaped()
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        owners = {
            "job-dead": f"{host}:{dead_pid}:a1b2c3",
            "job-alive": f"{host}:{sleeper.pid}:a1b2c3",
            "job-mine": worker_id(),
            "job-elsewhere": f"another-host.invalid:{dead_pid}:a1b2c3",
            "job-odd": "not a worker id",
        }
        for i, (job_id, owner) in enumerate(owners.items()):
            write(store, job_id, T0 + i)
            assert ids(store.claim_due(T0 + i, 1, owner, LEASE)) == [job_id]
        assert store.release_dead_leases() == 1
        # Expired, not cleared: the next holder learns that a worker held it (and may have had
        # a call in flight when it died).
        assert lease_of(store, "job-dead") == (owners["job-dead"], 0.0)
        assert store.release_dead_leases() == 0
        for job_id, owner in owners.items():
            if job_id != "job-dead":
                assert lease_of(store, job_id)[0] == owner
        holders: dict[str, str | None] = {}
        claim = ClaimRequest(T0 + 10, 5, "w-new", LEASE, holders=holders)
        assert ids(store.commit([], claim)) == ["job-dead"]
        assert holders == {"job-dead": owners["job-dead"]}
    finally:
        sleeper.kill()
        sleeper.wait()


# --- reading ------------------------------------------------------------------------------------


def test_resolve_finds_a_job_by_a_unique_prefix(store: EventStore) -> None:
    for job_id in ["3f1c2a9e", "3f1c77d0", "a0b1", "a0b1ffff"]:
        write(store, job_id)
    assert store.resolve("3f1c2").job_id == "3f1c2a9e"
    assert store.resolve("3f1c77d0").job_id == "3f1c77d0"
    assert store.resolve("a0b1").job_id == "a0b1"  # an exact id wins over the longer one
    assert store.resolve("a0b1f").job_id == "a0b1ffff"
    assert store.resolve("3f1c2") == store.get("3f1c2a9e")


def test_resolve_says_when_nothing_or_several_match(store: EventStore) -> None:
    for job_id in ["3f1c2a9e", "3f1c77d0", "3f1d0000"]:
        write(store, job_id)
    with pytest.raises(UnknownJob, match="no job id starts with '9'"):
        store.resolve("9")
    with pytest.raises(AmbiguousJob) as raised:
        store.resolve("3f1c")
    assert "3f1c2a9e" in str(raised.value) and "3f1c77d0" in str(raised.value)
    assert "3f1d0000" not in str(raised.value)
    with pytest.raises(AmbiguousJob):
        store.resolve("3f")


def test_resolve_takes_like_wildcards_literally(store: EventStore) -> None:
    for job_id in ["job_1", "jobX1", "50%off", "500ff", "back\\slash"]:
        write(store, job_id)
    assert store.resolve("job_").job_id == "job_1"
    assert store.resolve("50%").job_id == "50%off"
    assert store.resolve("back\\").job_id == "back\\slash"
    with pytest.raises(UnknownJob):
        store.resolve("%")
    with pytest.raises(UnknownJob):
        store.resolve("_")


def test_list_jobs_by_state_in_creation_order(store: EventStore) -> None:
    write(store, "job-b", T0 + 2, *LOST)
    write(store, "job-a", T0 + 3)
    write(store, "job-c", T0 + 1)
    write(store, "job-d", T0 + 2)  # same creation time as job-b: job id breaks the tie
    assert ids(store.list_jobs()) == ["job-c", "job-b", "job-d", "job-a"]
    assert ids(store.list_jobs(limit=2)) == ["job-c", "job-b"]
    assert ids(store.list_jobs("acquired")) == ["job-c", "job-d", "job-a"]
    assert ids(store.list_jobs(JobState.ACQUIRED)) == ["job-c", "job-d", "job-a"]
    assert ids(store.list_jobs("lost")) == ["job-b"]
    assert ids(store.list_jobs("acquired", limit=1)) == ["job-c"]
    assert store.list_jobs("running") == []
    assert store.list_jobs() == [store.get(i) for i in ["job-c", "job-b", "job-d", "job-a"]]


def test_by_execution_lists_the_jobs_of_one_execution(store: EventStore) -> None:
    write(store, "job-2", T0 + 2, execution_id="exec-1")
    write(store, "job-1", T0 + 1, execution_id="exec-1")
    write(store, "job-x", T0, execution_id="exec-2")
    assert ids(store.by_execution("exec-1")) == ["job-1", "job-2"]
    assert ids(store.by_execution("exec-2")) == ["job-x"]
    assert store.by_execution("exec-3") == []


def test_get_many_returns_the_rows_that_exist(store: EventStore) -> None:
    a = write(store, "job-a")
    b = write(store, "job-b", T0, *SUCCESS[:2])
    assert store.get_many(["job-a", "job-b", "job-z"]) == {"job-a": a, "job-b": b}
    assert store.get_many([]) == {}


def test_count_active_leaves_out_final_states(store: EventStore) -> None:
    assert store.count_active() == 0
    write(store, "job-succeeded", T0, *SUCCESS)
    write(store, "job-lost", T0, *LOST)
    write(store, "job-handed-on", T0, *HANDED_ON)
    assert {j.state for j in store.list_jobs()} == FINAL_STATES
    assert store.count_active() == 0
    write(store, "job-new", T0)
    write(store, "job-retrying", T0, *RETRYING)
    write(store, "job-running", T0, *SUCCESS[:4])
    assert store.count_active() == 3


def test_histories_yield_one_job_at_a_time_in_job_id_order(store: EventStore) -> None:
    assert list(store.histories()) == []
    write(store, "job-b", T0, *SUCCESS)
    write(store, "job-a", T0, *LOST)
    write(store, "job-c", T0)
    streamed = store.histories()
    assert iter(streamed) is streamed  # a generator: replay --all never holds every history
    all_of_them = list(streamed)
    assert [h[0].job_id for h in all_of_them] == ["job-a", "job-b", "job-c"]
    assert all(len({e.job_id for e in h}) == 1 for h in all_of_them)
    assert all_of_them == [store.history(i) for i in ["job-a", "job-b", "job-c"]]
    assert [h[0].job_id for h in store.histories(["job-c", "job-a", "job-z"])] == [
        "job-a", "job-c"]
    assert list(store.histories([])) == []


# --- the projection is the fold of the log -----------------------------------------------------


def _same_job(rebuilt: Job | None, stored: Job | None) -> None:
    """Equal field by field; times equal to the microsecond the databases keep."""
    assert rebuilt is not None and stored is not None
    for name in (f.name for f in fields(Job)):
        want, have = getattr(rebuilt, name), getattr(stored, name)
        if isinstance(want, float):
            assert have == pytest.approx(want, abs=2e-6), name
        else:
            assert have == want, name


LIFECYCLES: Mapping[str, list[NewEvent]] = {
    "succeeded": SUCCESS, "lost": LOST, "retrying": RETRYING, "handed-on": HANDED_ON,
    "running": SUCCESS[:4], "new": [],
}


def test_the_projection_is_the_fold_of_the_log(store: EventStore) -> None:
    """For jobs written through `project`, folding the history gives back the stored row."""
    clock = 1_767_225_600.4821937  # a real clock's floats, finer than the database keeps
    for name, steps in LIFECYCLES.items():
        change = first(f"job-{name}", clock, run={"seed": name})
        store.commit([change])
        job = change.job
        for step in steps:
            clock += 0.3333337
            change = then(job, clock, step)
            store.commit([change])
            job = change.job
    for history in store.histories():
        job_id = history[0].job_id
        _same_job(fold(history), store.get(job_id))
    assert {j.state for j in store.list_jobs()} >= FINAL_STATES


def test_replace_projection_rewrites_rows_from_the_log_and_keeps_leases(
    store: EventStore,
) -> None:
    for name, steps in LIFECYCLES.items():
        write(store, f"job-{name}", T0, *steps)
    truth = {j.job_id: j for j in store.list_jobs()}
    store.claim_due(T0 + 100, 1, "w1", LEASE, skip=[i for i in truth if i != "job-new"])
    assert_leased(store, "job-new", "w1", T0 + 100)
    # Damage the projection behind the log's back.
    with store.engine.begin() as conn:
        conn.execute(jobs.update().values(state="acquired", attempt=99, run={"wrong": True},
                                          next_due_at=None, external_id=None))
    assert store.get("job-succeeded") != truth["job-succeeded"]
    rebuilt = [j for j in (fold(h) for h in store.histories()) if j is not None]
    store.replace_projection(rebuilt)
    assert {j.job_id: j for j in store.list_jobs()} == truth
    assert_leased(store, "job-new", "w1", T0 + 100)
    store.replace_projection([])
    assert {j.job_id: j for j in store.list_jobs()} == truth


# --- schema -------------------------------------------------------------------------------------


def _schema_differences(store: EventStore, target: sa.MetaData) -> list[Any]:
    with store.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, target))


def test_the_migrated_schema_matches_the_tables(store: EventStore) -> None:
    assert _schema_differences(store, metadata) == []
    # The comparison does see a difference when there is one.
    changed = sa.MetaData()
    for table in metadata.tables.values():
        table.to_metadata(changed)
    changed.tables["jobs"].append_column(sa.Column("extra", sa.Integer, nullable=True))
    diffs = _schema_differences(store, changed)
    assert [d[0] for d in diffs] == ["add_column"] and diffs[0][3].name == "extra"


def head_revision() -> str:
    """The newest migration, read from the scripts themselves."""
    config = Config()
    config.set_main_option("script_location", str(files("engine.store") / "migrations"))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


def test_an_old_database_is_upgraded_with_its_history_intact(store_url: str) -> None:
    """A database written at the first migration keeps every event when it is upgraded."""
    engine = sa.create_engine(store_url)
    config = Config()
    config.set_main_option("script_location", str(files("engine.store") / "migrations"))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0001")
        conn.exec_driver_sql(
            "INSERT INTO events (job_id, seq, type, at, version, data) "
            "VALUES ('old-job', 1, 'acquired', '2026-01-01 00:00:00', 1, '{}')"
        )
    engine.dispose()
    upgraded = open_store(store_url)
    try:
        [event] = upgraded.history("old-job")
        assert (event.type, event.worker) == ("acquired", None)
        assert event.at == pytest.approx(
            datetime(2026, 1, 1, tzinfo=timezone.utc).timestamp(), abs=1e-3)
        assert _schema_differences(upgraded, metadata) == []
    finally:
        upgraded.close()


def test_migrating_again_changes_nothing(store_url: str, store: EventStore) -> None:
    job = write(store, "job-a", T0, *SUCCESS[:2])
    store.migrate()
    again = open_store(store_url)
    try:
        assert _schema_differences(again, metadata) == []
        assert again.get("job-a") == job
        assert types(again.history("job-a")) == ["acquired", "acknowledged", "submit_intended"]
        with again.engine.connect() as conn:
            versions = conn.exec_driver_sql("SELECT version_num FROM alembic_version").all()
            tables = set(sa.inspect(conn).get_table_names())
        assert [v[0] for v in versions] == [head_revision()]
        assert tables == {"alembic_version", "events", "jobs", "uploads"}
    finally:
        again.close()


def test_sqlite_is_durable_by_default(tmp_path: Any) -> None:
    """WAL with synchronous=FULL (see the durability note in engine/store/sql.py)."""
    for setting, expected in [("FULL", 2), ("normal", 1)]:
        opened = open_store(f"sqlite:///{tmp_path / setting}.db", synchronous=setting)
        try:
            with opened.engine.connect() as conn:
                assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
                assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == expected
                assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 10000
        finally:
            opened.close()
    assert os.path.exists(tmp_path / "FULL.db")


def test_the_store_knows_the_newest_migration_without_reading_the_scripts(
    store: EventStore,
) -> None:
    from engine.store.sql import HEAD_REVISION

    assert HEAD_REVISION == head_revision() == store.revision()


def test_the_store_knows_every_migration() -> None:
    config = Config()
    config.set_main_option("script_location", str(files("engine.store") / "migrations"))
    scripts = ScriptDirectory.from_config(config)
    oldest_first = [s.revision for s in scripts.walk_revisions()][::-1]
    assert list(REVISIONS) == oldest_first


def test_every_field_of_a_job_is_a_column() -> None:
    """A field without a column would be dropped silently when rows are written."""
    assert {f.name for f in fields(Job)} <= set(jobs.c.keys())


def test_the_first_recorded_upload_of_an_artifact_stands(store: EventStore) -> None:
    """Two workers (or a retry) recording the same artifact of one execution: the first row
    stands and both are told of it, on SQLite and PostgreSQL alike."""
    row = {"execution_id": "exec-1", "artifact": "BuildOutput", "job_id": "job-a",
           "bucket": "b", "object_key": "p/BuildOutput/k", "etag": '"e1"', "version_id": "v1",
           "size": 10, "sha256": "0" * 64, "kms_key_id": None, "at": T0, "worker": "w1"}
    first = store.record_upload(row)
    second = store.record_upload({**row, "job_id": "job-b", "etag": '"e2"', "worker": "w2"})
    assert first == second and second["etag"] == '"e1"' and second["job_id"] == "job-a"
    store.record_upload({**row, "artifact": "Other", "etag": '"e3"'})
    assert [u["artifact"] for u in store.uploads("exec-1")] == ["BuildOutput", "Other"]
    assert store.uploads("exec-2") == []


def test_unfinished_jobs_of_a_pipeline_execution_are_found_by_its_id(store: EventStore) -> None:
    """What an action event (engine.events) names is the pipeline execution, kept in the
    pipeline context's JSON: the lookup reads it on SQLite and PostgreSQL alike, and skips
    finished jobs."""
    for job_id, pipeline_execution in (("job-a", "pe-1"), ("job-b", "pe-2"), ("job-c", "pe-1")):
        store.commit([first(job_id, T0, f"exec-{job_id}",
                            pipeline={"pipeline_name": "demo", "stage": "Build",
                                      "pipeline_execution_id": pipeline_execution})])
    done = store.get("job-c")
    assert done is not None
    store.commit([then(done, T0 + 1, NewEvent("job_lost", {"reason": "another worker"}))])
    assert [j.job_id for j in store.unfinished_in_pipeline_execution("pe-1")] == ["job-a"]
    assert [j.job_id for j in store.unfinished_in_pipeline_execution("pe-2")] == ["job-b"]
    assert store.unfinished_in_pipeline_execution("pe-3") == []
