"""CORS: the browser origins that may call the API (``CORS_ALLOWED_ORIGINS``; none by default).

With no origin configured nothing is registered and no response carries a CORS header. Otherwise
flask-cors writes the headers, configured so that:

- only the exact origins of the setting match (each an anchored, escaped pattern: flask-cors would
  read a literal with ``[`` -- an IPv6 origin -- as a regular expression, and ``re.match`` only
  anchors the start);
- a request without ``Origin`` gets no ``Access-Control-Allow-Origin`` (flask-cors's
  ``always_send`` would list every configured origin in it);
- its own exception wrapping is off: Flask runs ``after_request`` for every answer, errors and
  500s included, so wrapping ``handle_exception`` would only run it twice.

Two things flask-cors does not do are done here:

- A preflight (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``) is answered 204
  by a hook registered right after the request id's, so bearer authentication, the query and body
  checks and the ``Idempotency-Key`` claim never see it: a browser sends a preflight without
  credentials or body, and would take their 401/415 as a refusal of the real request.
- ``Vary: Origin`` on every response, allowed origin or not, with ``Origin`` or without: the
  answer depends on that header, so no cache may hand one origin's answer to another (flask-cors
  adds it only when several origins are configured and one matched).

No credentials mode (``Access-Control-Allow-Credentials``): the API authenticates with bearer
keys that the page sends explicitly, never with cookies. nginx adds the same headers to the
errors it answers itself (nginx/conf.d/cors.conf.template); the lists below must match it.
"""

import re

from flask import Flask, Response, request
from flask_cors import CORS

from api.core.config import Settings
from api.web.responses import no_content

# Methods a preflight may ask for: every method a route of this API takes (a test checks them).
METHODS = ("DELETE", "GET", "HEAD", "PATCH", "POST")
# Request headers a browser client may send beyond the CORS-safelisted ones.
ALLOW_HEADERS = ("Authorization", "Content-Type", "Idempotency-Key", "X-Request-ID")
# Response headers a client script may read beyond the safelisted ones (Cache-Control,
# Content-Type, Content-Length, ...): every other header the API or nginx sets for clients.
EXPOSE_HEADERS = (
    "Allow",
    "Idempotent-Replayed",
    "Link",
    "Location",
    "Retry-After",
    "WWW-Authenticate",
    "X-Request-ID",
)
# Seconds a browser may reuse a preflight's answer (per origin and URL). Chromium caps it at
# 7200, Firefox at 86400.
MAX_AGE = 7200


def _exactly(origin: str) -> re.Pattern[str]:
    return re.compile(re.escape(origin) + r"\Z", re.IGNORECASE)


def _answer_preflight() -> Response | None:
    if (
        request.method == "OPTIONS"
        and "Origin" in request.headers
        and "Access-Control-Request-Method" in request.headers
    ):
        # flask-cors's after_request adds the Access-Control-Allow-* headers if the origin is
        # allowed; for any other origin this 204 carries none, and the browser stops there.
        return no_content()
    return None


def _vary_on_origin(response: Response) -> Response:
    response.vary.add("Origin")
    return response


def init_cors(app: Flask, settings: Settings) -> None:
    """Register CORS if origins are configured; call it right after the request log's hooks."""
    if not settings.cors_allowed_origins:
        return
    CORS(
        app,
        origins=[_exactly(origin) for origin in settings.cors_allowed_origins],
        methods=list(METHODS),
        allow_headers=list(ALLOW_HEADERS),
        expose_headers=list(EXPOSE_HEADERS),
        max_age=MAX_AGE,
        supports_credentials=False,
        allow_private_network=False,
        always_send=False,
        vary_header=False,
        intercept_exceptions=False,
    )
    app.before_request(_answer_preflight)
    app.after_request(_vary_on_origin)
