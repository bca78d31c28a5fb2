"""PostgreSQL for tests: a fresh database per test, on a server the suite finds or starts itself.

Where the server comes from, first match wins:

1. `CPWORKER_TEST_POSTGRES_URL`, an admin URL (a role that may CREATE DATABASE), for example
   `postgresql+psycopg://postgres@127.0.0.1:54329/postgres`. Only databases this module created
   are ever dropped, but point it at a throwaway server on loopback all the same.
2. PostgreSQL server binaries on this machine (`/usr/lib/postgresql/*/bin/initdb`): a throwaway
   cluster is created for the session (trust auth, 127.0.0.1 on a free port, its unix socket in
   its own temporary directory, fsync off), then stopped and deleted. As root the binaries run as
   the `postgres` user, since PostgreSQL refuses to run as root.
3. Neither: the tests that need PostgreSQL are skipped, with the reason. When the environment
   variable `CI` is true they fail instead: CI must really test PostgreSQL.

Use it as a pytest plugin (`pytest_plugins = ["tests.pg"]`) and ask for `postgres_url`; a test
that restarts the server asks for `postgres_server` too and calls its `restart()` (the throwaway
cluster only: a server named by the environment is not the tests' to restart).
"""

from __future__ import annotations

import glob
import importlib.util
import os
import pwd
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import NoReturn

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL

ENV_URL = "CPWORKER_TEST_POSTGRES_URL"
INITDB_GLOB = "/usr/lib/postgresql/*/bin/initdb"
DATABASE_PREFIX = "cpworker_test_"
"""Every database this module creates starts so; it drops nothing else."""

_TRUE = {"1", "true", "yes", "on"}
_START_TIMEOUT = 60


class PostgresUnavailable(Exception):
    """No PostgreSQL to test against: skipped locally, a failure in CI."""


class PostgresMisconfigured(Exception):
    """PostgreSQL was asked for explicitly and does not work: always a failure."""


def ci_requires_postgres(environ: Mapping[str, str] = os.environ) -> bool:
    """CI=true (or 1, yes, on): PostgreSQL tests must run, never be skipped."""
    return environ.get("CI", "").strip().lower() in _TRUE


def missing(reason: str, environ: Mapping[str, str] = os.environ) -> NoReturn:
    """Skip the calling test for want of PostgreSQL, or fail it when CI must test PostgreSQL."""
    if ci_requires_postgres(environ):
        pytest.fail(f"CI is set, so PostgreSQL must be tested, but {reason}", pytrace=False)
    pytest.skip(f"no PostgreSQL to test against: {reason}")


def find_bindir(pattern: str = INITDB_GLOB) -> Path | None:
    """The bin directory of the newest PostgreSQL installed, if any."""
    found = [Path(p) for p in glob.glob(pattern) if os.access(p, os.X_OK)]

    def version(initdb: Path) -> tuple[int, ...]:
        name = initdb.parent.parent.name
        return tuple(int(part) for part in name.split(".") if part.isdigit())

    return max(found, key=version).parent if found else None


def admin_url_from(text: str) -> URL:
    """The admin URL, with psycopg (3) as the driver when none is named."""
    url = sa.make_url(text)
    if url.get_backend_name() != "postgresql":
        raise PostgresMisconfigured(f"{ENV_URL} must be a postgresql:// URL, not {url.drivername}")
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    return url


