"""Apply database migrations: ``python -m api.migrate``.

Run before the server starts its workers (the container entrypoint does, unless
``MIGRATE_ON_START=false``), or once per deploy as a job; never from the workers themselves.
With ``MIGRATE_ON_START=false`` the entrypoint instead waits (up to ``DATABASE_WAIT_SECONDS``)
until the job has brought the database to this version's newest revision, so a new version never
serves a schema older than its code (a Swarm rolling update keeps the old tasks meanwhile).

Safe to run from several containers at once: the whole upgrade runs in one transaction that first
takes a lock (a PostgreSQL advisory lock, or SQLite's write lock), so concurrent runs queue, the
first applies each revision and the others find the database up to date. Idempotent: an
up-to-date database is left as it is.
"""

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import Script, ScriptDirectory
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import OperationalError

from api.core.config import Settings, SettingsError, load_settings
from api.core.db import BEGIN, build_engine
from api.core.logging import configure_logging

# Any fixed 64-bit number, the same in every version of the app: it names "the migration lock".
ADVISORY_LOCK_ID = 0x666C61736B5F6D67  # b"flask_mg"
# A run that waits behind another one waits this long on SQLite (its lock has no queue).
SQLITE_LOCK_WAIT_MS = 120_000


def alembic_config(script_location: str = "api:migrations") -> Config:
    """Alembic configuration pointing at the migrations shipped inside the package."""
    config = Config()
    config.set_main_option("script_location", script_location)
    return config


def _lock(conn: Connection) -> None:
    """Take the migration lock inside the transaction ``conn`` has open; released at its end."""
    if conn.dialect.name == "postgresql":
        # No statement timeout here: waiting for a long migration of another run is expected,
        # and a migration itself may take longer than a request may.
        conn.execute(text("SET LOCAL statement_timeout = 0"))
        conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": ADVISORY_LOCK_ID})
    # SQLite: the transaction began with BEGIN EXCLUSIVE (see upgrade), which is the lock.


def _connect(engine: Engine, wait_seconds: float) -> Connection:
    """Connect, retrying for up to ``wait_seconds`` while the database is not there yet."""
    deadline = time.monotonic() + wait_seconds
    logger = logging.getLogger("api.migrate")
    while True:
        try:
            return engine.connect()
        except OperationalError as exc:
            if time.monotonic() >= deadline:
                raise
            logger.info(
                "waiting for the database", extra={"fields": {"error": str(exc.orig).strip()}}
            )
            time.sleep(1)


def upgrade(settings: Settings, revision: str = "head") -> None:
    """Bring the database named in ``settings`` to ``revision``, holding the migration lock."""
    engine = build_engine(settings, sqlite_busy_timeout_ms=SQLITE_LOCK_WAIT_MS)
    try:
        # Without an explicit BEGIN the SQLite engine runs each statement on its own (core/db.py):
        # a second run could read the old revision while the first is half-way.
        conn = _connect(engine, settings.database_wait_seconds)
        sqlite = engine.dialect.name == "sqlite"
        conn.execution_options(**{BEGIN: "BEGIN EXCLUSIVE" if sqlite else "BEGIN"})
        with conn, conn.begin():
            _lock(conn)
            config = alembic_config()
            # Alembic joins this transaction instead of opening its own (env.py).
            config.attributes["connection"] = conn
            command.upgrade(config, revision)
    finally:
        engine.dispose()


def new_revision(message: str, config: Config | None = None) -> Path:
    """Write a migration for what tables.py has and the migrations do not (``make migration``).

    Alembic compares the tables with a scratch SQLite database brought to the newest revision;
    the new file takes the next number (0003, 0004, ...). Read it before committing it:
    autogenerate misses some changes (renames look like a drop and an add).
    """
    config = config or alembic_config()
    head = ScriptDirectory.from_config(config).get_current_head()
    with tempfile.TemporaryDirectory() as scratch:
        settings = load_settings(database_url=f"sqlite:///{scratch}/scratch.sqlite3")
        engine = build_engine(settings)
        try:
            with engine.begin() as conn:
                config.attributes["connection"] = conn
                command.upgrade(config, "head")
                script = command.revision(
                    config, message=message, autogenerate=True, rev_id=f"{int(head or 0) + 1:04d}"
                )
        finally:
            engine.dispose()
    assert isinstance(script, Script), script  # one revision, not a list of them
    return Path(script.path)


def current_revision(settings: Settings) -> str | None:
    """The revision the database is at (None: not migrated at all); waits for it to connect."""
    engine = build_engine(settings)
    try:
        with _connect(engine, settings.database_wait_seconds) as conn:
            context = MigrationContext.configure(conn)
            return context.get_current_revision()
    finally:
        engine.dispose()


def wait_for_head(settings: Settings, logger: logging.Logger) -> None:
    """Return once the database is at the newest revision this code knows; exit at the deadline."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    deadline = time.monotonic() + settings.database_wait_seconds
    while (current := current_revision(settings)) != head:
        if time.monotonic() >= deadline:
            sys.exit(
                f"api.migrate: the database is at revision {current}, this version needs {head}: "
                f"run python -m api.migrate (waited DATABASE_WAIT_SECONDS="
                f"{settings.database_wait_seconds})"
            )
        logger.info(
            "waiting for the migration job",
            extra={"fields": {"database_revision": current, "needed": head}},
        )
        time.sleep(1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m api.migrate", description=__doc__)
    parser.add_argument(
        "--on-start",
        action="store_true",
        help="run only if MIGRATE_ON_START is true (the container entrypoint's call)",
    )
    parser.add_argument(
        "--new-revision",
        metavar="MESSAGE",
        help="write a migration for what tables.py adds (make migration m=...), then exit",
    )
    args = parser.parse_args(argv)
    if args.new_revision:
        print(f"wrote {new_revision(args.new_revision)}")
        return
    try:
        settings = load_settings()
    except SettingsError as exc:
        sys.exit(str(exc))
    logger = configure_logging(settings.log_level).getChild("migrate")
    if args.on_start and not settings.migrate_on_start:
        logger.info("MIGRATE_ON_START is false: waiting for the newest revision, not migrating")
        try:
            wait_for_head(settings, logger)
        except OperationalError as exc:
            sys.exit(
                f"api.migrate: the database did not accept a connection within "
                f"DATABASE_WAIT_SECONDS={settings.database_wait_seconds}: {str(exc.orig).strip()}"
            )
        logger.info("database is at the newest revision")
        return
    # Alembic names each revision it applies ("Running upgrade 0001 -> 0002"): log those too.
    alembic_logger = logging.getLogger("alembic")
    alembic_logger.handlers[:] = logger.parent.handlers if logger.parent else []
    alembic_logger.setLevel(logging.INFO)
    alembic_logger.propagate = False
    try:
        upgrade(settings)
    except OperationalError as exc:
        sys.exit(
            f"api.migrate: the database did not accept a connection within "
            f"DATABASE_WAIT_SECONDS={settings.database_wait_seconds}: {str(exc.orig).strip()}"
        )
    logger.info("database is at the latest revision")


if __name__ == "__main__":
    main()
