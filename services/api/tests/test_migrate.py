"""Migrations: concurrent runs serialise, the migrations match the tables, the start-up switch."""

import multiprocessing
import os
import shutil
import sys
import threading
import time
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from api_helpers import sqlite_url
from sqlalchemy import inspect, text

from api import migrate
from api.core.config import load_settings
from api.core.db import build_engine
from api.migrate import alembic_config, main, new_revision, upgrade
from api.tables import metadata

RUNS = 6


@pytest.fixture(params=["sqlite", "postgres"])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return sqlite_url(tmp_path / "empty.sqlite3")
    return request.getfixturevalue("postgres_url")


def _migrate_at_barrier(url: str, barrier: object, log_path: str) -> None:
    """Child process: wait for all the others, then run ``python -m api.migrate``."""
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.environ["DATABASE_URL"] = url
    barrier.wait(timeout=60)  # type: ignore[attr-defined]
    try:
        main([])
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


def test_concurrent_runs_apply_each_revision_exactly_once(empty_database_url, tmp_path):
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(RUNS)
    logs = [tmp_path / f"run{n}.log" for n in range(RUNS)]
    runs = [
        context.Process(target=_migrate_at_barrier, args=(empty_database_url, barrier, str(log)))
        for log in logs
    ]
    for run in runs:
        run.start()
    for run in runs:
        run.join(timeout=120)
    output = "\n".join(log.read_text() for log in logs)
    assert [run.exitcode for run in runs] == [0] * RUNS, output

    revisions = list(ScriptDirectory.from_config(alembic_config()).walk_revisions())
    assert output.count("Running upgrade") == len(revisions), output
    engine = build_engine(load_settings(database_url=empty_database_url))
    with engine.connect() as conn:
        version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    engine.dispose()
    assert version == ScriptDirectory.from_config(alembic_config()).get_current_head()


def test_the_migrations_match_the_table_definitions(empty_database_url):
    """Nothing for `alembic revision --autogenerate` to find: tables.py and migrations agree."""
    settings = load_settings(database_url=empty_database_url)
    upgrade(settings)
    engine = build_engine(settings)
    with engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), metadata)
    engine.dispose()
    assert differences == []


def test_the_migrations_create_the_indexes_of_the_table_definitions(empty_database_url):
    """Indexes as tables.py would create them, partial ones' WHERE included, which the check
    above does not compare: a partial index the queries cannot use is a slow list at scale."""
    settings = load_settings(database_url=empty_database_url)
    upgrade(settings)
    engine = build_engine(settings)
    try:
        with engine.begin() as conn:
            # tables.py's own DDL, next to the migrated tables: in a schema of the same database.
            if conn.dialect.name == "sqlite":
                conn.execute(text("ATTACH DATABASE ':memory:' AS tables_py"))
            else:
                conn.execute(text("CREATE SCHEMA tables_py"))
            metadata.create_all(conn.execution_options(schema_translate_map={None: "tables_py"}))
            inspector = inspect(conn)

            def indexes(table: str, schema: str | None) -> list[tuple[object, ...]]:
                found = inspector.get_indexes(table, schema=schema)
                return sorted(
                    (i["name"], i["column_names"], bool(i["unique"]), *_where(i)) for i in found
                )

            for table in metadata.tables:
                assert indexes(table, None) == indexes(table, "tables_py"), table
    finally:
        engine.dispose()


def _where(index: dict) -> list[str]:
    """The WHERE of a reflected partial index, as text."""
    options = index.get("dialect_options", {})
    return [str(options[key]) for key in ("sqlite_where", "postgresql_where") if key in options]


def test_every_migration_goes_down_and_up_again(empty_database_url):
    """Each downgrade undoes its upgrade on both databases: a bad deploy can be stepped back."""
    settings = load_settings(database_url=empty_database_url)
    upgrade(settings)
    engine = build_engine(settings)
    try:
        with engine.begin() as conn:
            config = alembic_config()
            config.attributes["connection"] = conn
            command.downgrade(config, "base")
            assert set(inspect(conn).get_table_names()) <= {"alembic_version"}
            command.upgrade(config, "head")
            assert compare_metadata(MigrationContext.configure(conn), metadata) == []
    finally:
        engine.dispose()


def test_with_migrate_on_start_off_the_server_waits_for_the_migration_job(tmp_path, monkeypatch):
    """MIGRATE_ON_START=false (a Swarm runs a job): start-up waits for the newest revision."""
    url = sqlite_url(tmp_path / "switch.sqlite3")
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("MIGRATE_ON_START", "false")
    monkeypatch.setenv("DATABASE_WAIT_SECONDS", "2")
    with pytest.raises(SystemExit, match="this version needs"):
        main(["--on-start"])
    engine = build_engine(load_settings(database_url=url))
    assert "users" not in inspect(engine).get_table_names()  # it waited; it did not migrate

    monkeypatch.setenv("DATABASE_WAIT_SECONDS", "60")
    outcome: list[object] = []

    def start_up() -> None:
        try:
            main(["--on-start"])
            outcome.append("started")
        except SystemExit as exc:
            outcome.append(exc)

    starting = threading.Thread(target=start_up)
    starting.start()
    main([])  # the job's explicit run ignores the switch
    starting.join(timeout=30)
    assert outcome == ["started"]
    assert "users" in inspect(engine).get_table_names()
    engine.dispose()


def test_migrate_waits_for_the_database_then_gives_up(monkeypatch):
    """Nothing listens here: it retries until DATABASE_WAIT_SECONDS, then fails (exit != 0)."""
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://api@127.0.0.1:9/api")
    monkeypatch.setenv("DATABASE_WAIT_SECONDS", "2")
    monkeypatch.setenv("DATABASE_CONNECT_TIMEOUT", "1")
    started = time.monotonic()
    with pytest.raises(SystemExit, match="DATABASE_WAIT_SECONDS=2"):
        main([])
    assert time.monotonic() - started >= 2


def test_a_new_revision_is_numbered_and_empty_when_the_tables_match(tmp_path):
    """`make migration`: against a copy of the migrations, so the repository is not touched."""
    copy = tmp_path / "migrations"
    shutil.copytree(Path(migrate.__file__).parent / "migrations", copy)
    head = ScriptDirectory.from_config(alembic_config(str(copy))).get_current_head()
    path = new_revision("nothing new", alembic_config(str(copy)))
    assert path.parent == copy / "versions"
    text = path.read_text()
    number = f"{int(head) + 1:04d}"
    assert path.name == f"{number}_nothing_new.py"
    assert f"Revision ID: {number}\nRevises: {head}\n" in text
    upgrade_body = text.split("def upgrade() -> None:")[1].split("def downgrade")[0]
    statements = [line.strip() for line in upgrade_body.splitlines() if line.strip()]
    assert [line for line in statements if not line.startswith("#")] == ["pass"]
