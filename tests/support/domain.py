"""The sample domain as the suites and the bench reach it: users, and the resource they own.

This is the one file outside services/api to change when you replace the sample resource
(``items``) with your own: the integration and adversarial suites and the bench (bench/*.py, and
through them bench/wrk/bench.lua) take every path, body and field name of the domain from here,
and a test that only needs "a user" or "a resource" does not care what they are.
scripts/rename_resource.py renames the resource here along with the API's own files.

The contract the tests rely on, whatever the resource is: a signed-up user gets an API key
(``auth``); ``POST RESOURCES_PATH`` creates a resource owned by the caller, private unless made
public; someone else's private resource is 403 (``NO_ACCESS``) at ``resource_url(id)``; the list at
``RESOURCES_PATH`` shows the public ones plus the caller's, ``owned_by`` filters it by owner.

Standard library only: the bench imports it too (bench/common.py).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Protocol

# --- paths --------------------------------------------------------------------------------------

USERS_PATH = "/api/users"  # POST: sign up; GET: the public list
ME_PATH = f"{USERS_PATH}/me"  # the caller's own account (GET, PATCH, DELETE)
API_KEY_PATH = f"{ME_PATH}/api-key"  # POST: a new key for the caller; the old one stops working
RESOURCES_PATH = "/api/items"  # POST: create a resource; GET: the list


def user_url(user_id: int | str) -> str:
    """The path of one user's public profile (``user_id`` as sent: any text, for attacks too)."""
    return f"{USERS_PATH}/{user_id}"


def resource_url(resource_id: int | str) -> str:
    """The path of one resource (``resource_id`` as sent: any text, for attacks too)."""
    return f"{RESOURCES_PATH}/{resource_id}"


# --- fields and messages ------------------------------------------------------------------------

OWNER_FIELD = "owner_id"  # a resource's owner (a user id), in its body and as the list's filter
NO_ACCESS = "You do not have access to this item."  # the 403 message for someone else's resource


def owned_by(user_id: int) -> dict[str, int]:
    """Query parameters that filter the resource list to ``user_id``'s resources."""
    return {OWNER_FIELD: user_id}


# --- bodies -------------------------------------------------------------------------------------


def unique_email(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}@example.com"


def user_body(name: str = "Test User", email: str | None = None) -> dict[str, str]:
    """A valid sign-up body (a fresh unique email unless one is given)."""
    return {"name": name, "email": email or unique_email()}


def resource_body(
    label: str = "resource", *, public: bool = False, details: str | None = None
) -> dict[str, Any]:
    """A valid create body: ``label`` names it, private unless ``public``; ``details`` (if given)
    is free text only those who may read the resource see."""
    body: dict[str, Any] = {"name": label}
    if details is not None:
        body["description"] = details
    body["is_public"] = public
    return body


def resource_update(label: str | None = None, *, public: bool | None = None) -> dict[str, Any]:
    """A valid partial update (PATCH) body: a new ``label`` and/or visibility (neither given: a
    new label)."""
    body: dict[str, Any] = {}
    if label is not None or public is None:
        body["name"] = "updated" if label is None else label
    if public is not None:
        body["is_public"] = public
    return body


def raw_resource_body(
    label: bytes = b'"n"', public: bytes | None = None, *, public_again: bytes | None = None
) -> bytes:
    """A create body written byte for byte, each value raw JSON text, for malformed-body tests:
    ``label`` the label's value, ``public`` (if given) the visibility's, ``public_again`` the
    same field once more (a duplicate key). Only what these say is wrong in it."""
    members = [b'"name": ' + label]
    members += [b'"is_public": ' + value for value in (public, public_again) if value is not None]
    return b"{" + b", ".join(members) + b"}"


def resource_label(body: dict[str, Any]) -> str:
    """The label a resource was created with (``resource_body``'s ``label``), from its body."""
    return body["name"]


# --- the generated typed client -----------------------------------------------------------------


@dataclass(frozen=True)
class ClientNames:
    """What `make client` (openapi-python-client) names after the resource: the module of its
    OpenAPI tag, its operations' modules (the views' names), its models, its id parameter."""

    module: str
    create: str
    get: str
    create_model: str
    model: str
    id_param: str


CLIENT = ClientNames(
    module="items",
    create="create_item",
    get="get_item",
    create_model="ItemCreate",
    model="Item",
    id_param="item_id",
)

# --- through a stack ----------------------------------------------------------------------------


class Poster(Protocol):
    """What the helpers below need of a stack (tests/support/containers.py's ``Stack``)."""

    def post(self, path: str, **kwargs: Any) -> Any: ...


class Getter(Protocol):
    def get(self, path: str, **kwargs: Any) -> Any: ...


def bearer(api_key: str) -> dict[str, str]:
    """The Authorization header for ``api_key``."""
    return {"Authorization": f"Bearer {api_key}"}


def auth(user: dict[str, Any]) -> dict[str, str]:
    """The Authorization header of a user returned by ``create_user``."""
    return bearer(user["api_key"])


def create_user(stack: Poster, name: str = "Test User", email: str | None = None) -> dict[str, Any]:
    """Sign up through ``stack`` (201 asserted); the body, with its ``api_key``."""
    response = stack.post(USERS_PATH, json=user_body(name, email))
    assert response.status_code == 201, response.text
    return response.json()


def create_resource(
    stack: Poster, owner: dict[str, Any], label: str = "resource", *, public: bool = False
) -> dict[str, Any]:
    """Create a resource owned by ``owner`` (201 asserted); the body."""
    response = stack.post(
        RESOURCES_PATH, json=resource_body(label, public=public), headers=auth(owner)
    )
    assert response.status_code == 201, response.text
    return response.json()


def owned_resources(stack: Getter, owner: dict[str, Any]) -> list[dict[str, Any]]:
    """Every resource of ``owner`` (as the owner sees them), page by page through the list."""
    found: list[dict[str, Any]] = []
    params: dict[str, Any] = {**owned_by(owner["id"]), "limit": 100}
    while True:
        response = stack.get(RESOURCES_PATH, params=params, headers=auth(owner), timeout=30)
        assert response.status_code == 200, response.text
        page = response.json()
        found.extend(page["items"])
        if not page["next_cursor"]:
            return found
        params["cursor"] = page["next_cursor"]
