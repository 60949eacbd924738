"""Alembic environment: runs with the connection given by api.migrate, or builds one itself."""

from alembic import context

from api.core.config import load_settings
from api.core.db import build_engine
from api.tables import metadata

config = context.config


def _run(connection: object) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds tables instead.
        render_as_batch=True,
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
