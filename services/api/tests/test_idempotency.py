"""Idempotency-Key on POSTs: one run per key, the first answer replayed, secrets not at rest."""

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from api_helpers import assert_error
from sqlalchemy import text

from api.tables import idempotency_keys


def key() -> str:
    return str(uuid.uuid4())


def count(app, sql: str) -> int:
    with app.extensions["api.db"].read() as conn:
        return conn.execute(text(sql)).scalar_one()


def test_a_retried_sign_up_gets_the_first_answer_and_creates_nothing(app, client):
    headers = {"Idempotency-Key": key()}
    body = {"name": "Ann", "email": "ann@example.com"}
    first = client.post("/api/users", json=body, headers=headers)
    assert first.status_code == 201
    assert "Idempotent-Replayed" not in first.headers

    again = client.post("/api/users", json=body, headers=headers)
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json() == first.get_json()  # the API key too, shown "once" to this client
    assert again.headers["Location"] == first.headers["Location"]
    assert again.mimetype == "application/json"
    assert count(app, "SELECT count(*) FROM users") == 1


def test_the_body_is_compared_as_canonical_json(client):
    headers = {"Idempotency-Key": key(), "Content-Type": "application/json"}
    first = client.post(
        "/api/users", data='{"name":"Bo","email":"bo@example.com"}', headers=headers
    )
    again = client.post(
        "/api/users", data='{ "email": "bo@example.com",\n "name": "Bo" }', headers=headers
    )
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.get_json() == first.get_json()


def test_the_same_key_with_another_request_is_422(client, make_user):
    user = make_user()
    headers = {**user.headers, "Idempotency-Key": key()}
    assert client.post("/api/items", json={"name": "a"}, headers=headers).status_code == 201
    body = assert_error(client.post("/api/items", json={"name": "b"}, headers=headers), 422)
    assert "Idempotency-Key" in body["errors"]
    # Another path with the same key is another request too.
    assert_error(client.post("/api/users/me/api-key", headers=headers), 422)


def test_keys_are_scoped_to_the_user(client, make_user):
    alice, bob = make_user(), make_user()
    shared = key()
    for user in (alice, bob):
        response = client.post(
            "/api/items", json={"name": "n"}, headers={**user.headers, "Idempotency-Key": shared}
        )
        assert response.status_code == 201
        assert "Idempotent-Replayed" not in response.headers
        assert response.get_json()["owner_id"] == user.id


def test_a_client_error_is_kept_and_replayed(client, make_user):
    taken = make_user()
    headers = {"Idempotency-Key": key()}
    body = {"name": "Dup", "email": taken.email}
    assert_error(client.post("/api/users", json=body, headers=headers), 409)
    again = client.post("/api/users", json=body, headers=headers)
    assert_error(again, 409)
    assert again.headers["Idempotent-Replayed"] == "true"


def test_a_server_error_is_not_kept_and_the_retry_runs(app, client, make_user, monkeypatch):
    user = make_user()
    headers = {**user.headers, "Idempotency-Key": key()}
    from api.repositories import items as items_repo

    real_create = items_repo.create

    def broken(*args, **kwargs):
        real_create(*args, **kwargs)  # written, then the request fails: must be rolled back
        raise RuntimeError("boom")

    monkeypatch.setattr(items_repo, "create", broken)
    assert_error(client.post("/api/items", json={"name": "x"}, headers=headers), 500)
    assert count(app, "SELECT count(*) FROM items") == 0
    assert count(app, "SELECT count(*) FROM idempotency_keys") == 0

    monkeypatch.setattr(items_repo, "create", real_create)
    retry = client.post("/api/items", json={"name": "x"}, headers=headers)
    assert retry.status_code == 201
    assert "Idempotent-Replayed" not in retry.headers
    assert count(app, "SELECT count(*) FROM items") == 1


def test_a_claim_in_flight_is_409_until_its_lease_lapses(app, client, make_user):
    """A worker killed mid-request leaves its claim (and nothing else): 409, then a fresh run."""
    user = make_user()
    headers = {**user.headers, "Idempotency-Key": key()}
    first = client.post("/api/items", json={"name": "x"}, headers=headers)
    assert first.status_code == 201
    # Turn the record back into the claim of a request that is still running (or died).
    db = app.extensions["api.db"]
    with db.write() as conn:
        conn.execute(
            text(
                "UPDATE idempotency_keys SET response = NULL, claim_token = 'dead', "
                "lease_until = :until"
            ),
            {"until": "2999-01-01 00:00:00.000000"},
        )
    busy = client.post("/api/items", json={"name": "x"}, headers=headers)
    assert_error(busy, 409)
    assert int(busy.headers["Retry-After"]) >= 1

    with db.write() as conn:
        conn.execute(text("UPDATE idempotency_keys SET lease_until = '2000-01-01 00:00:00'"))
    retry = client.post("/api/items", json={"name": "x"}, headers=headers)
    assert retry.status_code == 201
    assert "Idempotent-Replayed" not in retry.headers
    assert (
        client.post("/api/items", json={"name": "x"}, headers=headers).headers[
            "Idempotent-Replayed"
        ]
        == "true"
    )


