"""Hot statements, run on the driver's cursor beneath the caller's SQLAlchemy connection.

SQLAlchemy's path from ``conn.execute`` to the driver (an execution context, its events, result
metadata, a ``Result``) cost more than twice what SQLite took to run a look-up by primary key:
about a sixth of a GET item's CPU (docs/performance.md, "The driver's cursor"). ``Prepared``
keeps what SQLAlchemy does that matters and skips the rest:

- the SQL is SQLAlchemy's own, compiled once per dialect, and the values go through the column
  types' own bind and result processors (``UTCDateTime``; SQLite's datetime strings);
- it runs on the driver connection of the ``Connection`` the caller holds, so inside that
  connection's transaction, if it has one;
- rows are SQLAlchemy ``Row`` objects (attributes, ``_mapping``), as ``conn.execute`` returns;
- a driver error is raised as SQLAlchemy's wrapper of it (``IntegrityError``,
  ``OperationalError``, ...), and a connection the database dropped is invalidated, as
  ``conn.execute`` does;
- while anything listens to the connection's cursor events (a test recording statements, a
  tracer such as OpenTelemetry's SQLAlchemy instrumentation), statements go through
  ``conn.execute`` so that it sees them.

A repository uses it for the few statements that nearly every request runs; any other statement
is clearer as a plain ``conn.execute``.
"""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Delete, Dialect, Insert, Row, Select, Update
from sqlalchemy.engine import result_tuple
from sqlalchemy.exc import DBAPIError

Processor = Callable[[Any], Any]
Statement = Select[Any] | Insert | Update | Delete


@dataclass(frozen=True)
class _Compiled:
    sql: str
    # (name, bind processor) of each placeholder, in the order of the SQL for a positional
    # paramstyle (SQLite's "?"), or once per name for a named one (psycopg's "%(name)s").
    binds: tuple[tuple[str, Processor | None], ...]
    positional: bool
    # Values of binds that the statement carries itself (a literal compared in a WHERE).
    defaults: Mapping[str, Any]


