"""Restarting the test suite's PostgreSQL under running workers, as an operator's restart does."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.pg import PostgresServer, ThrowawayCluster, find_bindir


def restart(server: PostgresServer) -> float:
    """`pg_ctl restart -m fast` of the server; returns the seconds it took.

    Uses `PostgresServer.restart()` when tests/pg.py has it; until then pg_ctl is called here
    the same way, on the throwaway cluster this session started (found by its data directory).
    A server given by CPWORKER_TEST_POSTGRES_URL is not ours to restart: the test is skipped.
    """
    started = time.monotonic()
    own = getattr(server, "restart", None)
    if callable(own):
        own()
        return time.monotonic() - started
    engine = sa.create_engine(server.admin_url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            data = Path(str(conn.exec_driver_sql("SHOW data_directory").scalar()))
    finally:
        engine.dispose()
    bindir = find_bindir()
    if bindir is None or not data.is_dir() or not data.parent.name.startswith(
            ThrowawayCluster.PREFIX):
        pytest.skip("the PostgreSQL server was not started by this test session, so it is not "
                    "restarted here")
    command = [str(bindir / "pg_ctl"), "restart", "-w", "-t", "60", "-m", "fast", "-D", str(data),
               "-l", str(data.parent / "server.log")]
    if os.geteuid() == 0:
        runuser = shutil.which("runuser") or shutil.which("runuser", path="/usr/sbin:/sbin")
        assert runuser, "running as root without runuser: cannot run pg_ctl as postgres"
        command = [runuser, "-u", "postgres", "--", *command]
    # pg_ctl restart reuses the options of the last start (postmaster.opts): same port, socket.
    # Its output goes to files: the server it starts inherits pg_ctl's descriptors, and a pipe
    # kept open by the server would block this call until the server stops.
    log = data.parent / "restart.out"
    with open(log, "ab") as out:
        done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, cwd=data.parent,
                              env={**os.environ, "LC_ALL": "C", "LANG": "C"}, timeout=90,
                              check=False)
    assert done.returncode == 0, f"pg_ctl restart failed: {log.read_text()[-2000:]}"
    return time.monotonic() - started
