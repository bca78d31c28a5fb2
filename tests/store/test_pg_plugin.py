"""tests/pg.py decides where PostgreSQL comes from, and whether its absence skips or fails."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.pg import (
    DATABASE_PREFIX,
    ENV_URL,
    PostgresMisconfigured,
    PostgresServer,
    PostgresUnavailable,
    admin_url_from,
    ci_requires_postgres,
    find_bindir,
    missing,
    postgres,
)


@pytest.mark.parametrize(("value", "required"), [
    ("true", True), ("1", True), ("TRUE", True), (" yes ", True), ("on", True),
    ("", False), ("0", False), ("false", False), ("no", False), (None, False),
])
def test_ci_means_postgresql_is_required(value: str | None, required: bool) -> None:
    assert ci_requires_postgres({} if value is None else {"CI": value}) is required


def test_without_postgresql_tests_skip_locally_and_fail_in_ci() -> None:
    with pytest.raises(pytest.skip.Exception, match="no PostgreSQL to test against: gone"):
        missing("gone", {})
    with pytest.raises(pytest.fail.Exception, match="CI is set, so PostgreSQL must be tested"):
        missing("gone", {"CI": "true"})


def test_no_url_and_no_binaries_is_unavailable(tmp_path: Path) -> None:
    pytest.importorskip("psycopg")
    nowhere = str(tmp_path / "*" / "bin" / "initdb")
    with pytest.raises(PostgresUnavailable, match="no PostgreSQL server binaries match"), \
            postgres({}, initdb_glob=nowhere):
        pass


def test_a_configured_url_that_does_not_answer_is_a_failure_not_a_skip() -> None:
    pytest.importorskip("psycopg")
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    with pytest.raises(PostgresMisconfigured, match="does not answer"), postgres({ENV_URL: url}):
        pass
    with pytest.raises(PostgresMisconfigured, match="postgresql://"), \
            postgres({ENV_URL: "sqlite:///x.db"}):
        pass


def test_the_admin_url_defaults_to_psycopg() -> None:
    assert admin_url_from("postgresql://u@h:5/db").drivername == "postgresql+psycopg"
    assert admin_url_from("postgresql+psycopg://u@h/db").render_as_string() == (
        "postgresql+psycopg://u@h/db")


def test_the_newest_installed_server_is_used(tmp_path: Path) -> None:
    for version in ["9.6", "15", "10"]:
        initdb = tmp_path / version / "bin" / "initdb"
        initdb.parent.mkdir(parents=True)
        initdb.write_text("#!/bin/sh\n")
        initdb.chmod(0o755)
    (tmp_path / "16" / "bin").mkdir(parents=True)  # no initdb: a client-only install
    assert find_bindir(str(tmp_path / "*" / "bin" / "initdb")) == tmp_path / "15" / "bin"


def test_only_databases_the_tests_created_are_dropped() -> None:
    server = PostgresServer(sa.make_url("postgresql+psycopg://postgres@127.0.0.1:1/postgres"))
    with pytest.raises(ValueError, match="refusing to drop 'postgres'"):
        server.drop_database(server.admin_url)


def test_each_database_is_fresh_and_dropped_after(postgres_server: PostgresServer) -> None:
    urls = [postgres_server.create_database() for _ in range(2)]
    assert urls[0].database != urls[1].database
    for url in urls:
        assert (url.database or "").startswith(DATABASE_PREFIX)
        engine = sa.create_engine(url, poolclass=sa.NullPool)
        with engine.connect() as conn:
            assert sa.inspect(conn).get_table_names() == []
        engine.dispose()
        postgres_server.drop_database(url)
    admin = sa.create_engine(postgres_server.admin_url, poolclass=sa.NullPool)
    with admin.connect() as conn:
        names = conn.exec_driver_sql("SELECT datname FROM pg_database").scalars().all()
    admin.dispose()
    assert not {u.database for u in urls} & set(names)
