"""What the store raises when the database fails: StoreUnavailable for what passes, StoreFailure
for what does not, and never half a batch written. Real failures of real databases: a file over
its size limit or locked by another process, a directory gone, PostgreSQL restarted, refusing a
login, or failing a statement with a given SQLSTATE from a trigger.
"""

from __future__ import annotations

import socket
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from engine.errors import ConcurrencyConflict, ConfigurationProblem, StoreFailure, StoreUnavailable
from engine.projection import NewEvent
from engine.store import EventStore, open_store
from tests.pg import PostgresServer
from tests.store.builders import LEASE, T0, first, ids, then, types, write

BIG = "x" * 400_000
"""A payload of about a hundred pages: enough to run a SQLite file past a small size limit."""


@contextmanager
def pragma_on_new_connections(store: EventStore, pragma: str) -> Iterator[None]:
    """Every connection the store opens from now on runs `pragma` after the store's own set-up
    (a real SQLite setting, such as a small size limit), until the block ends."""

    def apply(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute(f"PRAGMA {pragma}")

    store.engine.dispose()
    sa.event.listen(store.engine, "connect", apply)
    try:
        yield
    finally:
        sa.event.remove(store.engine, "connect", apply)
        store.engine.dispose()


@contextmanager
def failing_insert(store: EventStore, job_id: str, sqlstate: str) -> Iterator[None]:
    """PostgreSQL raises `sqlstate` when the jobs row of `job_id` is inserted, mid-batch."""
    with store.engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE FUNCTION cpworker_fail() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "RAISE EXCEPTION 'cpworker test: failing with %%', TG_ARGV[0] "
            "USING ERRCODE = TG_ARGV[0]; END $$")
        conn.exec_driver_sql(
            f"CREATE TRIGGER cpworker_fail BEFORE INSERT ON jobs FOR EACH ROW "
            f"WHEN (NEW.job_id = '{job_id}') EXECUTE FUNCTION cpworker_fail('{sqlstate}')")
    try:
        yield
    finally:
        with store.engine.begin() as conn:
            conn.exec_driver_sql("DROP TRIGGER cpworker_fail ON jobs")
            conn.exec_driver_sql("DROP FUNCTION cpworker_fail")


@contextmanager
def a_full_database(store: EventStore) -> Iterator[None]:
    """Writing past a point fails as a full disk does: SQLite at a size limit it was given
    (max_page_count: SQLITE_FULL), PostgreSQL with disk_full (53100) from a trigger."""
    if store.dialect == "postgresql":
        with failing_insert(store, "job-z", "53100"):
            yield
        return
    with store.engine.connect() as conn:
        pages = conn.exec_driver_sql("PRAGMA page_count").scalar()
    with pragma_on_new_connections(store, f"max_page_count={int(pages or 0) + 20}"):
        yield


def test_a_failed_write_leaves_nothing_of_the_batch(store: EventStore) -> None:
    moving = write(store, "job-m", T0)
    batch = [  # in commit order: job-a and job-m are written before job-z fails
        first("job-a", T0 + 1),
        then(moving, T0 + 1, NewEvent("acknowledged")),
        first("job-z", T0 + 1, run={"blob": BIG}),
    ]
    with a_full_database(store), pytest.raises(StoreUnavailable) as raised:
        store.commit(batch)
    why = "53100" if store.dialect == "postgresql" else "database or disk is full"
    assert why in str(raised.value) and "retries by itself" in str(raised.value)
    assert isinstance(raised.value.__cause__, sa.exc.DBAPIError)
    assert store.get("job-a") is None and store.history("job-a") == []
    assert store.get("job-z") is None and store.history("job-z") == []
    assert store.get("job-m") == moving and types(store.history("job-m")) == ["acquired"]
    # Once there is room again, the very same batch goes through.
    store.commit(batch)
    assert [store.get(c.job.job_id) for c in batch] == [c.job for c in batch]


def test_a_conflict_is_still_a_conflict(store: EventStore) -> None:
    write(store, "job-a", T0)
    with pytest.raises(ConcurrencyConflict):
        store.commit([first("job-a", T0 + 1)])


# --- SQLite -------------------------------------------------------------------------------------


def test_a_locked_sqlite_file_is_unavailable_until_the_lock_goes(
    sqlite_store: EventStore,
) -> None:
    store = sqlite_store
    write(store, "job-a", T0)
    other = sqlite3.connect(store.engine.url.database or "", isolation_level=None)
    try:
        # busy_timeout shortened from the store's 10 s, or the test would wait it out.
        with pragma_on_new_connections(store, "busy_timeout=200"):
            other.execute("BEGIN IMMEDIATE")  # another process's long write transaction
            with pytest.raises(StoreUnavailable, match="database is locked"):
                store.commit([first("job-b", T0)])
            assert ids(store.list_jobs()) == ["job-a"]  # reads go on (WAL)
            other.execute("ROLLBACK")
            store.commit([first("job-b", T0)])
    finally:
        other.close()
    assert ids(store.list_jobs()) == ["job-a", "job-b"]


def test_a_sqlite_file_in_a_missing_directory_is_said_before_opening(tmp_path: Path) -> None:
    missing = tmp_path / "no such directory"
    with pytest.raises(ConfigurationProblem, match="does not exist") as raised:
        open_store(f"sqlite:///{missing / 'state.db'}")
    assert f"the directory {missing} of the state database" in str(raised.value)
    assert not missing.exists()


def test_a_sqlite_file_that_cannot_be_opened_at_start_is_a_failure(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "state.db").mkdir()  # a directory where the file should be: SQLite cannot open it
    with pytest.raises(ConfigurationProblem, match="is a directory, not a database file"):
        open_store(f"sqlite:///{locked / 'state.db'}")


