"""Every user mistake is one short line with the fix and a non-zero exit, never a traceback.

Each case runs the real `cpworker` as a subprocess, as a user at a terminal or a cron job would.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pytest

from engine.store import open_store
from tests.store.builders import SUCCESS, T0, write

REPO = Path(__file__).resolve().parents[2]


def cpworker(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
             user: str | None = None) -> subprocess.CompletedProcess[str]:
    command: Sequence[str] = [sys.executable, "-m", "engine.cli", *args]
    if user is not None:
        account = pwd.getpwnam(user)
        command = ["setpriv", f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}",
                   "--clear-groups", *command]
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CPWORKER_")}
    environment.update({"PYTHONPATH": str(REPO), **(env or {})})
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False,
                          env=environment, cwd=cwd)


def one_line(result: subprocess.CompletedProcess[str], exit_code: int = 2) -> str:
    """The single line a mistake produced, after checking that it was one and only one."""
    assert result.returncode == exit_code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and result.stdout == "", (result.stdout, result.stderr)
    assert lines[0].startswith("cpworker: ") and len(lines[0]) < 300, lines[0]
    return lines[0]


@pytest.fixture
def db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    store = open_store(url)
    write(store, "job-1", T0, *SUCCESS)
    store.close()
    return url


@pytest.mark.parametrize("args, env, says", [
    (["--poll-interval", "0"], {}, "--poll-interval (CPWORKER_POLL_INTERVAL) must be more than 0"),
    ([], {"CPWORKER_POLL_INTERVAL": "-5"}, "--poll-interval (CPWORKER_POLL_INTERVAL) must be"),
    (["--max-in-flight", "0"], {}, "--max-in-flight (CPWORKER_MAX_IN_FLIGHT) must be at least 1"),
    (["--check-interval", "-1"], {}, "--check-interval (CPWORKER_CHECK_INTERVAL) must be more"),
    (["--effect-threads", "0"], {}, "--effect-threads (CPWORKER_EFFECT_THREADS) must be at least"),
    (["--lease", "soon"], {}, "must be a number of seconds more than 0, not 'soon'"),
    (["--poll-interval-min", "inf"], {}, "--poll-interval-min (CPWORKER_POLL_INTERVAL_MIN) must"),
    (["--shutdown-grace", "-1"], {}, "--shutdown-grace (CPWORKER_SHUTDOWN_GRACE) must be at least"),
])
def test_a_number_out_of_range_is_refused_where_it_is_read(
    tmp_path: Path, args: list[str], env: dict[str, str], says: str
) -> None:
    result = cpworker("--db", f"sqlite:///{tmp_path / 'state.db'}", "run", "--until-idle",
                      *args, env=env)
    assert says in one_line(result)
    assert not (tmp_path / "state.db").exists()  # refused before anything was opened


@pytest.mark.parametrize("command", [["jobs"], ["replay", "--all"], ["inspect", "job-1"]])
def test_global_options_go_before_or_after_the_command(db: str, command: list[str]) -> None:
    before = cpworker("--db", db, *command)
    after = cpworker(*command, "--db", db)
    assert before.returncode == after.returncode == 0, after.stderr
    assert before.stdout == after.stdout and "job-1" in after.stdout
    logged = cpworker(*command, "--db", db, "--log-format", "json", "--log-level", "warning")
    assert logged.returncode == 0 and logged.stdout == before.stdout


@pytest.mark.parametrize("command", ["run", "jobs", "inspect", "replay", "prune", "rebuild",
                                     "register", "diagram", "sandbox", "emulator"])
def test_every_commands_help_lists_the_global_options(command: str) -> None:
    shown = cpworker(command, "--help")
    assert shown.returncode == 0, shown.stderr
    for option in ("--db", "--log-format", "--log-level", "--sqlite-synchronous"):
        assert option in shown.stdout, (command, option)


def test_a_mistyped_database_for_a_read_is_said_and_not_created(tmp_path: Path) -> None:
    typo = tmp_path / "stat.db"
    for command in (["jobs"], ["inspect", "x"], ["replay", "--all"], ["rebuild"],
                    ["prune", "--finished-before", "30d"]):
        line = one_line(cpworker("--db", f"sqlite:///{typo}", *command))
        assert f"there is no state database at {typo}" in line and "Fix:" in line
    assert not typo.exists()


def test_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not a database\n" * 100)
    line = one_line(cpworker("--db", f"sqlite:///{notes}", "jobs"))
    assert "not a SQLite database" in line and "check --db" in line
    assert notes.read_text() == "not a database\n" * 100


def test_another_database_without_cpworker_tables(tmp_path: Path) -> None:
    import sqlite3

    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("create table notes (text)")
    assert "holds no cpworker state" in one_line(cpworker("--db", f"sqlite:///{other}", "jobs"))


def test_run_in_a_missing_directory_says_which(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "dir" / "state.db"
    line = one_line(cpworker("--db", f"sqlite:///{missing}", "run", "--until-idle",
                             "--endpoint-url", "http://127.0.0.1:9", "--region", "us-east-1"))
    assert f"the directory {missing.parent} of the state database does not exist" in line
    assert not missing.parent.exists()


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv (util-linux)")
def test_the_read_commands_work_where_they_cannot_write(tmp_path: Path, db: str) -> None:
    """A copy on a read-only location (WAL mode, no -shm can be made): jobs, inspect and
    replay read it; the write commands say why they cannot."""
    user = "nobody" if os.geteuid() == 0 else None  # root may write anywhere
    opened = _traversable(Path(sys.prefix), REPO) if user is not None else []
    if user is not None and cpworker("--version", user=user).returncode != 0:
        _restore(opened)
        pytest.skip("the user nobody cannot run this checkout's Python")
    place = Path(tempfile.mkdtemp(prefix="cpworker-readonly-"))  # pytest's tmp is root-only
    shutil.copy(db.removeprefix("sqlite:///"), place / "state.db")
    (place / "state.db").chmod(0o444)
    place.chmod(0o555)
    url = f"sqlite:///{place / 'state.db'}"
    try:
        for command in (["jobs"], ["inspect", "job-1"], ["replay", "--all"]):
            result = cpworker("--db", url, *command, user=user, cwd=place)
            assert result.returncode == 0, (command, result.stderr)
            assert "job-1" in result.stdout and "Traceback" not in result.stderr
        line = one_line(cpworker("--db", url, "rebuild", user=user, cwd=place))
        assert "read-only" in line or "cannot be opened" in line
    finally:
        place.chmod(0o755)
        shutil.rmtree(place)
        _restore(opened)


def _traversable(*paths: Path) -> list[tuple[Path, int]]:
    """Let other users pass through (o+x, never read) the directories above `paths`, as tox
    makes .tox/ private: what is changed, to be put back."""
    changed = []
    for path in paths:
        for directory in [path, *path.parents]:
            mode = directory.stat().st_mode
            if not mode & stat.S_IXOTH:
                directory.chmod(mode | stat.S_IXOTH)
                changed.append((directory, mode))
    return changed


def _restore(changed: list[tuple[Path, int]]) -> None:
    for directory, mode in reversed(changed):
        directory.chmod(mode)


def test_the_command_line_beats_the_variable_wherever_the_option_stands(
    db: str, tmp_path: Path
) -> None:
    elsewhere = {"CPWORKER_DB": f"sqlite:///{tmp_path / 'elsewhere.db'}"}
    for args in (["--db", db, "jobs"], ["jobs", "--db", db]):
        result = cpworker(*args, env=elsewhere)
        assert result.returncode == 0 and "job-1" in result.stdout, result.stderr
    assert "no state database" in one_line(cpworker("jobs", env=elsewhere))


def test_an_emulator_on_a_port_in_use_is_one_line() -> None:
    import socket

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        line = one_line(cpworker("emulator", "--port", str(port)))
        assert f"cannot listen on 127.0.0.1:{port}" in line and "--port" in line
        travis = one_line(cpworker("emulator", "--port", "0", "--port-for", f"travis={port}"))
        assert "--port-for travis=PORT" in travis


LEDGER = "tests.actions.ledger:LedgerAction"


@pytest.mark.parametrize("env, says", [
    ({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"},
     "CodePipeline cannot be reached"),
    ({"AWS_EC2_METADATA_DISABLED": "true"}, "no AWS credentials were found. Fix: set "
                                            "AWS_ACCESS_KEY_ID"),
])
def test_until_idle_without_codepipeline_exits_non_zero_and_says_why(
    tmp_path: Path, env: dict[str, str], says: str
) -> None:
    """A cron job or a CI step must not go green when nothing could be polled."""
    plain = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    plain.update({"AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
                  "AWS_DEFAULT_REGION": "us-east-1", **env})
    result = subprocess.run(
        [sys.executable, "-m", "engine.cli", "--db", f"sqlite:///{tmp_path / 'state.db'}", "run",
         "--until-idle", "--action", LEDGER, "--endpoint-url", "http://127.0.0.1:9"],
        capture_output=True, text=True, timeout=60, check=False,
        env={**plain, "PYTHONPATH": str(REPO)})
    assert result.returncode == 4, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()
    error = [line for line in last if "ERROR" in line]
    assert len(error) == 1 and "CodePipeline could not be polled" in error[0], last
    assert says in error[0] and "exiting 4" in error[0]


def test_in_json_mode_a_mistake_is_a_json_line_too(tmp_path: Path) -> None:
    import json

    result = cpworker("--log-format", "json", "--db", f"sqlite:///{tmp_path / 'nope.db'}", "jobs")
    assert result.returncode == 2 and result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    said = json.loads(line)
    assert said["level"] == "error" and "there is no state database" in said["message"]


def test_every_flag_of_every_command_has_its_variable() -> None:
    import click

    from engine.cli import main

    ctx = click.Context(main)
    missing = []
    for name in main.list_commands(ctx):
        command = main.get_command(ctx, name)
        assert command is not None
        missing += [f"{name} {p.opts[0]}" for p in command.params
                    if isinstance(p, click.Option) and p.name != "help"
                    and not (isinstance(p.envvar, str) and p.envvar.startswith("CPWORKER_"))]
    assert missing == []


def test_registering_without_credentials_says_the_fix_that_fits() -> None:
    result = cpworker("register", "travis", "--region", "us-east-1", "--endpoint-url",
                      "http://127.0.0.1:9", env={"AWS_EC2_METADATA_DISABLED": "true",
                                                 "AWS_CONFIG_FILE": "/dev/null",
                                                 "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
                                                 "AWS_ACCESS_KEY_ID": "",
                                                 "AWS_SECRET_ACCESS_KEY": ""})
    line = one_line(result)
    assert "no AWS credentials were found. Fix: set AWS_ACCESS_KEY_ID" in line


@pytest.mark.parametrize("revision, says", [
    ("9999", "newer than this cpworker"), ("0003", "older than this cpworker")])
def test_a_reader_on_another_schema_says_what_to_do(
    db: str, revision: str, says: str
) -> None:
    import sqlite3

    path = db.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = ?", (revision,))
    before = Path(path).read_bytes()
    line = one_line(cpworker("--db", db, "jobs"))
    assert f"at schema {revision}, {says}" in line and "Fix:" in line
    assert Path(path).read_bytes() == before  # a reader migrates nothing
