"""Bearer API-key authentication.

Views declare their policy with ``@auth_required`` or ``@auth_optional``; a ``before_request``
hook enforces it. A hook rather than a wrapping decorator because flask-openapi3 validates the
body before it calls the view: the hook makes a bad key a 401 before any 400/422 leaks details.
"""

import hmac
from collections.abc import Callable
from typing import Any, Literal, TypeVar

from flask import Flask, current_app, g, request
from flask_openapi3.types import SecuritySchemesDict
from sqlalchemy import Row
from werkzeug.exceptions import Unauthorized

from api.core.security import hash_api_key
from api.extensions import get_db
from api.repositories import users as users_repo

Policy = Literal["required", "optional"]
F = TypeVar("F", bound=Callable[..., Any])

# OpenAPI security requirements matching each policy ({} = anonymous allowed).
BEARER_SCHEME: SecuritySchemesDict = {"bearerAuth": {"type": "http", "scheme": "bearer"}}
SECURITY_REQUIRED: list[dict[str, list[str]]] = [{"bearerAuth": []}]
SECURITY_OPTIONAL: list[dict[str, list[str]]] = [{}, {"bearerAuth": []}]


def _policy(policy: Policy) -> Callable[[F], F]:
    def mark(view: F) -> F:
        # A marker that _authenticate reads; mypy knows no attributes of an arbitrary callable.
        view.auth_policy = policy  # type: ignore[attr-defined]
        return view

    return mark


auth_required = _policy("required")
auth_optional = _policy("optional")


def view_auth_policy(endpoint: str | None) -> Policy | None:
    """The policy declared on the view serving ``endpoint`` (None: no authentication at all)."""
    view = current_app.view_functions.get(endpoint) if endpoint else None
    return getattr(view, "auth_policy", None)


def _bearer_key(header: str) -> str | None:
    scheme, _, api_key = header.partition(" ")
    api_key = api_key.strip()
    return api_key if scheme.lower() == "bearer" and api_key else None


def presented_key_hash() -> str | None:
    """The digest of the bearer key the request carries, valid or not (None: none or malformed)."""
    header = request.headers.get("Authorization")
    api_key = _bearer_key(header) if header is not None else None
    return hash_api_key(api_key) if api_key else None


def _authenticate() -> None:
    policy = view_auth_policy(request.endpoint)
    if policy is None:
        return
    header = request.headers.get("Authorization")
    if header is None:
        if policy == "required":
            raise Unauthorized("Authentication required: send 'Authorization: Bearer <api_key>'.")
        g.user = None
        return
    # A header that is present but wrong is always an error, never a silent anonymous request.
    api_key = _bearer_key(header)
    if api_key is None:
        raise Unauthorized("Malformed Authorization header: expected 'Bearer <api_key>'.")
    key_hash = hash_api_key(api_key)
    with get_db().read() as conn:
        user = users_repo.get_by_key_hash(conn, key_hash)
    # The look-up is by digest; compare again in constant time so that no timing difference in
    # the database index can be turned into information about stored digests.
    if user is None or not hmac.compare_digest(user.api_key_hash, key_hash):
        raise Unauthorized("Invalid API key.")
    g.user = user


def current_user() -> Row[Any]:
    """The authenticated caller; only valid in views marked ``@auth_required``."""
    user: Row[Any] = g.user
    return user


def optional_user() -> Row[Any] | None:
    """The caller if a valid key was sent, else None (views marked ``@auth_optional``)."""
    user: Row[Any] | None = g.get("user")
    return user


def init_auth(app: Flask) -> None:
    app.before_request(_authenticate)
