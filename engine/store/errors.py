"""Driver errors of the state database, sorted into "retry later" and "stop": one place decides.

Every transaction and every read of the store passes its errors through `translate`, so callers
see three failures only: ConcurrencyConflict (a duplicate key: another writer came first; made in
sql.py, which knows the jobs), StoreUnavailable (transient: the same call can succeed later) and
StoreFailure (permanent: stop the worker with one line). Whichever it is, a failed transaction
wrote nothing.

PostgreSQL is read by SQLSTATE (psycopg 3: `error.orig.sqlstate`; codes from the "PostgreSQL
Error Codes" appendix). A connection refused before the server said anything has no SQLSTATE,
and neither has a FATAL at login (psycopg 3 keeps only libpq's message then), so those are read
by their text. SQLite has no SQLSTATE either: sqlite3 reports its result code as the message.
"""

from __future__ import annotations

import re
import sqlite3

from sqlalchemy import exc

from engine.errors import StoreFailure, StoreUnavailable

_RETRIED = "none needed if it passes: cpworker retries by itself; if it lasts, "

_PG_TRANSIENT_CLASSES = {
    "08": "the connection to PostgreSQL failed",  # connection_exception
    "40": "PostgreSQL rolled the transaction back",  # 40001 serialization_failure, 40P01 deadlock
    "53": "PostgreSQL is short of resources",  # 53100 disk_full, 53200 oom, 53300 too many conns
    "58": "PostgreSQL had a system error",  # 58030 io_error
}
_PG_TRANSIENT = {
    "57P01": "PostgreSQL is shutting down",  # admin_shutdown: pg_ctl stop/restart, terminate
    "57P02": "PostgreSQL crashed",  # crash_shutdown
    "57P03": "PostgreSQL is starting up",  # cannot_connect_now
    "57P05": "PostgreSQL closed an idle session",  # idle_session_timeout
    "57014": "PostgreSQL cancelled a statement",  # query_canceled: statement_timeout
    "55P03": "a lock was not available in time",  # lock_not_available: lock_timeout
}
_PG_PERMANENT = {
    "28P01": ("PostgreSQL refused the password", "check the user and password in --db"),
    "28000": ("PostgreSQL refused the role",
              "check the user in --db, and pg_hba.conf on the server"),
    "3D000": ("the database does not exist", "create it, or correct its name in --db"),
    "42501": ("the database role lacks a privilege",
              "grant the role CONNECT on the database and all privileges on its tables"),
}
"""28P01 invalid_password, 28000 invalid_authorization_specification, 3D000
invalid_catalog_name, 42501 insufficient_privilege."""

_PG_LOGIN_REFUSED = [
    (re.compile(r"password authentication failed"), "28P01"),
    (re.compile(r"no pg_hba\.conf entry|role \".*\" does not exist|not permitted to log in"),
     "28000"),
    (re.compile(r"database \".*\" does not exist"), "3D000"),
    (re.compile(r"permission denied"), "42501"),
]
"""FATALs at login, which arrive without a SQLSTATE (see the module doc)."""

_SQLITE_TRANSIENT = {
    "database is locked": (  # SQLITE_BUSY, past busy_timeout
        "another program holds a write lock on the SQLite file",
        "find the program that keeps a long transaction open on it"),
    "database table is locked": (  # SQLITE_LOCKED
        "another connection holds a lock on the SQLite file",
        "find the program that keeps a long transaction open on it"),
    "database or disk is full": (  # SQLITE_FULL
        "the volume holding the SQLite file is full", "free space on it"),
    "disk i/o error": (  # SQLITE_IOERR
        "reading or writing the SQLite file failed", "check the disk and the file system"),
    "unable to open database file": (  # SQLITE_CANTOPEN, once the store had opened it
        "the SQLite file (or its -wal, -shm) cannot be opened now",
        "check that its directory is still there, writable and not full"),
}


