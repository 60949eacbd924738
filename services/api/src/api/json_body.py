"""The checks flask-openapi3 does not make before it validates a JSON body.

flask-openapi3 reads bodies with ``get_json(silent=True)``: a missing, non-JSON or malformed body
becomes ``None`` and then a 422. The contract wants 415 for a wrong media type and 400 for a
body that is not a JSON object or lacks required fields, so this hook runs first for every view
that declares a ``body`` model, and leaves the parsed JSON cached for flask-openapi3 to reuse.
"""

from collections.abc import Callable
from functools import cache
from typing import Any, get_type_hints

from flask import Flask, current_app, request
from pydantic import BaseModel
from werkzeug.exceptions import BadRequest, UnsupportedMediaType


@cache  # views are fixed once the app is built; resolving type hints per request is waste
def _body_model(view: Callable[..., Any]) -> type[BaseModel] | None:
    # Only flask-openapi3 views take a `body`; other views (static files, docs) may carry
    # annotations that do not resolve at runtime, so they are not evaluated at all.
    if "body" not in getattr(view, "__annotations__", {}):
        return None
    return get_type_hints(view)["body"]


def _check_json_body() -> None:
    view = current_app.view_functions.get(request.endpoint) if request.endpoint else None
    model = _body_model(view) if view is not None else None
    if model is None:
        return
    raw = request.get_data(cache=True)  # raises 413 past MAX_CONTENT_LENGTH
    if not raw:
        raise BadRequest("Request body must be a JSON object.")
    if not request.is_json:
        raise UnsupportedMediaType("Content-Type must be application/json.")
    try:
        data = request.get_json()
    except (BadRequest, RecursionError):
        # RecursionError: absurdly deep nesting; still the client's malformed input, not a 500.
        raise BadRequest("Request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise BadRequest("Request body must be a JSON object.")
    required = [name for name, field in model.model_fields.items() if field.is_required()]
    missing = [name for name in required if name not in data]
    if missing:
        raise BadRequest(f"Missing fields: {missing}")


def init_json_body(app: Flask) -> None:
    app.before_request(_check_json_body)
