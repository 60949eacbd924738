"""The checks flask-openapi3 does not make before it validates a JSON body.

flask-openapi3 reads bodies with ``get_json(silent=True)``: a missing, non-JSON or malformed body
becomes ``None`` and then a 422. The contract wants 415 for a wrong media type and 400 for a
body that is not a JSON object or lacks required fields, so this hook runs first for every view
that declares a ``body`` model, and leaves the parsed JSON cached for flask-openapi3 to reuse.

Bodies are parsed as strict RFC 8259 JSON (``StrictJSONProvider``): UTF-8 only, no
``NaN``/``Infinity``, and no object that repeats a key. Python's parser would otherwise take the
last of two ``"email"`` keys while another JSON parser (a proxy, a WAF, an audit log reader) takes
the first: two components would act on different values from one request.
"""

import json
from functools import cache
from typing import Any, NoReturn

from flask import Flask, Request, request
from flask.json.provider import DefaultJSONProvider
from pydantic import BaseModel
from werkzeug.exceptions import BadRequest, UnsupportedMediaType

from api.web.view_models import current_view_model

INVALID_JSON = "Request body is not valid JSON."


class DuplicateKeyError(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(f"Request body repeats the key {key!r} in one JSON object.")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DuplicateKeyError(key)
            seen.add(key)
    return obj


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


class StrictJSONProvider(DefaultJSONProvider):
    """``loads`` accepts only what RFC 8259 allows (dumps is unchanged)."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        if isinstance(s, bytes | bytearray):
            # UTF-8 only (RFC 8259 section 8.1); json.loads would guess UTF-16/32 from the bytes.
            # A BOM may be ignored. UnicodeDecodeError is a ValueError: a 400.
            s = s.decode("utf-8").removeprefix("\ufeff")
        kwargs.setdefault("object_pairs_hook", _unique_keys)
        kwargs.setdefault("parse_constant", _no_constant)
        return json.loads(s, **kwargs)


class ApiRequest(Request):
    def on_json_loading_failed(self, e: ValueError | None) -> Any:
        # Flask's default drops the reason; a repeated key deserves a precise answer.
        if isinstance(e, DuplicateKeyError):
            raise BadRequest(str(e))
        raise BadRequest(INVALID_JSON)


@cache  # one list per model class
def _required(model: type[BaseModel]) -> tuple[str, ...]:
    return tuple(name for name, field in model.model_fields.items() if field.is_required())


def _check_json_body() -> None:
    model = current_view_model("body")
    if model is None:
        return
    raw = request.get_data(cache=True)  # raises 413 past MAX_CONTENT_LENGTH
    if not raw:
        raise BadRequest("Request body must be a JSON object.")
    if not request.is_json:
        raise UnsupportedMediaType("Content-Type must be application/json.")
    charset = request.mimetype_params.get("charset", "utf-8").lower()
    if charset not in ("utf-8", "utf8"):
        raise UnsupportedMediaType("JSON must be encoded as UTF-8.")
    try:
        data = request.get_json()  # a BadRequest with the reason (ApiRequest) if not JSON
    except RecursionError:
        # Absurdly deep nesting: still the client's malformed input, not a 500.
        raise BadRequest(INVALID_JSON) from None
    if not isinstance(data, dict):
        raise BadRequest("Request body must be a JSON object.")
    missing = [name for name in _required(model) if name not in data]
    if missing:
        raise BadRequest(f"Missing fields: {missing}")


def init_json_body(app: Flask) -> None:
    app.request_class = ApiRequest
    app.json = StrictJSONProvider(app)
    app.before_request(_check_json_body)
