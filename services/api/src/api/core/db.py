"""Engine construction and transaction helpers shared by every request.

Each gunicorn worker builds its own engine (the app is not preloaded), so no connection ever
crosses a fork.

SQLite gets the settings that make several worker processes safe on one file: WAL (readers never
block the writer), a busy timeout (writers queue instead of failing), foreign keys on, and
``BEGIN IMMEDIATE`` for write transactions: a deferred transaction that reads first and writes
later can hit "database is locked" on the lock upgrade without waiting at all. Reads on SQLite open
no transaction of their own: every read in this app is one statement, which SQLite runs as its own
implicit (snapshot-consistent) transaction (measured in docs/performance.md); PostgreSQL
connections work the same way (autocommit, and BEGIN only for a write transaction).

PostgreSQL gets a bounded pool per worker, a connect timeout and a statement timeout, and a
liveness check on checkout that costs no round trip (``_drop_dead_connection``).
"""

import contextlib
import select
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import DisconnectionError

from api.core.config import Settings
from api.core.statements import execute_driver_sql

# Execution option that makes ``Connection.begin()`` open a real transaction, and how: on SQLite
# its value is the statement ("BEGIN IMMEDIATE", "BEGIN EXCLUSIVE"); on PostgreSQL any value
# takes the connection out of autocommit. Without it neither database opens a transaction and
# each statement is its own (see Database.read).
BEGIN = "begin_statement"


def build_engine(settings: Settings, *, sqlite_busy_timeout_ms: int | None = None) -> Engine:
    """Create the engine for ``settings`` with the per-dialect settings described above."""
    url = settings.engine_url
    if url.get_backend_name() == "postgresql":
        return _postgres_engine(settings)
    if url.database and url.database != ":memory:":
        # Convenience for local runs: the default points into ./var, which may not exist yet.
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    busy_timeout = sqlite_busy_timeout_ms or settings.sqlite_busy_timeout_ms
    engine = create_engine(url)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control away from the sqlite3 module so that SQLAlchemy's "begin"
        # event below decides how each transaction starts.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout)}")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA journal_mode = WAL")
        # NORMAL is durable across application crashes in WAL mode and much cheaper than FULL.
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        statement = conn.get_execution_options().get(BEGIN)
        if statement:
            # On the driver's cursor: SQLAlchemy's execution path cost more than the BEGIN.
            execute_driver_sql(conn, statement)

    return engine


def _postgres_engine(settings: Settings) -> Engine:
    engine = create_engine(
        settings.engine_url,
        # Connections live in autocommit and only a write transaction leaves it (below), as on
        # SQLite: a read is one statement, with no BEGIN before it, no ROLLBACK after it, and no
        # switch of the connection's mode on checkout and return (docs/performance.md).
        isolation_level="AUTOCOMMIT",
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_pool_max_overflow,
        pool_timeout=settings.database_pool_timeout,
        connect_args={
            "connect_timeout": settings.database_connect_timeout,
            "options": f"-c statement_timeout={settings.database_statement_timeout_ms}",
            "application_name": "api",
            # A database host that vanishes without closing the connection (power, network)
            # is noticed within about a minute instead of the kernel's two hours.
            "keepalives": 1,
            "keepalives_idle": 30,
            "keepalives_interval": 10,
            "keepalives_count": 3,
        },
    )
    event.listen(engine, "checkout", _drop_dead_connection)

    @event.listens_for(engine, "begin")
    def _leave_autocommit(conn: Connection) -> None:
        # A write transaction: psycopg itself sends BEGIN before the next statement (cheaper than
        # a BEGIN statement through SQLAlchemy), and COMMIT or ROLLBACK at its end.
        if conn.get_execution_options().get(BEGIN):
            # dbapi_connection is None only on a closed or invalidated connection, never here.
            conn.connection.dbapi_connection.autocommit = False  # type: ignore[union-attr]

    @event.listens_for(engine, "checkin")
    def _back_to_autocommit(dbapi_conn: Any, _record: Any) -> None:
        # After the pool's reset (a ROLLBACK if anything was left open): ready for reads again.
        if dbapi_conn is not None and not dbapi_conn.autocommit:
            # A connection too broken for this is dropped by the next checkout's check.
            with contextlib.suppress(psycopg.Error):
                dbapi_conn.autocommit = True

    return engine


def _drop_dead_connection(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
    """Discard a pooled connection that the server has closed, before a request uses it.

    An idle connection has nothing to read: if its socket is readable, the server has sent its
    goodbye (a restart, a fast shutdown, an idle timeout) or the socket is gone. One poll() and no
    round trip, where ``pool_pre_ping`` sends a query per checkout (docs/performance.md).
    Raising DisconnectionError makes the pool open a fresh connection instead.
    """
    poller = select.poll()
    try:
        poller.register(dbapi_conn.fileno(), select.POLLIN)
    except (OSError, ValueError) as exc:  # closed already
        raise DisconnectionError("connection already closed") from exc
    if poller.poll(0):
        raise DisconnectionError("the server closed this connection while it was idle")


class Database:
    """The engine plus the two ways a request talks to it: a read or a write transaction.

    A request can also run inside one *request transaction* (``request_transaction``), which
    idempotent POSTs use so that their writes and their stored answer commit together: while it
    is open, ``write()`` becomes a savepoint inside it and ``read()`` reads through it.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        sqlite = engine.dialect.name == "sqlite"
        self._writer = engine.execution_options(**{BEGIN: "BEGIN IMMEDIATE" if sqlite else "BEGIN"})
        # Per thread and per request: gthread workers run one request per thread at a time.
        self._request_conn: ContextVar[Connection | None] = ContextVar(
            f"request_conn_{id(self)}", default=None
        )

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A connection for reads; each statement is its own transaction (see above)."""
        outer = self._request_conn.get()
        if outer is not None:
            yield outer
            return
        with self.engine.connect() as conn:
            yield conn

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A transaction that commits on success and rolls back on any exception."""
        outer = self._request_conn.get()
        if outer is not None:
            # A savepoint: a failed write (a unique violation turned into a 409) rolls back to
            # here and leaves the request transaction usable for storing that 409.
            with outer.begin_nested():
                yield outer
            return
        with self._writer.begin() as conn:
            yield conn

    def begin_request_transaction(self) -> Connection:
        """Open the request transaction; end it with ``end_request_transaction``."""
        conn = self._writer.connect()
        try:
            conn.begin()
        except BaseException:
            conn.close()
            raise
        self._request_conn.set(conn)
        return conn

    def request_connection(self) -> Connection | None:
        """The open request transaction's connection, if there is one."""
        return self._request_conn.get()

    def end_request_transaction(self, *, commit: bool) -> None:
        """Commit or roll back the request transaction, if one is open, and release it."""
        conn = self._request_conn.get()
        if conn is None:
            return
        self._request_conn.set(None)
        try:
            if commit:
                conn.commit()
            else:
                conn.rollback()
        finally:
            conn.close()
