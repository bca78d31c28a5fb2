"""The queries of claim and resume read the partial indexes, never the whole jobs table.

A finished job has no due time and no lease, and the scheduling indexes hold unfinished (or
leased) jobs only (migration 0007), so what a claim or a restart reads stays the size of the
work in flight however many finished jobs the log keeps. Whether a query reaches a partial
index depends on its WHERE implying the index's (SQLite takes that literally), so the plans
are checked here on the SQL the store really sends: captured from its own methods while they
run, then explained (EXPLAIN QUERY PLAN on SQLite, EXPLAIN on PostgreSQL) with the same
parameters. No timing: a plan is the same on a slow machine.

The checks are shown to bite: with the indexes dropped, or rebuilt without their predicates,
or with the predicate taken out of a query, the same checks find fault.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from engine.store import Change, EventStore
from engine.store.sql import ClaimRequest
from engine.store.upkeep import prune_batch
from tests.store.builders import LEASE, RETRYING, SUCCESS, T0, first, then

DUE = {"ix_jobs_unfinished_due", "ix_jobs_unfinished_action_due"}
LEASED = {"ix_jobs_leased_owner"}
PARTIAL = {
    "ix_jobs_unfinished_due": "next_due_at IS NOT NULL",
    "ix_jobs_unfinished_action_due": "next_due_at IS NOT NULL",
    "ix_jobs_leased_owner": "lease_owner IS NOT NULL",
}
NOW = T0 + 10_000.0
FINISHED = "ix_jobs_finished_updated"
"""Finished jobs by when they finished (migration 0008): what prune reads."""


@dataclass(frozen=True)
class Sent:
    """One statement as the driver received it."""

    sql: str
    parameters: Any


@contextmanager
def captured(store: EventStore) -> Iterator[list[Sent]]:
    """Every statement the store sends while the block runs (its connections' cursors)."""
    sent: list[Sent] = []

    def listen(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any,
               executemany: bool) -> None:
        sent.append(Sent(statement, parameters))

    sa.event.listen(store.engine, "before_cursor_execute", listen)
    try:
        yield sent
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", listen)


def plan(store: EventStore, sent: Sent) -> list[str]:
    """The plan of `sent`, one line per node, with the parameters it was sent with.

    On PostgreSQL sequential scans are switched off: a table of a few dozen rows is read
    whole more cheaply than through any index, which says nothing about a large one; with
    the option off, the planner still scans when no index can serve the query."""
    with store.engine.connect() as conn, conn.begin() as transaction:
        if store.dialect == "postgresql":
            conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
            rows = conn.exec_driver_sql("EXPLAIN " + sent.sql, sent.parameters).all()
            lines = [str(row[0]) for row in rows]
        else:
            rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sent.sql, sent.parameters).all()
            lines = [str(row[-1]) for row in rows]
        transaction.rollback()
    return lines


def faults(lines: Sequence[str], expected: set[str]) -> list[str]:
    """What is wrong with a plan: a full scan of jobs or events (a scan of a partial index
    is not one: it holds the work in flight only), or none of the `expected` indexes used."""
    found = []
    for line in lines:
        if re.search(r"Seq Scan on (jobs|events)\b", line):
            found.append(f"full scan: {line.strip()}")
        scan = re.match(r"SCAN (jobs|events)\b(.*)", line.strip())
        if scan and not any(name in scan.group(2) for name in PARTIAL):
            found.append(f"full scan: {line.strip()}")
    if expected and not any(name in line for line in lines for name in expected):
        found.append(f"none of {sorted(expected)} used")
    return found


def reading_jobs(sent: Sequence[Sent]) -> list[Sent]:
    return [s for s in sent if re.search(r"\b(FROM|UPDATE) jobs\b", s.sql)]


def _dead_owner() -> str:
    """A lease owner whose process is gone: what a kill -9 leaves behind."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    return f"{socket.gethostname()}:{gone.pid}:dead00"


def _fill(store: EventStore) -> str:
    """Finished jobs, jobs in flight of two actions, and leases left by a dead worker."""
    changes: list[Change] = []
    for n in range(60):
        change = first(f"done-{n:03d}", T0 + n, f"exec-done-{n}")
        changes += [change, then(change.job, T0 + n + 1, *SUCCESS)]
    for n in range(30):
        action = "ledger" if n % 3 else "other"
        change = first(f"live-{n:03d}", T0 + n, f"exec-live-{n}", action=action)
        changes += [change, then(change.job, T0 + n + 1, *RETRYING)]
    for change in changes:
        store.commit([change])
    dead = _dead_owner()
    store.claim_due(NOW, 5, dead, LEASE)
    return dead


@dataclass(frozen=True)
class Query:
    """A store call on the claim or resume path and the indexes its reads of jobs must use."""

    name: str
    call: Callable[[EventStore], object]
    expected: set[str]
    first_only: bool = False
    """Only its first statement picks rows by the index (the rest pick them by key)."""


QUERIES = [
    # A restart: leases of the dead worker freed, the unfinished jobs counted (capacity).
    Query("release_dead_leases", lambda s: s.release_dead_leases(), LEASED),
    Query("count_active", lambda s: s.count_active(["ledger"]), DUE),
    Query("count_active, every action", lambda s: s.count_active(), DUE),
    # Each scheduler round: the claim in the commit's transaction, then the wait for the next.
    Query("claim", lambda s: s.commit([], claim=ClaimRequest(
        NOW, 8, "w-live", LEASE, ("live-001",), ["ledger"], {})), DUE, first_only=True),
    Query("claim, every action", lambda s: s.claim_due(NOW, 8, "w-live", LEASE), DUE,
          first_only=True),
    Query("earliest_due", lambda s: s.earliest_due(NOW, ["ledger"]), DUE),
    Query("earliest_due, every action", lambda s: s.earliest_due(NOW), DUE),
    Query("count_leased", lambda s: s.count_leased("w-live"), LEASED),
]


def _checked(store: EventStore) -> dict[str, list[str]]:
    """Each query's faults, over every statement it sent that reads or updates jobs."""
    problems: dict[str, list[str]] = {}
    for query in QUERIES:
        with captured(store) as sent:
            query.call(store)
        statements = reading_jobs(sent)
        assert statements, f"{query.name} sent nothing to jobs"
        found = faults(plan(store, statements[0]), query.expected)
        for later in statements[1:]:
            found += faults(plan(store, later), set() if query.first_only else query.expected)
        problems[query.name] = found
    return problems