class PostgresServer:
    """A server on which tests get databases of their own."""

    def __init__(self, admin_url: URL, cluster: ThrowawayCluster | None = None) -> None:
        self.admin_url = admin_url
        self._cluster = cluster
        self._admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT",
                                       poolclass=sa.NullPool)

    def check(self) -> str:
        """The server's version; raises the driver's error when it cannot be reached."""
        with self._admin.connect() as conn:
            return str(conn.exec_driver_sql("SHOW server_version").scalar())

    def wait_for_logins(self, timeout: float = 10) -> None:
        """Until the server accepts a login: pg_ctl -w waits for the socket, not for that."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.check()
                return
            except sa.exc.OperationalError as error:
                if time.monotonic() > deadline:
                    raise PostgresUnavailable(f"the server refuses logins: {error}") from error
                time.sleep(0.1)

    @property
    def restartable(self) -> bool:
        """Whether restart() can work: the server is the throwaway cluster started here."""
        return self._cluster is not None

    def restart(self) -> None:
        """Restart the server as an operator would (`pg_ctl restart -m fast -w`), on the same
        port: every session is cut (SQLSTATE 57P01), everything committed stays."""
        if self._cluster is None:
            raise PostgresUnavailable(
                f"the server comes from {ENV_URL}: only the throwaway cluster is restarted")
        self._cluster.restart()
        self.wait_for_logins()

    def create_database(self) -> URL:
        name = DATABASE_PREFIX + os.urandom(6).hex()
        with self._admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        return self.admin_url.set(database=name)

    def drop_database(self, url: URL) -> None:
        name = url.database or ""
        if not name.startswith(DATABASE_PREFIX):
            raise ValueError(f"refusing to drop {name!r}: not a database the tests created")
        with self._admin.connect() as conn:
            # FORCE: a test that failed may have left a connection open.
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def close(self) -> None:
        self._admin.dispose()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ThrowawayCluster:
    """initdb, pg_ctl start and, at the end, stop and delete: a cluster that lives for one session.

    A session killed outright (SIGKILL, a CI timeout) runs no teardown; the next session stops
    and deletes such leftovers, recognised by the pid file of a test session that is gone.
    """

    PREFIX = "cpworker-pg-"
    SESSION_PID = "session.pid"

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.as_root = os.geteuid() == 0
        # As root, /tmp itself: the postgres user must be able to reach the directory, and a
        # TMPDIR under /root would not let it.
        self.base = Path("/tmp" if self.as_root else tempfile.gettempdir())
        self._sweep_leftovers()
        self.root = Path(tempfile.mkdtemp(prefix=self.PREFIX, dir=self.base))
        (self.root / self.SESSION_PID).write_text(str(os.getpid()))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = 0
        self._started = False
        if self.as_root:
            try:
                account = pwd.getpwnam("postgres")
            except KeyError:
                shutil.rmtree(self.root)
                raise PostgresUnavailable(
                    "running as root and there is no `postgres` user to run the server as"
                ) from None
            # The server runs as postgres: it needs the directory, and nobody else does.
            os.chown(self.root, account.pw_uid, account.pw_gid)

    def _sweep_leftovers(self) -> None:
        for marker in self.base.glob(f"{self.PREFIX}*/{self.SESSION_PID}"):
            try:
                pid = int(marker.read_text().strip())
            except (OSError, ValueError):
                continue
            if _alive(pid):
                continue  # another session, still running: not ours to touch
            leftover = marker.parent
            if (leftover / "data" / "postmaster.pid").exists():
                self._run("pg_ctl", "stop", "-w", "-m", "immediate", "-D", str(leftover / "data"),
                          cwd=leftover)
            shutil.rmtree(leftover, ignore_errors=True)

    def _run(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        command: Sequence[str] = [str(self.bindir / args[0]), *args[1:]]
        if self.as_root:
            runuser = shutil.which("runuser") or shutil.which("runuser", path="/usr/sbin:/sbin")
            if runuser:
                command = [runuser, "-u", "postgres", "--", *command]
            else:
                command = ["su", "postgres", "-s", "/bin/sh", "-c", shlex.join(command)]
        env = {**os.environ, "LC_ALL": "C", "LANG": "C", "TZ": "UTC"}
        try:
            return subprocess.run(command, cwd=cwd or self.root, env=env, capture_output=True,
                                  text=True, timeout=_START_TIMEOUT + 30, check=False)
        except subprocess.TimeoutExpired as error:
            raise PostgresUnavailable(f"{args[0]} did not finish: {error}") from error

    def _log_tail(self) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-15:])
        except OSError:
            return "(no server log)"

    def start(self) -> URL:
        done = self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust",
                         "-E", "UTF8", "--no-locale", "--no-sync")
        if done.returncode != 0:
            raise PostgresUnavailable(f"initdb failed: {done.stderr.strip() or done.stdout}")
        for _ in range(3):  # the free port may be taken between finding and binding it
            self.port = _free_port()
            options = shlex.join([
                "-c", "listen_addresses=127.0.0.1", "-p", str(self.port),
                "-c", f"unix_socket_directories={self.root}",
                # A throwaway cluster: durability is the store's concern, not the tests' server.
                "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
            ])
            done = self._run("pg_ctl", "start", "-w", "-t", str(_START_TIMEOUT), "-D",
                             str(self.data), "-l", str(self.log), "-o", options)
            if done.returncode == 0:
                self._started = True
                return URL.create("postgresql+psycopg", username="postgres",
                                  host="127.0.0.1", port=self.port, database="postgres")
            if "could not bind" not in self._log_tail():
                break
        raise PostgresUnavailable(f"the throwaway cluster did not start:\n{self._log_tail()}")

    def restart(self) -> None:
        """pg_ctl restart -m fast: the options of the last start (its port) are used again."""
        if not self._started:
            raise PostgresUnavailable("the throwaway cluster is not running")
        # -l as at start: without it the server would write to pg_ctl's stdout, a pipe that
        # would then never close.
        done = self._run("pg_ctl", "restart", "-m", "fast", "-w", "-t", str(_START_TIMEOUT),
                         "-D", str(self.data), "-l", str(self.log))
        if done.returncode != 0:
            raise PostgresUnavailable(
                f"the throwaway cluster did not restart:\n{done.stderr}\n{self._log_tail()}")

    def stop(self) -> None:
        try:
            if self._started:
                # immediate: the cluster is deleted next, nothing needs a clean shutdown.
                self._run("pg_ctl", "stop", "-w", "-m", "immediate", "-D", str(self.data))
                self._started = False
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


@contextmanager
def postgres(environ: Mapping[str, str] = os.environ,
             initdb_glob: str = INITDB_GLOB) -> Iterator[PostgresServer]:
    """The server to test against, from the environment or started here; see the module doc."""
    with ExitStack() as stack:
        if importlib.util.find_spec("psycopg") is None:
            raise PostgresUnavailable(
                "the psycopg driver is not installed (pip install 'cpworker[postgres]')")
        configured = environ.get(ENV_URL, "").strip()
        if configured:
            server = PostgresServer(admin_url_from(configured))
            stack.callback(server.close)
            try:
                server.check()
            except sa.exc.OperationalError as error:
                raise PostgresMisconfigured(
                    f"{ENV_URL} is set but its server does not answer: {error.orig}"
                ) from error
            yield server
            return
        bindir = find_bindir(initdb_glob)
        if bindir is None:
            raise PostgresUnavailable(
                f"{ENV_URL} is not set and no PostgreSQL server binaries match {initdb_glob} "
                "(install the `postgresql` package, or point the variable at a server)"
            )
        cluster = ThrowawayCluster(bindir)
        stack.callback(cluster.stop)
        server = PostgresServer(cluster.start(), cluster)
        stack.callback(server.close)
        server.wait_for_logins()
        yield server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the session (skips, or fails in CI, when there is none)."""
    with ExitStack() as stack:
        try:
            server = stack.enter_context(postgres())
        except PostgresUnavailable as why:
            missing(str(why))
        except PostgresMisconfigured as why:
            pytest.fail(str(why), pytrace=False)
        yield server


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty database for one test, as a SQLAlchemy URL; dropped afterwards."""
    url = postgres_server.create_database()
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        postgres_server.drop_database(url)
