"""Opening the store: a URL becomes an EventStore, for the worker or for a reader.

The worker (`cpworker run`) creates and migrates its database. A reader (`jobs`, `inspect`,
`replay`) and the upkeep commands (`prune`, `rebuild`) only open one that exists, at this
cpworker's schema: a mistyped path must say so, not answer "no jobs" from a new empty file, and
a reader must work where it may not write (a copy on a read-only volume, another user's file).
"""

from __future__ import annotations

import os
import sqlite3
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from engine import defaults
from engine.errors import ConfigurationProblem, StoreFailure
from engine.store.sql import HEAD_REVISION, PG_CONNECT_TIMEOUT, REVISIONS, EventStore

SQLITE_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")

_RUN_FIRST = "start `cpworker run` against it once (it migrates), or use the cpworker that wrote it"


def open_store(url: str, *, synchronous: str = defaults.SQLITE_SYNCHRONOUS, migrate: bool = True,
               pool_size: int = defaults.DB_POOL_SIZE, existing: bool = False,
               read_only: bool = False) -> EventStore:
    """Open the store at a SQLAlchemy URL, e.g. sqlite:///state.db.

    By default (the worker) the database is created if need be and migrated. `existing`: it
    must already hold cpworker's tables at this code's schema, and is neither created nor
    migrated. `read_only` (implies `existing`): no write can happen, and on SQLite the file is
    opened read-only, so it can be read where it cannot be written.

    Raises ConfigurationProblem for a URL or a path that names nothing usable, StoreFailure when
    the database refuses us for good (see engine.store.errors) or is at another schema,
    StoreUnavailable when it cannot be reached now.
    """
    existing = existing or read_only
    if "://" not in url:
        raise ConfigurationProblem(
            f"{url!r} is not a database URL",
            fix="use sqlite:///path/to/state.db or postgresql+psycopg://user@host/dbname",
        )
    synchronous = synchronous.upper()
    if synchronous not in SQLITE_SYNCHRONOUS:
        raise ConfigurationProblem(
            f"unknown SQLite synchronous setting {synchronous!r}",
            fix=f"use one of {', '.join(SQLITE_SYNCHRONOUS)}",
        )
    try:
        parsed = sa.make_url(url)
        backend = parsed.get_backend_name()
    except sa.exc.ArgumentError as error:
        raise ConfigurationProblem(f"cannot read the database URL {url!r}: {error}",
                                   fix="use sqlite:///path/to/state.db or "
                                   "postgresql+psycopg://user@host/dbname") from error
    path = parsed.database if backend == "sqlite" else None
    if path and path != ":memory:" and not path.startswith("file:"):
        _check_sqlite_path(path, existing)
    try:
        engine = _engine(url, backend, read_only, path, pool_size)
    except (sa.exc.ArgumentError, ImportError) as error:
        raise ConfigurationProblem(
            f"cannot open database {url!r}: {error}",
            fix="check the URL; for PostgreSQL install the extra: pip install -e '.[postgres]'",
        ) from error
    if engine.dialect.name == "sqlite":
        _sqlite_setup(engine, synchronous, read_only)
    store = EventStore(engine)
    if existing:
        _check_schema(store, url)
    elif migrate:
        store.migrate()
    return store


def _check_sqlite_path(path: str, existing: bool) -> None:
    if existing and not os.path.exists(path):
        raise ConfigurationProblem(
            f"there is no state database at {path}",
            fix="check --db (or CPWORKER_DB); `cpworker run` creates it on its first start")
    directory = os.path.dirname(os.path.abspath(path))
    if not existing and not os.path.isdir(directory):
        raise ConfigurationProblem(
            f"the directory {directory} of the state database does not exist",
            fix="create it, or point --db at a file in a directory that exists")
    if os.path.isdir(path):
        raise ConfigurationProblem(f"{path} is a directory, not a database file",
                                   fix=f"use e.g. --db sqlite:///{path.rstrip('/')}/state.db")


def _engine(url: str, backend: str, read_only: bool, path: str | None,
            pool_size: int) -> Engine:
    postgres = backend == "postgresql"
    # A host that drops packets must fail a connection in seconds (a StoreUnavailable the
    # worker backs off from), not after the operating system's TCP timeout of minutes.
    connect_args: dict[str, Any] = {"connect_timeout": PG_CONNECT_TIMEOUT} if postgres else {}
    if postgres and read_only:
        # Every transaction of a reader is read-only on the server itself.
        connect_args["options"] = "-c default_transaction_read_only=on"
    if read_only and backend == "sqlite" and path and path != ":memory:":
        # QueuePool as for any file ("sqlite://" alone would mean one shared in-memory
        # connection per thread, and a read nested in another would share its transaction).
        return sa.create_engine("sqlite://", creator=lambda: _read_only(path),
                                poolclass=sa.pool.QueuePool, pool_size=max(1, pool_size))
    # Pre-ping on PostgreSQL: after a server restart every pooled connection is dead, and
    # without it each would fail one transaction before the pool let it go.
    return sa.create_engine(url, future=True, pool_pre_ping=postgres,
                            connect_args=connect_args, pool_size=max(1, pool_size))


def _read_only(path: str) -> sqlite3.Connection:
    """The file opened read-only. A file in WAL mode in a directory this user cannot write
    (no -shm can be made) opens only as immutable: a snapshot, which in such a place no worker
    can be changing (it could not write there either)."""
    plain = f"file:{quote(path)}?mode=ro"
    conn = sqlite3.connect(plain, uri=True, check_same_thread=False)
    try:
        conn.execute("PRAGMA schema_version").fetchone()
        return conn
    except sqlite3.OperationalError as error:
        conn.close()
        if "readonly" not in str(error) and "unable to open" not in str(error):
            raise
    return sqlite3.connect(plain + "&immutable=1", uri=True, check_same_thread=False)


def _check_schema(store: EventStore, url: str) -> None:
    revision = store.revision()
    if revision == HEAD_REVISION:
        return
    if revision is None:
        raise StoreFailure(f"{_shown(url)} holds no cpworker state (no schema in it)",
                           fix="check --db (or CPWORKER_DB): it names another database")
    if revision in REVISIONS:
        raise StoreFailure(f"the state database is at schema {revision}, older than this "
                           f"cpworker ({HEAD_REVISION})", fix=_RUN_FIRST)
    raise StoreFailure(f"the state database is at schema {revision}, newer than this cpworker "
                       f"({HEAD_REVISION})", fix="upgrade cpworker, or point --db at another "
                       "database")


def _shown(url: str) -> str:
    """The URL without its password, for a message."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "the database"


def _sqlite_setup(engine: Engine, synchronous: str, read_only: bool) -> None:
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves (below)
        cursor = dbapi_connection.cursor()
        # The busy timeout first: switching a new file to WAL takes a lock that workers
        # starting together wait for.
        cursor.execute("PRAGMA busy_timeout=10000")
        if not read_only:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Writers take the lock up front: a deferred transaction that later upgrades to a write
        # can fail with SQLITE_BUSY at once, whatever the busy timeout.
        plain = read_only or conn.get_execution_options().get("cpworker_read", False)
        conn.exec_driver_sql("BEGIN" if plain else "BEGIN IMMEDIATE")


__all__ = ["SQLITE_SYNCHRONOUS", "open_store"]
