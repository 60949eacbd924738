"""Request id and the one JSON access-log line per request."""

import logging
import re
import time
import uuid

from flask import Flask, Response, g, request

logger = logging.getLogger("api.access")

REQUEST_ID_HEADER = "X-Request-ID"
# Ids from outside end up in logs and headers: accept only short, boring ones.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")


def current_request_id() -> str:
    """The id of the request being served: the caller's (nginx's) if sane, else a new one."""
    if "request_id" not in g:
        incoming = request.headers.get(REQUEST_ID_HEADER, "")
        g.request_id = incoming if _SANE_REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex
    request_id: str = g.request_id
    return request_id


def _start() -> None:
    g.started = time.perf_counter()
    current_request_id()


def _finish(response: Response) -> Response:
    request_id = current_request_id()
    response.headers[REQUEST_ID_HEADER] = request_id
    if not logger.isEnabledFor(logging.INFO):
        return response
    started = g.get("started")
    duration_ms = (time.perf_counter() - started) * 1000 if started is not None else None
    logger.info(
        "request",
        extra={
            "fields": {
                "request_id": request_id,
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "duration_ms": round(duration_ms, 2) if duration_ms is not None else None,
                # After ProxyFix: the client's address as nginx saw it.
                "remote_addr": request.remote_addr,
            }
        },
    )
    return response


def init_request_log(app: Flask) -> None:
    """Register first, so every other hook and error handler already has the request id."""
    app.before_request(_start)
    app.after_request(_finish)
