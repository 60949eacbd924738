"""gunicorn's answers to requests it cannot parse, in the API's JSON error shape.

gunicorn refuses some requests before the app sees them -- a request line over 4094 bytes, a byte
outside printable ASCII in the target, a control character in a header value, more than 100
header fields -- and writes an HTML page for them. nginx lets such requests through and passes
the page on (proxy_intercept_errors is off so that the API's own errors reach clients as they
are), so without this a client could be handed HTML. gunicorn.conf.py installs ``write_error`` in
place of gunicorn's writer, in the master before it forks, so every worker uses it.

The message is fixed per status and never echoes the request. The request id is a fresh one:
gunicorn did not get as far as reading the X-Request-ID header.
"""

import json
import socket
import uuid

from gunicorn import util
from werkzeug.http import HTTP_STATUS_CODES

MESSAGES = {
    400: "The request could not be understood by the server.",
    414: "The request URI is too long.",
    431: "The request has too many or too large header fields.",
}


def write_error(sock: socket.socket, status_int: int, reason: str, mesg: str) -> None:
    """Drop-in for ``gunicorn.util.write_error`` (same signature; ``mesg`` is not sent)."""
    reason = HTTP_STATUS_CODES.get(status_int, reason)  # werkzeug's phrases, like the app's
    body = json.dumps(
        {
            "error": reason,
            "message": MESSAGES.get(status_int, reason),
            "status": status_int,
            "request_id": uuid.uuid4().hex,
        }
    ).encode()
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\n"
        "Connection: close\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "\r\n"
    ).encode("latin-1")
    util.write_nonblock(sock, head + body)


def install() -> None:
    util.write_error = write_error
