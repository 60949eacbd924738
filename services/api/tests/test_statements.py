"""Prepared statements (api/core/statements.py): the same rows, errors and transactions as
``conn.execute``, on SQLite and on PostgreSQL."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from api_helpers import sqlite_url
from sqlalchemy import Engine, event
from sqlalchemy.exc import IntegrityError, OperationalError

from api.core.config import load_settings
from api.core.db import Database, build_engine
from api.core.statements import Prepared
from api.migrate import upgrade
from api.repositories import items as items_repo
from api.repositories import users as users_repo
from api.tables import items, users


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A migrated database holding two users, each with a public and a private item."""
    if request.param == "sqlite":
        url = sqlite_url(tmp_path / "statements.sqlite3")
    else:
        url = request.getfixturevalue("postgres_url")
    settings = load_settings(database_url=url)
    upgrade(settings)
    database = Database(build_engine(settings))
    with database.write() as conn:
        for n in (1, 2):
            user = users_repo.create(
                conn, name=f"user {n}", email=f"u{n}@example.com", api_key_hash=f"{n}" * 64
            )
            for public in (True, False):
                items_repo.create(
                    conn, owner_id=user.id, name=f"item {n}", description="", is_public=public
                )
    yield database
    database.engine.dispose()


def _hot_statements(engine: Engine) -> list[tuple[Prepared, dict[str, Any]]]:
    postgresql = engine.dialect.name == "postgresql"
    lists = items_repo._LISTS_POSTGRESQL if postgresql else items_repo._LISTS
    page = {"viewer_id": 1, "owner_id": 1, "after_id": 0, "limit": 10}
    return [
        (items_repo._GET, {"item_id": 2}),
        (users_repo._GET, {"user_id": 2}),
        (users_repo._GET_BY_KEY_HASH, {"api_key_hash": "2" * 64}),
        (users_repo._LIST_AFTER, {"after_id": 0, "limit": 10}),
        *((prepared, page) for prepared in lists),
    ]


def test_rows_are_those_of_conn_execute(db: Database) -> None:
    with db.read() as conn:
        for prepared, params in _hot_statements(db.engine):
            library = list(conn.execute(prepared.statement, params))
            rows = prepared.all(conn, params)
            assert rows, prepared.statement  # something to compare
            assert rows == library
            assert [row._fields for row in rows] == [row._fields for row in library]
            # The column types' own conversions ran: the same Python types, tz-aware datetimes.
            assert [tuple(map(type, row)) for row in rows] == [
                tuple(map(type, row)) for row in library
            ]
            assert rows[0]._mapping == library[0]._mapping


def test_one_or_none_and_one(db: Database) -> None:
    with db.read() as conn:
        assert items_repo._GET.one_or_none(conn, {"item_id": 10_000}) is None
        assert items_repo._GET.one(conn, {"item_id": 1}).name == "item 1"
        with pytest.raises(ValueError, match="no row"):
            items_repo._GET.one(conn, {"item_id": 10_000})
        with pytest.raises(ValueError, match="at most one"):
            Prepared(sa.select(items)).one_or_none(conn, {})


def test_a_literal_in_the_statement_is_bound_by_itself(db: Database) -> None:
    statement = sa.select(items.c.id).where(items.c.is_public == True, items.c.owner_id == 2)  # noqa: E712
    with db.read() as conn:
        assert [row.id for row in Prepared(statement).all(conn, {})] == [3]


def test_a_driver_error_is_sqlalchemys(db: Database) -> None:
    values = {"name": "again", "email": "u1@example.com", "email_lower": "u1@example.com"}
    values |= {"api_key_hash": "3" * 64, "created_at": users_repo.utcnow()}
    with pytest.raises(IntegrityError) as raised, db.write() as conn:
        users_repo._INSERT.one(conn, values)
    assert raised.value.orig is not None  # the driver's own exception, as conn.execute keeps it
    assert "u1@example.com" in str(raised.value.params)
    # And the repository turns it into its own error, as before.
    with pytest.raises(users_repo.EmailTakenError), db.write() as conn:
        users_repo.create(conn, name="x", email="u1@example.com", api_key_hash="4" * 64)


class _Abandon(Exception):
    pass


def _write_then_abandon(db: Database) -> None:
    with db.write() as conn:
        items_repo.create(conn, owner_id=1, name="rolled back", description="", is_public=True)
        assert items_repo._GET.one_or_none(conn, {"item_id": 5}) is not None  # seen inside
        raise _Abandon


def test_it_runs_inside_the_callers_transaction(db: Database) -> None:
    with pytest.raises(_Abandon):
        _write_then_abandon(db)
    with db.read() as conn:
        assert items_repo.get(conn, 5) is None


def test_listeners_on_cursor_events_see_every_statement(db: Database) -> None:
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        with db.read() as conn:
            assert items_repo.get(conn, 1) is not None
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    assert len(seen) == 1
    assert "FROM items" in seen[0]


def test_a_dropped_connection_is_invalidated(postgres_url: str) -> None:
    """As conn.execute does: the error says the connection was invalidated, and the pool opens a
    new one for the next request instead of handing out the dead one."""
    settings = load_settings(database_url=postgres_url)
    upgrade(settings)
    database = Database(build_engine(settings))
    try:
        with database.read() as conn:
            pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
            with database.engine.connect() as killer:
                killer.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            with pytest.raises(OperationalError) as raised:
                users_repo.get(conn, 1)
            assert raised.value.connection_invalidated
        with database.read() as conn:
            assert users_repo.get(conn, 1) is None
            assert conn.exec_driver_sql("SELECT pg_backend_pid()").scalar() != pid
    finally:
        database.engine.dispose()


def test_render_time_parameters_are_refused(db: Database) -> None:
    statement = sa.select(users).where(users.c.id.in_(sa.bindparam("ids", expanding=True)))
    with db.read() as conn, pytest.raises(TypeError, match="render-time parameters"):
        Prepared(statement).all(conn, {"ids": [1, 2]})


def test_begin_immediate_runs_as_before(db_path: Path) -> None:
    """A write transaction on SQLite still starts with BEGIN IMMEDIATE, seen by listeners, and a
    lock held elsewhere still fails as SQLAlchemy's OperationalError (test_db.py: the waiting)."""
    settings = load_settings(database_url=sqlite_url(db_path))
    database = Database(build_engine(settings, sqlite_busy_timeout_ms=50))
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    try:
        event.listen(database.engine, "before_cursor_execute", record)
        with database.write() as conn:
            conn.exec_driver_sql("SELECT 1")
        event.remove(database.engine, "before_cursor_execute", record)
        assert seen == ["BEGIN IMMEDIATE", "SELECT 1"]
        with database.write(), pytest.raises(OperationalError, match="locked"), database.write():
            pass
    finally:
        database.engine.dispose()
