"""Request bodies are strict RFC 8259 JSON: found by the adversarial suite (tests/adversarial).

Python's parser takes the last of two equal keys, guesses UTF-16/32 from the bytes, and accepts
NaN/Infinity. Another parser in front of or behind the API may read the same bytes differently, so
each of these is a 400 (or a 415 for a non-UTF-8 charset), never silently accepted.
"""

import json

import pytest
from api_helpers import assert_error

ALICE = {"name": "Alice", "email": "alice@example.com"}


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ('{"name": "Mallory", "name": "Alice", "email": "alice@example.com"}', "name"),
        ('{"name": "Alice", "email": "x@example.com", "email": "alice@example.com"}', "email"),
    ],
)
def test_repeated_keys_are_400_naming_the_key(client, data, key):
    response = client.post("/api/users", data=data, content_type="application/json")
    assert_error(response, 400, f"Request body repeats the key {key!r} in one JSON object.")
    assert client.get("/api/users").get_json()["items"] == []


def test_repeated_keys_in_item_bodies_are_400(client, make_user):
    user = make_user()
    data = '{"name": "Notebook", "is_public": false, "is_public": true}'
    response = client.post(
        "/api/items", data=data, content_type="application/json", headers=user.headers
    )
    assert_error(response, 400, "Request body repeats the key 'is_public' in one JSON object.")


@pytest.mark.parametrize(
    "data",
    [
        json.dumps(ALICE).encode("utf-16"),  # with a BOM
        json.dumps(ALICE).encode("utf-16-le"),
        json.dumps(ALICE).encode("utf-32"),
        b'{"name": "Al\xe9ce", "email": "alice@example.com"}',  # Latin-1, not UTF-8
    ],
)
def test_bodies_that_are_not_utf8_are_400(client, data):
    response = client.post("/api/users", data=data, content_type="application/json")
    assert_error(response, 400, "Request body is not valid JSON.")


def test_a_utf8_bom_is_ignored(client):
    data = b"\xef\xbb\xbf" + json.dumps(ALICE).encode()
    assert client.post("/api/users", data=data, content_type="application/json").status_code == 201


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_json_constants_are_400(client, make_user, constant):
    user = make_user()
    data = f'{{"name": "Notebook", "is_public": {constant}}}'
    response = client.post(
        "/api/items", data=data, content_type="application/json", headers=user.headers
    )
    assert_error(response, 400, "Request body is not valid JSON.")


@pytest.mark.parametrize("charset", ["utf-16", "latin-1", "ebcdic"])
def test_a_charset_other_than_utf8_is_415(client, charset):
    response = client.post(
        "/api/users", data=json.dumps(ALICE), content_type=f"application/json; charset={charset}"
    )
    assert_error(response, 415, "JSON must be encoded as UTF-8.")


@pytest.mark.parametrize("charset", ["utf-8", "UTF-8", "utf8"])
def test_a_utf8_charset_is_accepted(client, charset):
    response = client.post(
        "/api/users", data=json.dumps(ALICE), content_type=f"application/json; charset={charset}"
    )
    assert response.status_code == 201


def test_deeply_nested_objects_are_400(client):
    data = '{"a": ' * 100_000 + "1" + "}" * 100_000
    response = client.post("/api/users", data=data, content_type="application/json")
    assert_error(response, 400, "Request body is not valid JSON.")
