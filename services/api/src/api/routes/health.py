"""Liveness and readiness probes (outside /api and out of the OpenAPI document)."""

from flask import Blueprint, Response, jsonify
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from api.extensions import get_db
from api.web.errors import error_response
from api.web.metrics import count_database_error

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """The process answers HTTP; deliberately no I/O, so a slow database cannot get it killed."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> Response:
    """Ready when the database answers and the schema is migrated."""
    try:
        with get_db().read() as conn:
            conn.execute(text("SELECT version_num FROM alembic_version")).first()
    except SQLAlchemyError:
        count_database_error()
        return error_response(503, "Database is not reachable or not migrated.")
    return jsonify(status="ok")
