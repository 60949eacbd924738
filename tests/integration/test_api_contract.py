"""The API contract end to end: every call goes through nginx over HTTPS, as a client sees it."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.domain import (
    ME_PATH,
    NO_ACCESS,
    RESOURCES_PATH,
    USERS_PATH,
    auth,
    owned_by,
    resource_body,
    resource_url,
    unique_email,
    user_body,
    user_url,
)
from tests.support.fixtures import DATABASES, on_database
from tests.support.http import assert_error_json


@pytest.fixture(params=DATABASES)
def stack(request):
    """Every test here runs on SQLite and on PostgreSQL."""
    return on_database(request)


def test_create_user_returns_201_with_key_and_location(stack):
    email = unique_email("alice")
    response = stack.post(USERS_PATH, json=user_body("Alice", email))

    assert response.status_code == 201, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert {"id", "name", "email", "created_at", "api_key"} <= body.keys()
    assert body["name"] == "Alice"
    assert body["email"] == email
    assert isinstance(body["api_key"], str)
    assert len(body["api_key"]) >= 20
    assert response.headers["Location"].startswith("https://")
    assert response.headers["Location"].endswith(user_url(body["id"]))

    public = stack.get(user_url(body["id"]))
    assert public.status_code == 200
    assert public.json() == {"id": body["id"], "name": "Alice", "created_at": body["created_at"]}

    me = stack.get(ME_PATH, headers=auth(body))
    assert me.status_code == 200
    assert me.json()["email"] == email


def test_missing_field_is_400_naming_it(stack):
    response = stack.post(USERS_PATH, json={"name": "Alice"})
    body = assert_error_json(response, 400)
    assert "Missing fields: ['email']" in body["message"]


def test_invalid_json_is_400(stack):
    response = stack.post(USERS_PATH, data="not json", headers={"Content-Type": "application/json"})
    assert_error_json(response, 400)


def test_json_that_is_not_an_object_is_400(stack):
    response = stack.post(USERS_PATH, json=["Alice", "alice@example.com"])
    assert_error_json(response, 400)


def test_invalid_values_are_422_with_per_field_errors(stack):
    response = stack.post(USERS_PATH, json=user_body(" ", "not-an-address"))
    body = assert_error_json(response, 422)
    assert isinstance(body.get("errors"), dict), body
    assert {"name", "email"} <= body["errors"].keys(), body


def test_duplicate_email_is_409(stack):
    email = unique_email("dup")
    assert stack.post(USERS_PATH, json=user_body("First", email)).status_code == 201
    response = stack.post(USERS_PATH, json=user_body("Second", email))
    assert_error_json(response, 409)


def test_unknown_resource_is_404_json(stack):
    body = assert_error_json(stack.get(resource_url(999999999)), 404)
    assert body["error"]


def test_private_resource_is_403_with_exact_message(stack):
    owner = stack.create_user("Owner")
    other = stack.create_user("Other")
    created = stack.post(RESOURCES_PATH, json=resource_body("secret"), headers=auth(owner))
    assert created.status_code == 201, created.text
    url = resource_url(created.json()["id"])
    assert created.headers["Location"].endswith(url)

    assert stack.get(url, headers=auth(owner)).status_code == 200
    body = assert_error_json(stack.get(url, headers=auth(other)), 403)
    assert body["message"] == NO_ACCESS
    anonymous = assert_error_json(stack.get(url), 403)
    assert anonymous["message"] == NO_ACCESS


def test_protected_routes_are_401_with_bearer_challenge(stack):
    no_key = stack.post(RESOURCES_PATH, json=resource_body("x"))
    assert_error_json(no_key, 401)
    assert no_key.headers.get("WWW-Authenticate", "").startswith("Bearer")

    bad_key = stack.get(ME_PATH, headers={"Authorization": "Bearer not-a-real-key"})
    assert_error_json(bad_key, 401)
    assert bad_key.headers.get("WWW-Authenticate", "").startswith("Bearer")


def test_resource_list_paginates_with_a_cursor(stack):
    owner = stack.create_user("Lister")
    session = stack.session()
    created = []
    for n in range(5):
        response = session.post(
            stack.url(RESOURCES_PATH),
            json=resource_body(f"item {n}", public=n % 2 == 0),
            headers=auth(owner),
            timeout=10,
        )
        assert response.status_code == 201, response.text
        created.append(response.json()["id"])

    seen: list[int] = []
    cursor = None
    for _ in range(10):
        params: dict[str, Any] = {"limit": 2, **owned_by(owner["id"])}
        if cursor:
            params["cursor"] = cursor
        response = session.get(
            stack.url(RESOURCES_PATH), params=params, headers=auth(owner), timeout=10
        )
        assert response.status_code == 200, response.text
        page = response.json()
        assert set(page) >= {"items", "next_cursor"}, page
        assert len(page["items"]) <= 2
        seen.extend(item["id"] for item in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == created  # every resource exactly once, in a stable order, then the end


def test_invalid_pagination_parameters_are_client_errors(stack):
    for params in ({"limit": 0}, {"limit": 101}, {"limit": "many"}, {"cursor": "%%garbage%%"}):
        response = stack.get(RESOURCES_PATH, params=params)
        assert response.status_code in (400, 422), (params, response.status_code, response.text)
        assert_error_json(response, response.status_code)


def test_unknown_route_and_wrong_method_are_json(stack):
    assert_error_json(stack.get("/api/does-not-exist"), 404)
    assert_error_json(stack.get("/no-such-page"), 404)
    response = stack.post(user_url(1), json={})
    assert_error_json(response, 405)


def test_error_request_id_matches_response_header(stack):
    response = stack.get(resource_url(999999999))
    body = assert_error_json(response, 404)
    assert response.headers.get("X-Request-ID") == body["request_id"]
