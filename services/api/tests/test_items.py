"""Items: ownership, visibility, validation."""

import pytest
from api_helpers import assert_error

NO_ACCESS = "You do not have access to this item."


@pytest.fixture
def owner(make_user):
    return make_user()


@pytest.fixture
def stranger(make_user):
    return make_user()


def create_item(client, user, **fields):
    response = client.post("/api/items", json={"name": "thing", **fields}, headers=user.headers)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def test_create_item(client, owner):
    response = client.post(
        "/api/items", json={"name": "  Notebook ", "description": "A5"}, headers=owner.headers
    )
    assert response.status_code == 201
    item = response.get_json()
    assert set(item) == {
        "id",
        "name",
        "description",
        "is_public",
        "owner_id",
        "created_at",
        "updated_at",
    }
    assert item["name"] == "Notebook"
    assert item["description"] == "A5"
    assert item["is_public"] is False
    assert item["owner_id"] == owner.id
    assert item["created_at"] == item["updated_at"]
    assert response.headers["Location"] == f"http://localhost/api/items/{item['id']}"


def test_create_requires_auth_before_body_checks(client):
    response = client.post("/api/items", data="not json", content_type="application/json")
    body = assert_error(response, 401)
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert body["error"] == "Unauthorized"


@pytest.mark.parametrize(
    ("payload", "fields"),
    [
        ({"name": ""}, {"name"}),
        ({"name": "   "}, {"name"}),
        ({"name": "x" * 201}, {"name"}),
        ({"name": "ok", "description": "x" * 2001}, {"description"}),
        ({"name": "ok", "description": None}, {"description"}),
        ({"name": "ok", "is_public": "yes"}, {"is_public"}),
        ({"name": "ok", "is_public": 1}, {"is_public"}),
        ({"name": "ok", "owner_id": 5}, {"owner_id"}),
    ],
)
def test_create_validation(client, owner, payload, fields):
    response = client.post("/api/items", json=payload, headers=owner.headers)
    assert set(assert_error(response, 422)["errors"]) == fields


def test_create_missing_name_is_400(client, owner):
    response = client.post("/api/items", json={"description": "x"}, headers=owner.headers)
    assert_error(response, 400, "Missing fields: ['name']")


def test_get_rules(client, owner, stranger):
    private = create_item(client, owner)
    public = create_item(client, owner, is_public=True)
    # Owner sees both; others (and anonymous callers) only the public one.
    assert client.get(f"/api/items/{private['id']}", headers=owner.headers).status_code == 200
    assert client.get(f"/api/items/{public['id']}").get_json() == public
    assert client.get(f"/api/items/{public['id']}", headers=stranger.headers).status_code == 200
    assert_error(client.get(f"/api/items/{private['id']}"), 403, NO_ACCESS)
    assert_error(
        client.get(f"/api/items/{private['id']}", headers=stranger.headers), 403, NO_ACCESS
    )
    assert_error(client.get("/api/items/999999"), 404, "Item not found.")


def test_invalid_key_on_optional_auth_route_is_401_not_anonymous(client, owner):
    public = create_item(client, owner, is_public=True)
    response = client.get(f"/api/items/{public['id']}", headers={"Authorization": "Bearer nope"})
    assert_error(response, 401)
    assert_error(client.get("/api/items", headers={"Authorization": "Bearer nope"}), 401)


def test_patch_owner_only(client, owner, stranger):
    item = create_item(client, owner)
    url = f"/api/items/{item['id']}"
    assert_error(client.patch(url, json={"name": "x"}, headers=stranger.headers), 403, NO_ACCESS)
    assert_error(client.patch(url, json={"name": "x"}), 401)
    assert_error(client.patch("/api/items/999999", json={"name": "x"}, headers=owner.headers), 404)
    response = client.patch(url, json={"is_public": True, "name": " New "}, headers=owner.headers)
    assert response.status_code == 200
    updated = response.get_json()
    assert updated["name"] == "New"
    assert updated["is_public"] is True
    assert updated["description"] == item["description"]
    assert updated["updated_at"] >= item["updated_at"]
    assert updated["created_at"] == item["created_at"]


@pytest.mark.parametrize("payload", [{"name": ""}, {"name": None}, {"is_public": None}, {"x": 1}])
def test_patch_validation(client, owner, payload):
    item = create_item(client, owner)
    response = client.patch(f"/api/items/{item['id']}", json=payload, headers=owner.headers)
    assert set(assert_error(response, 422)["errors"]) == set(payload)


def test_delete_owner_only(client, owner, stranger):
    item = create_item(client, owner, is_public=True)
    url = f"/api/items/{item['id']}"
    assert_error(client.delete(url, headers=stranger.headers), 403, NO_ACCESS)
    assert_error(client.delete(url), 401)
    response = client.delete(url, headers=owner.headers)
    assert response.status_code == 204
    assert response.data == b""
    assert_error(client.get(url), 404)
    assert_error(client.delete(url, headers=owner.headers), 404)


def test_list_shows_public_items_and_own(client, owner, stranger):
    mine = create_item(client, owner)
    theirs_private = create_item(client, stranger)
    theirs_public = create_item(client, stranger, is_public=True)

    def ids(**kwargs):
        response = client.get("/api/items", **kwargs)
        assert response.status_code == 200
        return [item["id"] for item in response.get_json()["items"]]

    assert ids() == [theirs_public["id"]]
    assert ids(headers=owner.headers) == [mine["id"], theirs_public["id"]]
    assert ids(headers=stranger.headers) == [theirs_private["id"], theirs_public["id"]]
    owner_filter = {"owner_id": stranger.id}
    assert ids(query_string=owner_filter, headers=owner.headers) == [theirs_public["id"]]
    assert ids(query_string={"owner_id": owner.id}) == []


@pytest.mark.parametrize("owner_id", ["abc", "0", "-1", str(2**63)])
def test_list_owner_filter_validation(client, owner_id):
    response = client.get("/api/items", query_string={"owner_id": owner_id})
    assert "owner_id" in assert_error(response, 422)["errors"]


@pytest.mark.parametrize("path", ["/api/items/0", f"/api/items/{2**63}", f"/api/users/{2**70}"])
def test_out_of_range_ids_are_rejected_not_500(client, path):
    assert client.get(path).status_code == 422