def _index_definitions(store: EventStore) -> dict[str, str]:
    with store.engine.connect() as conn:
        if store.dialect == "postgresql":
            rows = conn.exec_driver_sql(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'jobs'").all()
        else:
            rows = conn.exec_driver_sql(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'jobs'"
            ).all()
    return {str(name): str(sql) for name, sql in rows}


def _predicates_missing(store: EventStore) -> list[str]:
    """The partial indexes absent, or present without their predicate."""
    defined = _index_definitions(store)
    missing = []
    for name, predicate in PARTIAL.items():
        column = predicate.split()[0]
        where = re.search(r"\bWHERE\b(.*)", defined.get(name, ""), re.IGNORECASE | re.DOTALL)
        if where is None or not re.search(rf"\(*{column}\)* IS NOT NULL", where.group(1),
                                          re.IGNORECASE):
            missing.append(name)
    return missing


def test_the_hot_indexes_hold_unfinished_jobs_only(store: EventStore) -> None:
    _fill(store)
    assert _predicates_missing(store) == []
    # A finished job is in none of them: no due time, no lease.
    with store.engine.connect() as conn:
        finished = conn.exec_driver_sql(
            "SELECT count(*) FROM jobs WHERE state = 'succeeded' "
            "AND (next_due_at IS NOT NULL OR lease_owner IS NOT NULL)").scalar()
    assert finished == 0


def test_claim_and_resume_read_the_partial_indexes(store: EventStore) -> None:
    _fill(store)
    assert _checked(store) == {query.name: [] for query in QUERIES}


def test_the_plan_check_finds_the_indexes_gone(store: EventStore) -> None:
    """Without the partial indexes the same checks fail: they can catch a regression."""
    _fill(store)
    with store.engine.begin() as conn:
        for name in PARTIAL:
            conn.execute(sa.text(f"DROP INDEX {name}"))
    problems = _checked(store)
    assert all(problems.values()), problems
    assert sorted(_predicates_missing(store)) == sorted(PARTIAL)


def test_the_predicate_check_finds_plain_indexes(store: EventStore) -> None:
    """Indexes of the same names without their predicates (every finished job in them) are
    found out, though the plans would still name them."""
    _fill(store)
    with store.engine.begin() as conn:
        for name, predicate in PARTIAL.items():
            conn.execute(sa.text(f"DROP INDEX {name}"))
            columns = "action, next_due_at" if "action" in name else predicate.split()[0]
            conn.execute(sa.text(f"CREATE INDEX {name} ON jobs ({columns})"))
    assert sorted(_predicates_missing(store)) == sorted(PARTIAL)


def test_a_query_whose_where_misses_the_predicate_is_found_out(store: EventStore) -> None:
    """count_active's SQL with its `next_due_at IS NOT NULL` taken out no longer implies the
    partial indexes' predicate: its plan reads the whole table, and the check says so."""
    _fill(store)
    with captured(store) as sent:
        store.count_active(["ledger"])
    [statement] = reading_jobs(sent)
    without, removed = re.subn(r"jobs\.next_due_at IS NOT NULL AND ", "", statement.sql)
    assert removed == 1, statement.sql
    assert faults(plan(store, Sent(without, statement.parameters)), DUE)


def _prune_faults(store: EventStore) -> list[str]:
    """What is wrong with the plan of prune's oldest-first scan, the first statement of a
    batch: it must read the finished jobs' partial index, never the whole table."""
    with captured(store) as sent:
        prune_batch(store, NOW, 5)
    first_read = reading_jobs(sent)[0]
    found = []
    for line in plan(store, first_read):
        if re.search(r"Seq Scan on jobs\b", line) or (
                re.match(r"SCAN jobs\b", line.strip()) and FINISHED not in line):
            found.append(f"full scan: {line.strip()}")
    if not any(FINISHED in line for line in plan(store, first_read)):
        found.append(f"{FINISHED} not used")
    return found


def test_prune_reads_the_oldest_finished_jobs_through_their_partial_index(
        store: EventStore) -> None:
    _fill(store)
    assert _prune_faults(store) == []
    assert re.search(r"WHERE.*next_due_at IS NULL",
                     _index_definitions(store)[FINISHED], re.IGNORECASE | re.DOTALL)


def test_the_prune_plan_check_finds_the_index_gone(store: EventStore) -> None:
    _fill(store)
    with store.engine.begin() as conn:
        conn.execute(sa.text(f"DROP INDEX {FINISHED}"))
    assert _prune_faults(store)
