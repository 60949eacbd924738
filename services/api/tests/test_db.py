"""Database plumbing: SQLite pragmas, write transactions, migrations, other dialects."""

import threading
import time

import pytest
from api_helpers import sqlite_url
from sqlalchemy import inspect, text
from sqlalchemy.exc import OperationalError

from api.core.config import load_settings
from api.core.db import Database, build_engine
from api.migrate import upgrade


def _settings(db_path):
    return load_settings(database_url=sqlite_url(db_path))


@pytest.fixture
def db(db_path):
    database = Database(build_engine(_settings(db_path), sqlite_busy_timeout_ms=200))
    yield database
    database.engine.dispose()


def test_sqlite_connection_settings(db):
    with db.read() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 200


def test_writes_take_the_lock_up_front(db):
    """A write transaction holds the RESERVED lock from BEGIN (BEGIN IMMEDIATE), so a second
    writer waits for the busy timeout and then fails cleanly, even before the first wrote."""
    with db.write():
        started = time.monotonic()
        with pytest.raises(OperationalError, match="locked"), db.write():
            pass
        assert time.monotonic() - started >= 0.15


def test_readers_are_not_blocked_by_a_writer(db):
    with db.write() as writer:
        writer.execute(text("UPDATE users SET name = name"))
        with db.read() as reader:
            assert reader.execute(text("SELECT count(*) FROM users")).scalar() == 0


def test_queued_writer_proceeds_when_the_lock_is_released(db_path):
    database = Database(build_engine(_settings(db_path), sqlite_busy_timeout_ms=5000))
    first_has_lock = threading.Event()

    def hold_lock():
        with database.write():
            first_has_lock.set()
            time.sleep(0.3)

    holder = threading.Thread(target=hold_lock)
    holder.start()
    assert first_has_lock.wait(5)
    with database.write() as conn:  # waits, then succeeds
        conn.execute(text("SELECT 1"))
    holder.join()
    database.engine.dispose()


def test_write_rolls_back_on_error(db):
    def insert_then_fail():
        with db.write() as conn:
            conn.execute(
                text(
                    "INSERT INTO users (name, email, email_lower, api_key_hash, created_at) "
                    "VALUES ('A', 'a@x.io', 'a@x.io', 'h', '2024-01-01 00:00:00')"
                )
            )
            raise RuntimeError

    with pytest.raises(RuntimeError):
        insert_then_fail()
    with db.read() as conn:
        assert conn.execute(text("SELECT count(*) FROM users")).scalar() == 0


def test_migrations_are_idempotent(tmp_path):
    settings = load_settings(database_url=sqlite_url(tmp_path / "var" / "fresh.sqlite3"))
    upgrade(settings)
    upgrade(settings)
    engine = build_engine(settings)
    tables = set(inspect(engine).get_table_names())
    assert {"users", "items", "alembic_version"} <= tables
    engine.dispose()


def test_postgresql_engine_builds_without_connecting():
    engine = build_engine(
        load_settings(database_url="postgresql+psycopg://api:secret@db.invalid:5432/api")
    )
    assert engine.dialect.name == "postgresql"
    assert engine.dialect.driver == "psycopg"
    engine.dispose()