def translate(
    error: exc.DBAPIError | exc.TimeoutError, *, started: bool = True
) -> StoreUnavailable | StoreFailure:
    """The cpworker error for a driver error; `started`: the store has reached the database before.

    Not for IntegrityError: the store turns that into ConcurrencyConflict itself.
    """
    if isinstance(error, exc.TimeoutError):  # the pool had no free connection in time
        return _unavailable("no database connection was free in time", str(error),
                            "check for a stuck thread holding connections")
    driver = error.orig
    text = _first_line(driver)
    sqlstate = getattr(driver, "sqlstate", None)
    if error.connection_invalidated:
        # SQLAlchemy recognised a disconnect: the pool drops the connection, the next one is new.
        return _unavailable("the connection to the database was lost",
                            f"{sqlstate}: {text}" if sqlstate else text,
                            "check that the database server is running and reachable")
    if isinstance(driver, sqlite3.Error):
        return _sqlite(text, started)
    if isinstance(sqlstate, str) and sqlstate:
        return _postgres(sqlstate, text)
    if isinstance(error, (exc.OperationalError, exc.InterfaceError)):
        # No SQLSTATE: the connection failed before or during login (see the module doc).
        for line in str(driver).splitlines():  # libpq tells of every address it tried
            for pattern, code in _PG_LOGIN_REFUSED:
                if pattern.search(line):
                    return _postgres(code, line.strip())
        return _unavailable("the database server cannot be reached", text,
                            "check that it is running and that --db names the right host and "
                            "port")
    return _failure(text)


def is_missing_table(error: exc.DBAPIError) -> bool:
    """A query on a table that is not there: a new database, before the first migration."""
    if getattr(error.orig, "sqlstate", None) == "42P01":  # undefined_table
        return True
    return isinstance(error.orig, sqlite3.OperationalError) and "no such table" in str(error.orig)


def _sqlite(text: str, started: bool) -> StoreUnavailable | StoreFailure:
    lowered = text.lower()
    for key, (what, hint) in _SQLITE_TRANSIENT.items():
        if key in lowered:
            if key == "unable to open database file" and not started:
                # At start it is a wrong path or a missing directory, which waiting won't fix.
                return StoreFailure(f"cannot open the SQLite file ({text})",
                                    fix="check that its directory exists and is writable")
            return _unavailable(what, text, hint)
    if "file is not a database" in lowered:  # SQLITE_NOTADB
        return StoreFailure("the file --db names is not a SQLite database (nor a cpworker one)",
                            fix="check --db (or CPWORKER_DB): it names some other file")
    if "malformed" in lowered:  # SQLITE_CORRUPT: "database disk image is malformed"
        return StoreFailure(f"the SQLite file is damaged ({text})",
                            fix="restore it from a backup; `sqlite3 FILE .recover` may save "
                            "what it holds")
    if "readonly database" in lowered:  # SQLITE_READONLY
        return StoreFailure(f"the SQLite file is read-only ({text})",
                            fix="let the worker's user write the file and its directory")
    return _failure(text)


def _postgres(sqlstate: str, text: str) -> StoreUnavailable | StoreFailure:
    if sqlstate in _PG_PERMANENT:
        refused, fix = _PG_PERMANENT[sqlstate]
        return StoreFailure(f"{refused} ({sqlstate}: {text})", fix=fix)
    passing = _PG_TRANSIENT.get(sqlstate) or _PG_TRANSIENT_CLASSES.get(sqlstate[:2])
    if passing is not None:
        return _unavailable(passing, f"{sqlstate}: {text}", "check the PostgreSQL server's log")
    return _failure(f"{sqlstate}: {text}")


def _unavailable(what: str, text: str, hint: str) -> StoreUnavailable:
    return StoreUnavailable(f"the state database is unavailable: {what} ({text})",
                            fix=_RETRIED + hint)


def _failure(text: str) -> StoreFailure:
    # Anything not known to pass (a syntax error, a missing column, a corrupt file) would fail
    # the same way on every retry: better one clear line than a worker spinning on it.
    return StoreFailure(f"the state database failed ({text})",
                        fix="this does not pass by waiting; see the error, and the database's log")


def _first_line(driver: BaseException | None) -> str:
    lines = [line.strip() for line in str(driver).splitlines() if line.strip()]
    return lines[0] if lines else type(driver).__name__
