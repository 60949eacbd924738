"""The examples of the seed guide (shared/docs/seed-guide.txt) hold against this API."""

from api_helpers import assert_error


def test_create_user(client):
    response = client.post("/api/users", json={"name": "Alice", "email": "alice@example.com"})
    assert response.status_code == 201
    data = response.get_json()
    assert data["name"] == "Alice"


def test_missing_fields(client):
    response = client.post("/api/users", json={"name": "Alice"})
    assert response.status_code == 400
    assert response.get_json()["message"] == "Missing fields: ['email']"


def test_invalid_json(client):
    response = client.post("/api/users", data="not json", content_type="application/json")
    assert response.status_code == 400


def test_abort_returns_json(client):
    response = client.get("/api/items/999")
    assert response.status_code == 404
    data = response.get_json()
    assert "error" in data


def test_private_item_is_forbidden(client, make_user):
    owner = make_user()
    item = client.post("/api/items", json={"name": "secret"}, headers=owner.headers).get_json()
    response = client.get(f"/api/items/{item['id']}")
    assert_error(response, 403, "You do not have access to this item.")
