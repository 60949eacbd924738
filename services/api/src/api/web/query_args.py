"""Query parameters that a view's model declares may appear at most once.

Werkzeug keeps every value of a repeated parameter and flask-openapi3 validates only the first,
so ``?limit=5&limit=oops`` passed as ``limit=5`` while a cache, proxy or log reader in front may
act on another value: the same ambiguity the strict body parser refuses for repeated JSON keys
(json_body.py). No parameter of this API is a list, so a repeated one is a 422 that names it.
"""

from functools import cache

from flask import Flask, Response, request
from pydantic import BaseModel

from api.web.errors import error_response
from api.web.view_models import current_view_model


@cache  # one set per model class
def _names(model: type[BaseModel]) -> frozenset[str]:
    return frozenset(field.alias or name for name, field in model.model_fields.items())


def _reject_repeated() -> Response | None:
    if not request.args:
        return None
    model = current_view_model("query")
    declared = _names(model) if model is not None else frozenset()
    repeated = sorted(k for k, values in request.args.lists() if len(values) > 1 and k in declared)
    if not repeated:
        return None
    return error_response(
        422,
        "The request contains invalid fields.",
        errors=dict.fromkeys(repeated, "must be given only once"),
    )


def init_query_args(app: Flask) -> None:
    app.before_request(_reject_repeated)
