"""Per-app singletons, reachable from request code without importing the app module."""

from flask import current_app

from api.core.db import Database


def get_db() -> Database:
    """The ``Database`` of the current app (created in ``create_app``)."""
    db: Database = current_app.extensions["api.db"]
    return db
