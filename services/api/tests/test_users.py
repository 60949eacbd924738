"""Users: sign-up validation, public and private views, the caller's account."""

import pytest
from api_helpers import assert_error


def test_create_returns_user_key_and_location(client):
    response = client.post("/api/users", json={"name": "  Alice  ", "email": "Alice@Example.COM"})
    assert response.status_code == 201
    body = response.get_json()
    assert set(body) == {"id", "name", "email", "created_at", "api_key"}
    assert body["name"] == "Alice"  # trimmed
    assert body["email"] == "Alice@example.com"  # domain lower-cased
    assert body["created_at"].endswith("Z")
    assert len(body["api_key"]) >= 40
    assert response.headers["Location"] == f"http://localhost/api/users/{body['id']}"


def test_only_a_hash_of_the_key_is_stored(app, make_user):
    user = make_user()
    with app.extensions["api.db"].read() as conn:
        stored = conn.exec_driver_sql("SELECT * FROM users").one()._mapping
    assert user.api_key not in [str(v) for v in stored.values()]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "Request body must be a JSON object."),
        ({"data": "", "content_type": "application/json"}, "Request body must be a JSON object."),
        ({"data": "{", "content_type": "application/json"}, "Request body is not valid JSON."),
        ({"data": b"\xff\xfe", "content_type": "application/json"}, None),
        ({"json": ["name", "email"]}, "Request body must be a JSON object."),
        ({"json": "Alice"}, "Request body must be a JSON object."),
        ({"json": None}, "Request body must be a JSON object."),
        ({"data": "[" * 100_000, "content_type": "application/json"}, None),
        ({"json": {}}, "Missing fields: ['name', 'email']"),
        ({"json": {"email": "a@example.com"}}, "Missing fields: ['name']"),
    ],
)
def test_malformed_bodies_are_400(client, kwargs, message):
    assert_error(client.post("/api/users", **kwargs), 400, message)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"data": "name=Alice", "content_type": "text/plain"},
        {"data": {"name": "Alice", "email": "a@example.com"}},  # form-encoded
        {"data": '{"name": "Alice", "email": "a@example.com"}'},  # no Content-Type
    ],
)
def test_wrong_media_type_is_415(client, kwargs):
    assert_error(client.post("/api/users", **kwargs), 415, "Content-Type must be application/json.")


def test_json_suffix_media_types_are_accepted(client):
    response = client.post(
        "/api/users",
        data='{"name": "Alice", "email": "a@example.com"}',
        content_type="application/vnd.api+json; charset=utf-8",
    )
    assert response.status_code == 201


@pytest.mark.parametrize(
    ("payload", "fields"),
    [
        ({"name": "A", "email": "a@example.com"}, {"name"}),
        ({"name": "   A   ", "email": "a@example.com"}, {"name"}),
        ({"name": "x" * 101, "email": "a@example.com"}, {"name"}),
        ({"name": "Al\x00ce", "email": "a@example.com"}, {"name"}),
        ({"name": 42, "email": "a@example.com"}, {"name"}),
        ({"name": None, "email": "a@example.com"}, {"name"}),
        ({"name": "Alice", "email": "not-an-email"}, {"email"}),
        ({"name": "Alice", "email": "a@b"}, {"email"}),
        ({"name": "Alice", "email": "Alice <a@example.com>"}, {"email"}),
        ({"name": "", "email": ""}, {"name", "email"}),
        ({"name": "Alice", "email": "a@example.com", "admin": True}, {"admin"}),
    ],
)
def test_invalid_fields_are_422_with_per_field_errors(client, payload, fields):
    body = assert_error(client.post("/api/users", json=payload), 422)
    assert set(body["errors"]) == fields
    assert all(isinstance(msg, str) and msg for msg in body["errors"].values())


def test_duplicate_email_is_409_case_insensitively(client, make_user):
    make_user(email="alice@example.com")
    response = client.post("/api/users", json={"name": "Other", "email": "ALICE@EXAMPLE.COM"})
    assert_error(response, 409, "A user with this email address already exists.")


def test_public_views_hide_the_email(client, make_user):
    user = make_user()
    one = client.get(f"/api/users/{user.id}")
    assert one.status_code == 200
    assert one.get_json() == {
        "id": user.id,
        "name": user.name,
        "created_at": user.body["created_at"],
    }
    listed = client.get("/api/users").get_json()
    assert listed["items"] == [one.get_json()]
    assert listed["next_cursor"] is None


def test_unknown_user_is_404(client):
    assert_error(client.get("/api/users/12345"), 404, "User not found.")


def test_me_requires_auth_and_shows_the_email(client, make_user):
    user = make_user()
    response = assert_error(client.get("/api/users/me"), 401)
    assert response["error"] == "Unauthorized"
    me = client.get("/api/users/me", headers=user.headers)
    assert me.status_code == 200
    assert me.get_json() == {
        "id": user.id,
        "name": user.name,
        "email": user.email,
        "created_at": user.body["created_at"],
    }


def test_patch_me(client, make_user):
    user = make_user()
    response = client.patch(
        "/api/users/me", json={"name": " Bob ", "email": "BOB@Example.com"}, headers=user.headers
    )
    assert response.status_code == 200
    assert response.get_json()["name"] == "Bob"
    assert response.get_json()["email"] == "BOB@example.com"
    # An empty patch changes nothing.
    same = client.patch("/api/users/me", json={}, headers=user.headers)
    assert same.get_json() == response.get_json()


@pytest.mark.parametrize(
    "payload", [{"name": "x"}, {"email": "nope"}, {"name": None}, {"email": None}, {"extra": 1}]
)
def test_patch_me_validates_like_create(client, make_user, payload):
    user = make_user()
    body = assert_error(client.patch("/api/users/me", json=payload, headers=user.headers), 422)
    assert set(body["errors"]) == set(payload)


def test_patch_me_to_a_taken_email_is_409(client, make_user):
    make_user(email="taken@example.com")
    user = make_user()
    response = client.patch(
        "/api/users/me", json={"email": "Taken@example.com"}, headers=user.headers
    )
    assert_error(response, 409)


def test_patch_me_can_keep_own_email(client, make_user):
    user = make_user(email="me@example.com")
    response = client.patch("/api/users/me", json={"email": "me@example.com"}, headers=user.headers)
    assert response.status_code == 200


def test_delete_me_removes_user_and_items(client, make_user):
    user = make_user()
    other = make_user()
    public = client.post(
        "/api/items", json={"name": "pub", "is_public": True}, headers=user.headers
    ).get_json()
    response = client.delete("/api/users/me", headers=user.headers)
    assert response.status_code == 204
    assert response.data == b""
    assert "Content-Type" not in response.headers
    assert_error(client.get(f"/api/users/{user.id}"), 404)
    assert_error(client.get(f"/api/items/{public['id']}", headers=other.headers), 404)
    assert_error(client.get("/api/users/me", headers=user.headers), 401)


def test_rotate_api_key(client, make_user):
    user = make_user()
    response = client.post("/api/users/me/api-key", headers=user.headers)
    assert response.status_code == 200
    new_key = response.get_json()["api_key"]
    assert set(response.get_json()) == {"api_key"}
    assert new_key != user.api_key
    assert_error(client.get("/api/users/me", headers=user.headers), 401)
    me = client.get("/api/users/me", headers={"Authorization": f"Bearer {new_key}"})
    assert me.get_json()["id"] == user.id
