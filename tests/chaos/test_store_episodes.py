"""Scenario d: the SQLite database locked by another process for 30 s, and on a full filesystem.

The worker must wait, say that it waits (once per episode, not once per round), lose nothing and
carry on when the lock or the space comes back: the executions started before and during the
episode all end correctly, and the worker, never killed, exits 0 when stopped.
"""

from __future__ import annotations

import errno
import os
import re
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from tests.chaos.conftest import MakeChaos
from tests.chaos.kit import Chaos, Figures, Proc, Timeout, wait_for

pytestmark = [pytest.mark.slow]

LOCK_SECONDS = 30.0
FULL_SECONDS = 15.0
"""How long the filesystem stays full once the worker has met it."""
MOST_WAIT_LINES = 4
"""Once per episode: one line per loop that meets it (poller, scheduler, ...) and one when it
ends, not one per round (a round every 0.1-0.5 s would make hundreds)."""

LOCKED = r"\blocked\b|\bbusy\b"
"""A log line about the lock (SQLite says "database is locked")."""
FULL = r"disk is full|disk full|no space left"
"""A log line about the full disk (SQLite says "database or disk is full")."""

LOCKER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("ROLLBACK")
print("released", flush=True)
"""


def _start_some(chaos: Chaos, n: int) -> None:
    for i in range(n):
        chaos.start("ledger", "fail" if i % 4 == 3 else "pass", steps=20)


def _alive(chaos: Chaos, proc: Proc) -> None:
    if not proc.alive:
        chaos.note_exit(proc)
        raise AssertionError(f"the worker ended during the episode: {chaos.exits[-1]}")


def _finish(chaos: Chaos, proc: Proc, figures: Figures, problems: list[str]) -> None:
    """Until every execution ended and every job is final; then the test's stop (exit 0)."""
    figures.extra["finish_after_episode_seconds"] = wait_for(
        "every execution to end and every job to be final",
        lambda: not chaos.unfinished() and chaos.all_final(), 120,
        tick=lambda: _alive(chaos, proc), every=0.2)
    code = chaos.stop(proc)
    if code != 0:
        problems.append(f"the worker exited {code} when stopped: {proc.worker.stderr[-1500:]}")


def _wait_lines(proc: Proc, pattern: str) -> int:
    return sum(1 for line in proc.worker.stderr.splitlines() if re.search(pattern, line, re.I))


@pytest.mark.chaos(deadline=240)
def test_a_database_locked_for_thirty_seconds_is_waited_out(make_chaos: MakeChaos,
                                                            tmp_path: Path) -> None:
    chaos = make_chaos()
    figures = Figures("d-sqlite-locked-30s")
    problems: list[str] = []
    try:
        proc = chaos.spawn("steady", ["ledger"])
        _start_some(chaos, 8)
        wait_for("three submissions before the lock", lambda: len(chaos.submissions()) >= 3,
                 60, tick=lambda: _alive(chaos, proc))
        locker = chaos.helper("-c", LOCKER, str(tmp_path / "state.db"), str(LOCK_SECONDS))
        assert locker.stdout is not None
        assert locker.stdout.readline().strip() == b"locked"
        locked_at = time.monotonic()
        _start_some(chaos, 8)  # during the episode
        while locker.poll() is None:
            _alive(chaos, proc)
            time.sleep(0.2)
        figures.extra["lock_seconds"] = time.monotonic() - locked_at
        _finish(chaos, proc, figures, problems)
        lines = _wait_lines(proc, LOCKED)
        figures.extra["wait_lines"] = lines
        if not 1 <= lines <= MOST_WAIT_LINES:
            problems.append(f"the worker logged {lines} lines about the lock; expected 1 to "
                            f"{MOST_WAIT_LINES} (it waits, says so once per episode)")
    finally:
        problems += chaos.verdict(figures)
        figures.emit(chaos.directory)
    assert not problems, "\n".join(problems[:30])


def _fill(mount: Path) -> Path:
    """Write zeros until the filesystem refuses another byte."""
    filler = mount / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        for size in (1 << 20, 1 << 16, 1 << 12, 1):
            chunk = b"\0" * size
            try:
                while True:
                    os.write(fd, chunk)
            except OSError as error:
                if error.errno != errno.ENOSPC:
                    raise
    finally:
        os.close(fd)
    return filler


def _truncate_wal(db: Path) -> None:
    """Checkpoint and truncate the WAL, so the worker's next commit needs new blocks: a WAL
    reused from its start would take commits for megabytes before meeting the full disk."""
    with sqlite3.connect(db, timeout=30) as conn:
        for _ in range(50):
            busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if not busy:
                return
            time.sleep(0.1)
    raise AssertionError("the WAL could not be checkpointed within 5 s")


@pytest.fixture
def small_filesystem(tmp_path: Path) -> Path:
    """A 16 MB tmpfs of the test's own (skipped where mounting is not allowed)."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)],
                          capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs for the full-disk episode (needs root or "
                    f"CAP_SYS_ADMIN): {done.stderr.strip() or done.returncode}")
    return mount


@pytest.mark.chaos(deadline=240)
def test_a_full_filesystem_is_waited_out(make_chaos: MakeChaos,
                                         small_filesystem: Path) -> None:
    db = small_filesystem / "state.db"
    chaos = make_chaos(f"sqlite:///{db}")
    figures = Figures("d-sqlite-disk-full")
    problems: list[str] = []
    try:
        proc = chaos.spawn("steady", ["ledger"])
        _start_some(chaos, 8)
        wait_for("three submissions before the disk fills", lambda: len(chaos.submissions()) >= 3,
                 60, tick=lambda: _alive(chaos, proc))
        _truncate_wal(db)
        filler = _fill(small_filesystem)
        full_at = time.monotonic()
        _start_some(chaos, 8)  # during the episode
        try:
            figures.extra["noticed_seconds"] = wait_for(
                "the worker to meet the full disk",
                lambda: _wait_lines(proc, FULL) > 0, 30,
                tick=lambda: _alive(chaos, proc), every=0.2)
        except Timeout:
            figures.extra["noticed_seconds"] = "never"
            problems.append("the worker never said that the disk is full within 30 s")
        hold_until = time.monotonic() + FULL_SECONDS
        while time.monotonic() < hold_until:
            _alive(chaos, proc)
            time.sleep(0.2)
        filler.unlink()
        figures.extra["full_seconds"] = time.monotonic() - full_at
        _finish(chaos, proc, figures, problems)
        lines = _wait_lines(proc, FULL)
        figures.extra["wait_lines"] = lines
        if lines > MOST_WAIT_LINES:
            problems.append(f"the worker logged {lines} lines about the full disk; expected at "
                            f"most {MOST_WAIT_LINES} (once per episode, not once per round)")
    finally:
        chaos.kill_all()
        problems += chaos.verdict(figures)
        figures.emit(chaos.directory)
        subprocess.run(["umount", "-l", str(small_filesystem)], capture_output=True, timeout=30,
                       check=False)
    assert not problems, "\n".join(problems[:30])
