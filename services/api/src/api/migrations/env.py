"""Alembic environment: runs with the connection given by api.migrate, or builds one itself."""

from typing import Any, Literal

import sqlalchemy as sa
from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy.sql.elements import False_, True_

from api.core.config import load_settings
from api.core.db import build_engine
from api.tables import metadata

config = context.config


def render_portably(type_: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    """How `make migration` spells types and defaults, so that its output runs on both databases.

    It compares tables.py with a scratch SQLite database, so left alone it would write what
    SQLite says: ``sa.text("0")`` for a false default (PostgreSQL refuses an integer default on
    a boolean column) and ``sa.DATETIME()`` for a dropped table's timestamps (not a PostgreSQL
    type). It would also refer to ``api.tables.UTCDateTime``, and a migration must not import
    the app, whose tables change while history must not. False means "render as usual".
    """
    if type_ == "type":
        if isinstance(obj, sa.TypeDecorator):
            return f"sa.{obj.impl!r}"
        if isinstance(obj, sa.DATETIME):  # reflected from SQLite: every timestamp here is UTC
            return "sa.DateTime(timezone=True)"
    if type_ == "server_default" and isinstance(obj, sa.DefaultClause):
        if isinstance(obj.arg, True_ | False_):
            return f"sa.{'true' if isinstance(obj.arg, True_) else 'false'}()"
        column = getattr(obj, "column", None)  # a reflected boolean default is text: 0, 1, ...
        if column is not None and isinstance(column.type, sa.Boolean):
            value = str(getattr(obj.arg, "text", obj.arg)).strip("()'").lower()
            if value in {"0", "false", "1", "true"}:
                return "sa.false()" if value in {"0", "false"} else "sa.true()"
    return False


def _run(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds tables instead.
        render_as_batch=True,
        render_item=render_portably,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    # Plain `alembic` CLI use (e.g. `alembic revision --autogenerate`): settings from the env.
    settings = load_settings()
    engine = build_engine(settings)
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()
