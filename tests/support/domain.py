"""The sample domain, as the suites reach it: sign up a user, create an item, authenticate.

The one place outside services/api that knows the resources' paths and fields: a project that
replaces users and items changes this file, not the tests that only need "a user" or "a thing".
"""

from __future__ import annotations

import uuid
from typing import Any


def unique_email(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}@example.com"


def auth(user: dict[str, Any]) -> dict[str, str]:
    """The Authorization header of a user returned by ``create_user``."""
    return {"Authorization": f"Bearer {user['api_key']}"}


def create_user(stack: Any, name: str = "Test User", email: str | None = None) -> dict[str, Any]:
    """Sign up through ``stack`` (201 asserted); the body, with its ``api_key``."""
    response = stack.post("/api/users", json={"name": name, "email": email or unique_email()})
    assert response.status_code == 201, response.text
    return response.json()


def create_item(
    stack: Any, owner: dict[str, Any], name: str = "item", *, public: bool = False
) -> dict[str, Any]:
    """Create an item owned by ``owner`` (201 asserted); the body."""
    response = stack.post(
        "/api/items", json={"name": name, "is_public": public}, headers=auth(owner)
    )
    assert response.status_code == 201, response.text
    return response.json()
