"""One JSON error shape for every failure, whoever raised it (abort, routing, Werkzeug, us)."""

import logging
from collections.abc import Iterable

from flask import Flask, Response, jsonify, request
from pydantic import ValidationError
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from werkzeug.exceptions import HTTPException, InternalServerError
from werkzeug.http import HTTP_STATUS_CODES

from api.web.metrics import count_database_error
from api.web.request_log import current_request_id

logger = logging.getLogger(__name__)

# Werkzeug's phrases rather than http.HTTPStatus: Python 3.13 renamed some (413, 422), and the
# body must not change with the interpreter version.
REASON = HTTP_STATUS_CODES


def error_response(
    status: int,
    message: str,
    *,
    errors: dict[str, str] | None = None,
    headers: Iterable[tuple[str, str]] = (),
) -> Response:
    """Build the standard error body (see ``web.models.ErrorBody``)."""
    body: dict[str, object] = {
        "error": REASON.get(status, "Unknown Error"),
        "message": message,
        "status": status,
        "request_id": current_request_id(),
    }
    if errors is not None:
        body["errors"] = errors
    response = jsonify(body)
    response.status_code = status
    response.headers.extend(headers)
    if status == 401 and "WWW-Authenticate" not in response.headers:
        response.headers["WWW-Authenticate"] = "Bearer"
    return response


def validation_error_response(exc: ValidationError) -> Response:
    """422 with one message per field; flask-openapi3 calls this for body, query and path."""
    errors: dict[str, str] = {}
    for err in exc.errors(include_url=False):
        # Models are flat, so the first location part is the field. Deeper parts only name
        # union branches (e.g. "str", "none"); the first error per field is the useful one.
        field = str(err["loc"][0]) if err["loc"] else "body"
        errors.setdefault(field, err["msg"])
    return error_response(422, "The request contains invalid fields.", errors=errors)


def _handle_http_exception(exc: HTTPException) -> Response:
    # Keep headers that carry meaning (Allow on 405, WWW-Authenticate, Retry-After) but not the
    # HTML Content-Type of Werkzeug's default page.
    headers = [(k, v) for k, v in exc.get_headers() if k.lower() != "content-type"]
    status = exc.code or 500
    return error_response(status, exc.description or REASON.get(status, ""), headers=headers)


def _handle_database_unavailable(exc: Exception) -> Response:
    # Locked past the busy timeout, server down, pool exhausted: transient, so tell the client to
    # retry rather than report a bug.
    count_database_error()
    logger.warning(
        "database unavailable",
        extra={"fields": {"request_id": current_request_id(), "error": type(exc).__name__}},
    )
    return error_response(
        503,
        "The database is temporarily unavailable. Please retry.",
        headers=[("Retry-After", "1")],
    )


def _handle_unexpected(exc: Exception) -> Response:
    if isinstance(exc, SQLAlchemyError):
        count_database_error()
    logger.exception(
        "unhandled exception",
        extra={
            "fields": {
                "request_id": current_request_id(),
                "method": request.method,
                "path": request.path,
            }
        },
    )
    # Werkzeug's generic text: says nothing about the code or the data.
    return error_response(500, InternalServerError.description)


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(HTTPException, _handle_http_exception)
    app.register_error_handler(OperationalError, _handle_database_unavailable)
    app.register_error_handler(PoolTimeoutError, _handle_database_unavailable)
    app.register_error_handler(Exception, _handle_unexpected)
