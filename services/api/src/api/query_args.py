"""Query parameters that a view's model declares may appear at most once.

Werkzeug keeps every value of a repeated parameter and flask-openapi3 validates only the first,
so ``?limit=5&limit=oops`` passed as ``limit=5`` while a cache, proxy or log reader in front may
act on another value: the same ambiguity the strict body parser refuses for repeated JSON keys
(json_body.py). No parameter of this API is a list, so a repeated one is a 422 that names it.
"""

from collections.abc import Callable
from functools import cache
from typing import Any, get_type_hints

from flask import Flask, Response, current_app, request
from pydantic import BaseModel

from api.errors import error_response


@cache  # views are fixed once the app is built
def _declared(view: Callable[..., Any]) -> frozenset[str]:
    """The query parameter names of a flask-openapi3 view (empty if it takes no query)."""
    if "query" not in getattr(view, "__annotations__", {}):
        return frozenset()
    model: type[BaseModel] = get_type_hints(view)["query"]
    return frozenset(field.alias or name for name, field in model.model_fields.items())


def _reject_repeated() -> Response | None:
    if not request.args or request.endpoint is None:
        return None
    view = current_app.view_functions.get(request.endpoint)
    declared = _declared(view) if view is not None else frozenset()
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
