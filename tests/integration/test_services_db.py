"""PostgreSQL through dirk's SDK against a real `dirk engine` process: the postgres:15 test
image's entrypoint initialises a data directory and serves with the official image's
variables, and as a service (its image's EXPOSE 5432 health-checked) a client container
creates a table, inserts and queries through it. Nothing of a test is left (`no_leaks`)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

import dirk
from dirk.errors import ExecError
from tests.integration.leaks import LeakWatch
from tests.integration.sdk_engine import RunningEngine, foreground_engine

pytestmark = [pytest.mark.integration]

#: Starts the server in the background, waits until it accepts connections, runs $SQL.
IN_ONE_EXEC = """
(docker-entrypoint.sh postgres >/tmp/server.log 2>&1 &)
for i in $(seq 100); do pg_isready -q -h 127.0.0.1 && break; sleep 0.1; done
psql -v ON_ERROR_STOP=1 -At -h 127.0.0.1 -U "$USER" -d "$DB" -c "$SQL"
"""


@pytest.fixture(scope="module")
def engine() -> Iterator[RunningEngine]:
    yield from foreground_engine()


@pytest.fixture
def client(engine: RunningEngine, no_leaks: LeakWatch, tmp_path: Path) -> Iterator[dirk.Client]:
    no_leaks.watch(engine.state_dir)
    with dirk.Connection(dirk.Config(engine=engine.socket_url, workdir=tmp_path)) as c:
        yield c


def test_the_entrypoint_initialises_and_serves_with_a_password(
    client: dirk.Client, postgres_ref: str
) -> None:
    base = (
        client.container()
        .from_(postgres_ref)
        .with_env_variable("POSTGRES_PASSWORD", "s3cret")
        .with_env_variable("POSTGRES_USER", "app")
        .with_env_variable("POSTGRES_DB", "shop")
        .with_env_variable("USER", "app")
        .with_env_variable("DB", "shop")
    )
    sql = "select current_user, current_database(), version() like 'PostgreSQL 15.%'"
    good = base.with_env_variable("PGPASSWORD", "s3cret").with_env_variable("SQL", sql)
    assert good.with_exec(["sh", "-c", IN_ONE_EXEC]).stdout() == "app|shop|t\n"
    wrong = base.with_env_variable("PGPASSWORD", "nope").with_env_variable("SQL", "select 1")
    with pytest.raises(ExecError) as failed:
        wrong.with_exec(["sh", "-c", IN_ONE_EXEC]).sync()
    assert 'password authentication failed for user "app"' in failed.value.stderr


def test_without_a_password_the_entrypoint_refuses_and_says_how_to_fix_it(
    client: dirk.Client, postgres_ref: str
) -> None:
    with pytest.raises(ExecError) as failed:
        client.container().from_(postgres_ref).with_exec(["postgres"], use_entrypoint=True).sync()
    assert "Set POSTGRES_PASSWORD" in failed.value.stderr
    trust = (
        client.container()
        .from_(postgres_ref)
        .with_env_variable("POSTGRES_HOST_AUTH_METHOD", "trust")
        .with_env_variable("USER", "postgres")
        .with_env_variable("DB", "postgres")
        .with_env_variable("SQL", "create table t (n int); insert into t values (7); table t")
    )
    assert trust.with_exec(["sh", "-c", IN_ONE_EXEC]).stdout() == "CREATE TABLE\nINSERT 0 1\n7\n"


def test_a_client_container_creates_inserts_and_queries_through_the_service(
    client: dirk.Client, postgres_ref: str
) -> None:
    """The image's EXPOSE 5432 is the service's port (health-checked before the client runs);
    a started service keeps its data across the execs that use it."""
    password = secrets.token_hex(8)
    server = (
        client.container()
        .from_(postgres_ref)
        .with_env_variable("POSTGRES_PASSWORD", password)
        .with_env_variable("POSTGRES_DB", "shop")
    )
    assert [p.port() for p in server.exposed_ports()] == [5432]
    db = server.as_service(use_entrypoint=True).start()
    psql = (
        client.container()
        .from_(postgres_ref)
        .with_env_variable("PGPASSWORD", password)
        .with_service_binding("db", db)
    )

    def sql(statement: str) -> str:
        args = ["psql", "-v", "ON_ERROR_STOP=1", "-At", "-h", "db", "-U", "postgres", "-d", "shop"]
        return psql.with_exec([*args, "-c", statement]).stdout()

    try:
        assert (
            sql(
                "CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL);"
                "INSERT INTO items (name) VALUES ('apple'), ('pear');"
            )
            == "CREATE TABLE\nINSERT 0 2\n"
        )
        assert sql("SELECT id, name FROM items ORDER BY id") == "1|apple\n2|pear\n"
    finally:
        db.stop()
