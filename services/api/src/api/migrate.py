"""Apply database migrations: ``python -m api.migrate``.

Run once before the server starts its workers (the container entrypoint does), never from the
workers themselves: several processes migrating one database at once would race. Idempotent:
an up-to-date database is left as it is.
"""

import sys

from alembic import command
from alembic.config import Config

from api.core.config import Settings, SettingsError, load_settings
from api.core.db import build_engine
from api.core.logging import configure_logging


def alembic_config() -> Config:
    """Alembic configuration pointing at the migrations shipped inside the package."""
    config = Config()
    config.set_main_option("script_location", "api:migrations")
    return config


def upgrade(settings: Settings, revision: str = "head") -> None:
    """Bring the database named in ``settings`` to ``revision``."""
    engine = build_engine(
        settings.database_url, sqlite_busy_timeout_ms=settings.sqlite_busy_timeout_ms
    )
    try:
        with engine.connect() as conn:
            config = alembic_config()
            config.attributes["connection"] = conn
            command.upgrade(config, revision)
    finally:
        engine.dispose()


def main() -> None:
    try:
        settings = load_settings()
    except SettingsError as exc:
        sys.exit(str(exc))
    logger = configure_logging(settings.log_level).getChild("migrate")
    upgrade(settings)
    logger.info("database is at the latest revision")


if __name__ == "__main__":
    main()
