"""The pydantic model that the current request's flask-openapi3 view takes as a parameter.

flask-openapi3 reads a view's ``body``/``query``/... models from its type hints; the request
hooks that check the raw request before it (json_body.py, query_args.py) need the same models.
"""

from collections.abc import Callable
from functools import cache
from typing import Any, get_type_hints

from flask import current_app, request
from pydantic import BaseModel


@cache  # views are fixed once the app is built; resolving type hints per request is waste
def _declared(view: Callable[..., Any], parameter: str) -> type[BaseModel] | None:
    # Only flask-openapi3 views take these parameters; other views (static files, docs) may carry
    # annotations that do not resolve at runtime, so they are not evaluated at all.
    if parameter not in getattr(view, "__annotations__", {}):
        return None
    model: type[BaseModel] = get_type_hints(view)[parameter]
    return model


def current_view_model(parameter: str) -> type[BaseModel] | None:
    """The model the current request's view declares as ``parameter`` (e.g. "body"), or None."""
    view = current_app.view_functions.get(request.endpoint) if request.endpoint else None
    return _declared(view, parameter) if view is not None else None
