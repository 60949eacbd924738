"""Keyset pagination: bounded, stable, opaque cursors, and errors instead of 500s."""

import pytest
from api_helpers import assert_error
from flask import url_for

from api.web.pagination import decode_cursor, encode_cursor


def test_cursor_round_trip():
    for value in (1, 20, 2**63 - 1):
        assert decode_cursor(encode_cursor(value)) == value


@pytest.mark.parametrize("cursor", ["", "!!", "abc", "LTE", "MA", "A" * 40])
def test_bad_cursors_do_not_decode(cursor):
    with pytest.raises(ValueError, match="invalid cursor"):
        decode_cursor(cursor)


def test_walk_all_pages(client, make_user):
    created = [make_user().id for _ in range(7)]
    seen, url, pages = [], "/api/users?limit=3", 0
    while url:
        response = client.get(url)
        assert response.status_code == 200
        page = response.get_json()
        assert len(page["items"]) <= 3
        seen += [user["id"] for user in page["items"]]
        pages += 1
        if page["next_cursor"] is None:
            assert "Link" not in response.headers
            url = None
        else:
            link = response.headers["Link"]
            assert link.endswith('>; rel="next"')
            url = link[1 : link.index(">")].removeprefix("http://localhost")
            assert f"cursor={page['next_cursor']}" in url
    assert seen == created
    assert pages == 3


def test_default_limit_is_20(client, make_user):
    for _ in range(21):
        make_user()
    page = client.get("/api/users").get_json()
    assert len(page["items"]) == 20
    assert page["next_cursor"] is not None


def test_link_keeps_filters(client, make_user):
    user = make_user()
    for _ in range(2):
        client.post("/api/items", json={"name": "x", "is_public": True}, headers=user.headers)
    response = client.get("/api/items", query_string={"limit": 1, "owner_id": user.id})
    assert f"owner_id={user.id}" in response.headers["Link"]


def test_link_is_the_url_that_url_for_builds(app, client, make_user):
    """The next link keeps every parameter the request had (even undeclared ones, with characters
    that need escaping), in the encoding and at the address Flask's url_for gives."""
    for _ in range(2):
        make_user()
    query = {"limit": 1, "note": "a b&c/é:!"}
    response = client.get("/api/users", query_string=query, base_url="https://api.example:8443")
    cursor = response.get_json()["next_cursor"]
    with app.test_request_context(base_url="https://api.example:8443"):
        expected = url_for("users.list_users", _external=True, **query, cursor=cursor)
    assert response.headers["Link"] == f'<{expected}>; rel="next"'
    assert "note=a+b%26c/%C3%A9:!" in expected


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=abc", "limit"),
        ("limit=", "limit"),
        ("cursor=%21%21", "cursor"),
        ("cursor=abc", "cursor"),
        ("cursor=", "cursor"),
        ("cursor=" + "A" * 65, "cursor"),
    ],
)
@pytest.mark.parametrize("path", ["/api/users", "/api/items"])
def test_invalid_page_parameters_are_422(client, path, query, field):
    body = assert_error(client.get(f"{path}?{query}"), 422)
    assert field in body["errors"]


@pytest.mark.parametrize(
    ("query", "repeated"),
    [
        ("limit=5&limit=oops", ["limit"]),
        ("limit=5&limit=5", ["limit"]),
        ("cursor=MQ&limit=2&cursor=Mg&limit=3", ["cursor", "limit"]),
    ],
)
def test_a_repeated_query_parameter_is_refused(client, make_user, query, repeated):
    """Only the first value would be validated, while something in front may read another."""
    make_user()
    body = assert_error(client.get(f"/api/users?{query}"), 422)
    assert body["errors"] == dict.fromkeys(repeated, "must be given only once")


def test_parameters_the_view_does_not_declare_are_not_policed(client):
    assert client.get("/api/users?utm=1&utm=2").status_code == 200
    assert client.get("/api/items/1?x=1&x=2").status_code == 404