def test_a_lost_rotation_answer_can_be_fetched_with_the_revoked_key(client, make_user):
    user = make_user()
    headers = {**user.headers, "Idempotency-Key": key()}
    rotated = client.post("/api/users/me/api-key", headers=headers)
    assert rotated.status_code == 200
    new_key = rotated.get_json()["api_key"]

    retry = client.post("/api/users/me/api-key", headers=headers)  # the old, revoked key
    assert retry.status_code == 200
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert retry.get_json()["api_key"] == new_key

    # Anything else with the revoked key is still a 401.
    assert_error(client.get("/api/users/me", headers=user.headers), 401)
    other = {**user.headers, "Idempotency-Key": key()}
    assert_error(client.post("/api/users/me/api-key", headers=other), 401)
    assert_error(client.post("/api/items", json={"name": "x"}, headers=headers), 401)
    new = {"Authorization": f"Bearer {new_key}"}
    assert client.get("/api/users/me", headers=new).status_code == 200


def test_a_deleted_accounts_old_key_replays_nothing(client, make_user):
    user = make_user()
    headers = {**user.headers, "Idempotency-Key": key()}
    assert client.post("/api/items", json={"name": "x"}, headers=headers).status_code == 201
    assert client.delete("/api/users/me", headers=user.headers).status_code == 204
    assert_error(client.post("/api/items", json={"name": "x"}, headers=headers), 401)


def test_neither_key_nor_answer_is_stored_in_clear(app, client):
    idem = key()
    created = client.post(
        "/api/users",
        json={"name": "Cy", "email": "cy@example.com"},
        headers={"Idempotency-Key": idem},
    ).get_json()
    with app.extensions["api.db"].read() as conn:
        row = conn.execute(idempotency_keys.select()).one()
    stored = repr(tuple(row)).encode() + bytes(row.response)
    assert idem.encode() not in stored
    assert created["api_key"].encode() not in stored
    assert b"cy@example.com" not in stored


def test_expired_records_are_removed_on_the_next_claim(app, client):
    client.post(
        "/api/users",
        json={"name": "Dee", "email": "d@example.com"},
        headers={"Idempotency-Key": key()},
    )
    with app.extensions["api.db"].write() as conn:
        conn.execute(text("UPDATE idempotency_keys SET expires_at = '2000-01-01 00:00:00'"))
    client.post(
        "/api/users",
        json={"name": "Eve", "email": "e@example.com"},
        headers={"Idempotency-Key": key()},
    )
    assert count(app, "SELECT count(*) FROM idempotency_keys") == 1


@pytest.mark.parametrize(
    "value",
    [
        "short",
        "x" * 256,
        "schlüssel-1234567890",
        '"unterminated-0123456789',
        "tab\there-0123456789",
    ],
)
def test_a_malformed_key_is_400(client, value):
    response = client.post(
        "/api/users",
        json={"name": "Fay", "email": "f@example.com"},
        headers={"Idempotency-Key": value},
    )
    assert_error(response, 400)


def test_two_keys_are_400_and_a_quoted_key_is_its_content(client):
    body = {"name": "Gil", "email": "g@example.com"}
    two = client.post(
        "/api/users", json=body, headers=[("Idempotency-Key", key()), ("Idempotency-Key", key())]
    )
    assert_error(two, 400)
    bare = key()
    client.post("/api/users", json=body, headers={"Idempotency-Key": bare})
    quoted = client.post("/api/users", json=body, headers={"Idempotency-Key": f'"{bare}"'})
    assert quoted.headers["Idempotent-Replayed"] == "true"


def test_concurrent_retries_create_one_row(app):
    """Eight simultaneous copies of one sign-up: one runs, the others replay it (or wait)."""
    headers = {"Idempotency-Key": key()}
    body = {"name": "Hal", "email": "h@example.com"}

    def send(_: int):
        return app.test_client().post("/api/users", json=body, headers=headers)

    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(send, range(8)))
    created = [r for r in responses if r.status_code == 201]
    assert created, [r.status_code for r in responses]
    assert {r.get_json()["id"] for r in created} == {created[0].get_json()["id"]}
    assert all(r.status_code in (201, 409) for r in responses), [r.status_code for r in responses]
    assert count(app, "SELECT count(*) FROM users") == 1


def test_the_openapi_document_describes_the_header(client):
    spec = client.get("/api/openapi.json").get_json()
    for path, method in (
        ("/api/users", "post"),
        ("/api/items", "post"),
        ("/api/users/me/api-key", "post"),
    ):
        operation = spec["paths"][path][method]
        names = [p["name"] for p in operation.get("parameters", []) if p["in"] == "header"]
        assert "Idempotency-Key" in names, (path, operation.get("parameters"))
        assert {"409", "422"} <= operation["responses"].keys()
        success = next(code for code in operation["responses"] if code.startswith("2"))
        assert "Idempotent-Replayed" in operation["responses"][success].get("headers", {})
