"""Engine construction and transaction helpers shared by every request.

Each gunicorn worker builds its own engine (the app is not preloaded), so no connection ever
crosses a fork. SQLite gets the settings that make several worker processes safe on one file:
WAL (readers never block the writer), a busy timeout (writers queue instead of failing), foreign
keys on, and ``BEGIN IMMEDIATE`` for write transactions: a deferred transaction that reads first
and writes later can hit "database is locked" on the lock upgrade without waiting at all.

Reads on SQLite open no transaction of their own: every read in this app is one statement, which
SQLite runs as its own implicit (snapshot-consistent) transaction. An explicit BEGIN would cost a
second statement per request and buy nothing (measured in docs/performance.md).
"""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url

# Execution option that marks connections which will write (see Database.write).
_IMMEDIATE = "sqlite_begin_immediate"


def build_engine(database_url: str, *, sqlite_busy_timeout_ms: int = 5000) -> Engine:
    """Create the engine for ``database_url`` with the per-dialect settings described above."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        # pre_ping turns a connection dropped by a PostgreSQL restart into a reconnect instead of
        # one failed request per pooled connection.
        return create_engine(url, pool_pre_ping=True)

    if url.database and url.database != ":memory:":
        # Convenience for local runs: the default points into ./var, which may not exist yet.
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control away from the sqlite3 module so that SQLAlchemy's "begin"
        # event below decides how each transaction starts.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(sqlite_busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA journal_mode = WAL")
        # NORMAL is durable across application crashes in WAL mode and much cheaper than FULL.
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        if conn.get_execution_options().get(_IMMEDIATE, False):
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


class Database:
    """The engine plus the two ways a request talks to it: a read or a write transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._writer = engine.execution_options(**{_IMMEDIATE: True})

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A connection for reads; on SQLite each statement is its own transaction (see above)."""
        with self.engine.connect() as conn:
            yield conn

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A transaction that commits on success and rolls back on any exception."""
        with self._writer.begin() as conn:
            yield conn