class Prepared:
    """A statement compiled once per dialect and run on the driver's cursor (see above)."""

    def __init__(self, statement: Statement) -> None:
        self.statement = statement
        self._columns = tuple(statement.exported_columns)
        self._make_row = result_tuple([str(column.key) for column in self._columns])
        # By dialect and by the names of the values given: an INSERT's SQL names the columns
        # given values (and leaves the rest to their defaults), as conn.execute compiles it.
        self._compiled: dict[tuple[str, tuple[str, ...]], _Compiled] = {}
        self._results: dict[str, tuple[tuple[int, Processor], ...]] = {}

    def all(self, conn: Connection, params: Mapping[str, Any]) -> list[Row[Any]]:
        """Every row, as ``list(conn.execute(statement, params))``."""
        if _observed(conn):
            return list(conn.execute(self.statement, params))
        return self._run(conn, params)

    def one_or_none(self, conn: Connection, params: Mapping[str, Any]) -> Row[Any] | None:
        """The only row or None, as ``conn.execute(statement, params).one_or_none()``."""
        if _observed(conn):
            return conn.execute(self.statement, params).one_or_none()
        rows = self._run(conn, params)
        if len(rows) > 1:
            # What Result.one_or_none raises; callers use this on a unique key only.
            raise ValueError(f"{len(rows)} rows where at most one was expected")
        return rows[0] if rows else None

    def one(self, conn: Connection, params: Mapping[str, Any]) -> Row[Any]:
        """The only row, as ``conn.execute(statement, params).one()``."""
        row = self.one_or_none(conn, params)
        if row is None:
            raise ValueError("no row where exactly one was expected")
        return row

    def _run(self, conn: Connection, params: Mapping[str, Any]) -> list[Row[Any]]:
        dialect = conn.dialect
        key = (dialect.name, tuple(params))
        compiled = self._compiled.get(key) or self._compile(dialect, key)
        values = {**compiled.defaults, **params}
        bound = [(name, f(values[name]) if f else values[name]) for name, f in compiled.binds]
        parameters: Any = tuple(v for _, v in bound) if compiled.positional else dict(bound)
        driver_conn = conn.connection.driver_connection
        assert driver_conn is not None  # a live Connection always has one
        cursor = driver_conn.cursor()
        try:
            cursor.execute(compiled.sql, parameters)
            fetched = cursor.fetchall() if cursor.description else []
            converters = self._results.get(dialect.name)
            if converters is None:
                converters = self._converters(dialect, cursor.description)
        except dialect.loaded_dbapi.Error as exc:
            raise _wrapped(conn, exc, compiled.sql, parameters, cursor) from exc
        finally:
            cursor.close()
        make_row = self._make_row
        if not converters:
            return [make_row(row) for row in fetched]
        rows = []
        for row in fetched:
            converted = list(row)
            for i, convert in converters:
                converted[i] = convert(converted[i])
            rows.append(make_row(converted))
        return rows

    def _compile(self, dialect: Dialect, key: tuple[str, tuple[str, ...]]) -> _Compiled:
        compiled = self.statement.compile(dialect=dialect, column_keys=list(key[1]))
        # Parameters SQLAlchemy renders into the SQL at run time (an "IN" list, a LIMIT some
        # dialects cannot bind) would need its execution path: not for this one.
        if compiled.literal_execute_params or compiled.post_compile_params:
            raise TypeError(f"Prepared cannot run render-time parameters: {compiled}")
        names = compiled.positiontup or list(compiled.binds)
        binds = tuple(
            (name, compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect))
            for name in names
        )
        defaults = {name: bind.value for name, bind in compiled.binds.items() if not bind.required}
        result = _Compiled(
            sql=compiled.string,
            binds=binds,
            positional=bool(compiled.positiontup),
            defaults=defaults,
        )
        self._compiled[key] = result
        return result

    def _converters(
        self, dialect: Dialect, description: Sequence[Sequence[Any]] | None
    ) -> tuple[tuple[int, Processor], ...]:
        """(position, result processor) of each column whose type converts what the driver
        returns, from the driver's type codes as SQLAlchemy's own result metadata does."""
        type_codes = [d[1] for d in description] if description else [None] * len(self._columns)
        processors = (
            column.type.dialect_impl(dialect).result_processor(dialect, type_code)
            for column, type_code in zip(self._columns, type_codes, strict=True)
        )
        converters = tuple((i, f) for i, f in enumerate(processors) if f is not None)
        self._results[dialect.name] = converters
        return converters


def execute_driver_sql(conn: Connection, sql: str) -> None:
    """Run ``sql``, a statement with no parameters and no rows (``BEGIN IMMEDIATE``), as
    ``conn.exec_driver_sql(sql)`` would: on the driver's cursor, with the errors and the
    listeners of ``Prepared``."""
    if _observed(conn):
        conn.exec_driver_sql(sql)
        return
    driver_conn = conn.connection.driver_connection
    assert driver_conn is not None  # a live Connection always has one
    cursor = driver_conn.cursor()
    try:
        cursor.execute(sql)
    except conn.dialect.loaded_dbapi.Error as exc:
        raise _wrapped(conn, exc, sql, (), cursor) from exc
    finally:
        cursor.close()


def _observed(conn: Connection) -> bool:
    """Whether a listener (on the connection or its engine) wants to see each statement."""
    dispatch = conn.dispatch
    return bool(dispatch.before_cursor_execute or dispatch.after_cursor_execute)


def _wrapped(conn: Connection, exc: Any, sql: str, parameters: Any, cursor: Any) -> DBAPIError:
    """SQLAlchemy's exception for a driver error, as ``conn.execute`` would raise it."""
    dialect = conn.dialect
    disconnected = dialect.is_disconnect(exc, conn.connection.driver_connection, cursor)
    error: DBAPIError = DBAPIError.instance(
        sql,
        parameters,
        exc,
        dialect.loaded_dbapi.Error,
        connection_invalidated=disconnected,
        dialect=dialect,
    )
    if disconnected:
        # The pool must not hand this connection out again.
        conn.invalidate(exc)
    return error