def test_a_sqlite_file_that_cannot_be_opened_later_is_unavailable(tmp_path: Path) -> None:
    home = tmp_path / "volume"
    home.mkdir()
    store = open_store(f"sqlite:///{home / 'state.db'}")
    try:
        job = write(store, "job-a", T0)
        store.engine.dispose()  # new connections from here on
        home.rename(tmp_path / "unmounted")
        with pytest.raises(StoreUnavailable, match="unable to open database file"):
            store.get("job-a")
        with pytest.raises(StoreUnavailable):
            store.commit([first("job-b", T0)])
        (tmp_path / "unmounted").rename(home)
        assert store.get("job-a") == job
        store.commit([first("job-b", T0)])
    finally:
        store.close()


def test_other_sqlite_errors_stop_the_worker(sqlite_store: EventStore) -> None:
    """A broken schema does not heal by waiting: one line, not a retry loop."""
    write(sqlite_store, "job-a", T0)
    with sqlite_store.engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE jobs RENAME TO jobs_moved")
    with pytest.raises(StoreFailure, match="no such table: jobs"):
        sqlite_store.get("job-a")


# --- PostgreSQL ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("sqlstate", "kind"), [
    ("40001", StoreUnavailable),  # serialization_failure
    ("40P01", StoreUnavailable),  # deadlock_detected
    ("57P01", StoreUnavailable),  # admin_shutdown
    ("57P03", StoreUnavailable),  # cannot_connect_now
    ("08006", StoreUnavailable),  # connection_failure
    ("53300", StoreUnavailable),  # too_many_connections
    ("58030", StoreUnavailable),  # io_error
    ("57014", StoreUnavailable),  # query_canceled (statement_timeout)
    ("28P01", StoreFailure),  # invalid_password
    ("28000", StoreFailure),  # invalid_authorization_specification
    ("3D000", StoreFailure),  # invalid_catalog_name
    ("42501", StoreFailure),  # insufficient_privilege
    ("XX000", StoreFailure),  # internal_error: not known to pass
])
def test_postgresql_errors_are_sorted_by_sqlstate(
    pg_store: EventStore, sqlstate: str, kind: type[Exception],
) -> None:
    with failing_insert(pg_store, "job-z", sqlstate), pytest.raises(kind) as raised:
        pg_store.commit([first("job-a"), first("job-z")])
    assert sqlstate in str(raised.value)
    assert pg_store.list_jobs() == []


def test_postgresql_refusing_a_login_is_a_failure(postgres_url: str) -> None:
    url = sa.make_url(postgres_url)
    with pytest.raises(StoreFailure, match="database does not exist"):
        open_store(url.set(database="cpworker_test_nowhere").render_as_string(False))
    with pytest.raises(StoreFailure, match="refused the role"):
        open_store(url.set(username="nobody_at_all").render_as_string(False))


def test_postgresql_without_privileges_is_a_failure(
    postgres_url: str, pg_store: EventStore,
) -> None:
    role = f"cpworker_reader_{sa.make_url(postgres_url).database}"[:63]
    with pg_store.engine.begin() as conn:
        conn.exec_driver_sql(f'CREATE ROLE "{role}" LOGIN')
    try:
        url = sa.make_url(postgres_url).set(username=role).render_as_string(False)
        with pytest.raises(StoreFailure, match="lacks a privilege") as raised:
            open_store(url)
        assert "42501" in str(raised.value)
    finally:
        pg_store.engine.dispose()
        with pg_store.engine.begin() as conn:
            conn.exec_driver_sql(f'DROP OWNED BY "{role}"')
            conn.exec_driver_sql(f'DROP ROLE "{role}"')


def test_postgresql_not_answering_is_unavailable(postgres_url: str) -> None:
    with socket_nobody_listens_on() as port:
        url = sa.make_url(postgres_url).set(port=port).render_as_string(False)
        with pytest.raises(StoreUnavailable, match="cannot be reached"):
            open_store(url)
        store = open_store(url, migrate=False)
        try:
            with pytest.raises(StoreUnavailable):
                store.get("job-a")
        finally:
            store.close()


@contextmanager
def socket_nobody_listens_on() -> Iterator[int]:
    """A loopback port bound (so no one else takes it) but not listening: connections are
    refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


def test_the_store_carries_on_after_a_postgresql_restart(
    postgres_server: PostgresServer, postgres_url: str,
) -> None:
    """pg_ctl restart -m fast: what is in progress fails as StoreUnavailable, what follows
    works on new connections (pre-ping), and everything committed is there."""
    if not postgres_server.restartable:
        pytest.skip("the PostgreSQL server is not the throwaway cluster: not ours to restart")
    store = open_store(postgres_url)
    try:
        store.commit([first(f"job-{i:03d}", T0 + i) for i in range(300)])
        assert ids(store.claim_due(T0 + 1, 2, "w1", LEASE)) == ["job-000", "job-001"]
        before = store.list_jobs()
        streaming = store.histories()  # a read in progress across the restart
        assert next(streaming)[0].job_id == "job-000"
        postgres_server.restart()
        with pytest.raises(StoreUnavailable):
            list(streaming)
        try:
            after = store.list_jobs()
        except StoreUnavailable:  # allowed once; the call after it must work
            after = store.list_jobs()
        assert after == before
        store.commit([first("job-new", T0)])
        assert store.get("job-new") is not None
        # The leases taken before the restart hold: w2 gets only what nobody holds.
        assert ids(store.claim_due(T0 + 1, 5, "w2", LEASE)) == ["job-new"]
    finally:
        store.close()
