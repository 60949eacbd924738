"""Authorization attacks through nginx: other users' data, rotated keys, and key guessing.

- Mallory, holding a real key of her own, tries every way the API offers to read or change
  Alice's private item and Alice's account (direct ids, list filters, mass assignment of
  owner/id fields, methods on someone else's user URL, two Authorization headers): every attempt
  is refused and Alice's data is unchanged afterwards.
- A rotated key stops working at once: the very next requests, on fresh connections spread over
  every gunicorn worker, get 401; the new key works. The same for a deleted account's key.
- A burst of guessed keys at a protected route, from one address, against an nginx with the
  image's DEFAULT limits (its own container: the shared stack runs with limits off): it hits 429
  (JSON, Retry-After) after the burst allowance, so guessing is capped at the configured rate,
  and no guess is ever accepted.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.support.domain import (
    API_KEY_PATH,
    ME_PATH,
    NO_ACCESS,
    OWNER_FIELD,
    RESOURCES_PATH,
    USERS_PATH,
    bearer,
    owned_by,
    resource_body,
    resource_update,
    resource_url,
    user_url,
)
from tests.support.http import assert_error_json, new_session, raw_request
from tests.support.waiting import wait_until

SECRET = "secret"  # in Alice's private resource; no refusal may show it
ALICES = resource_body("Alice's diary", details=SECRET)


@pytest.fixture
def alice_and_mallory(stack):
    alice = stack.create_user("Alice Victim")
    mallory = stack.create_user("Mallory Attacker")
    created = stack.post(RESOURCES_PATH, json=ALICES, headers=bearer(alice["api_key"]))
    assert created.status_code == 201, created.text
    return alice, mallory, created.json()


def test_another_users_key_cannot_read_or_change_a_private_resource(stack, alice_and_mallory):
    alice, mallory, resource = alice_and_mallory
    as_mallory = bearer(mallory["api_key"])
    path = resource_url(resource["id"])

    for method, kwargs in [
        ("GET", {}),
        ("PATCH", {"json": resource_update("pwned")}),
        ("PATCH", {"json": resource_update(public=True)}),
        ("DELETE", {}),
    ]:
        response = stack.request(method, path, headers=as_mallory, **kwargs)
        body = assert_error_json(response, 403)
        assert body["message"] == NO_ACCESS, body
        assert SECRET not in response.text

    # Anonymous: same refusal. A wrong key: 401, not a silent anonymous read.
    assert_error_json(stack.get(path), 403)
    assert_error_json(stack.get(path, headers=bearer("not-a-real-key")), 401)

    # Lists never show it, filtered by owner or not, with or without a key.
    for headers in (as_mallory, {}):
        for query in ({}, owned_by(alice["id"]), {"limit": 100}):
            listed = stack.get(RESOURCES_PATH, params=query, headers=headers)
            assert listed.status_code == 200, listed.text
            assert resource["id"] not in {r["id"] for r in listed.json()["items"]}

    # Mass assignment: owner and id fields are unknown fields, refused.
    created = stack.post(
        RESOURCES_PATH,
        json={**resource_body("x"), OWNER_FIELD: alice["id"]},
        headers=as_mallory,
    )
    assert created.status_code == 422, created.text
    theirs = stack.post(RESOURCES_PATH, json=resource_body("mine"), headers=as_mallory)
    assert theirs.status_code == 201
    moved = stack.request(
        "PATCH",
        resource_url(theirs.json()["id"]),
        json={OWNER_FIELD: alice["id"]},
        headers=as_mallory,
    )
    assert moved.status_code == 422, moved.text

    # Two Authorization headers (Mallory's, then Alice's) never authenticate as either.
    for first, second in ((mallory, alice), (alice, mallory)):
        twice = raw_request(
            stack.https_port,
            f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
            f"Authorization: Bearer {first['api_key']}\r\n"
            f"Authorization: Bearer {second['api_key']}\r\n\r\n".encode(),
            str(stack.ca),
        )
        assert twice.status in (400, 401), twice.raw[:300]
        assert SECRET.encode() not in twice.body

    # Alice's resource is untouched.
    mine = stack.get(path, headers=bearer(alice["api_key"]))
    assert mine.status_code == 200
    fields = [*ALICES, OWNER_FIELD]
    assert {k: mine.json()[k] for k in fields} == {**ALICES, OWNER_FIELD: alice["id"]}


def test_another_users_key_cannot_read_or_change_an_account(stack, alice_and_mallory):
    alice, mallory, _ = alice_and_mallory
    as_mallory = bearer(mallory["api_key"])
    user_path = user_url(alice["id"])

    # The only account a key can reach is its own (/me); another user's URL has no writes.
    for method, kwargs in [
        ("PATCH", {"json": {"name": "pwned"}}),
        ("PUT", {"json": {"name": "pwned", "email": "p@example.com"}}),
        ("DELETE", {}),
        ("POST", {"json": {}}),
    ]:
        response = stack.request(method, user_path, headers=as_mallory, **kwargs)
        assert_error_json(response, 405)
    # Nor any route under it: a key of Alice's, her resources.
    collection = RESOURCES_PATH.rsplit("/", 1)[1]
    for path in (f"{user_path}/api-key", f"{user_path}/{collection}"):
        assert stack.post(path, headers=as_mallory).status_code in (404, 405)

    # Public views never carry the email.
    public = stack.get(user_path, headers=as_mallory)
    assert public.status_code == 200
    assert "email" not in public.json()
    listed = stack.get(USERS_PATH, params={"limit": 100}, headers=as_mallory)
    assert all("email" not in user for user in listed.json()["items"])

    # /me is Mallory whatever she adds: ids in the body are unknown fields, query ids ignored.
    sneaky = stack.request(
        "PATCH", ME_PATH, json={"id": alice["id"], "name": "x"}, headers=as_mallory
    )
    assert sneaky.status_code == 422, sneaky.text
    me = stack.get(ME_PATH, params={"id": alice["id"], "user_id": alice["id"]}, headers=as_mallory)
    assert me.status_code == 200
    assert me.json()["id"] == mallory["id"]
    # Taking Alice's email is a conflict, not a takeover.
    taken = stack.request("PATCH", ME_PATH, json={"email": alice["email"]}, headers=as_mallory)
    assert_error_json(taken, 409)

    # Alice's account is untouched and her key still works.
    alice_me = stack.get(ME_PATH, headers=bearer(alice["api_key"]))
    assert alice_me.status_code == 200
    assert alice_me.json()["name"] == alice["name"]
    assert alice_me.json()["email"] == alice["email"]


def statuses_on_fresh_connections(stack, key: str, count: int = 24) -> set[int]:
    """GET ME_PATH with `key`, each on a new TLS connection (spread over the workers)."""

    def one(_: int) -> int:
        return stack.get(ME_PATH, headers=bearer(key), timeout=10).status_code

    with ThreadPoolExecutor(4) as pool:
        return set(pool.map(one, range(count)))


def test_a_rotated_key_stops_working_at_once(stack, figures):
    user = stack.create_user("Rotating User")
    old = user["api_key"]
    assert statuses_on_fresh_connections(stack, old) == {200}

    rotated = stack.post(API_KEY_PATH, headers=bearer(old))
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["api_key"]
    assert new != old

    # No delay, no retry: the first requests after the rotation already refuse the old key.
    assert statuses_on_fresh_connections(stack, old) == {401}
    refused = stack.get(ME_PATH, headers=bearer(old))
    assert_error_json(refused, 401)
    assert refused.headers.get("WWW-Authenticate", "").startswith("Bearer")
    assert stack.post(API_KEY_PATH, headers=bearer(old)).status_code == 401
    assert statuses_on_fresh_connections(stack, new) == {200}

    # A deleted account's key stops working at once, too.
    assert stack.request("DELETE", ME_PATH, headers=bearer(new)).status_code == 204
    assert statuses_on_fresh_connections(stack, new) == {401}
    figures["auth_rotation"] = {"old_key_after_rotation": 401, "deleted_account_key": 401}


@pytest.fixture
def strict(stack, launcher) -> Iterator:
    """An nginx with the image's default limits (20r/s burst 40 on /api/) before the shared API."""
    nginx = launcher.nginx("nginx-adv-strict", upstream="api:8000")
    view = launcher.stack(stack.api, nginx)
    # The burst below starts from a serving nginx (wait_ready used only a few of the 40).
    wait_until(
        lambda: view.get(RESOURCES_PATH, timeout=5).status_code == 200,
        30,
        what="the strict nginx to serve",
    )
    yield view
    nginx.remove()


def test_a_key_guessing_burst_hits_the_rate_limit(strict, figures):
    threads, per_thread = 8, 40

    def guess(_: int) -> list[requests.Response]:
        responses = []
        with new_session(str(strict.ca)) as session:
            for _ in range(per_thread):
                key = secrets.token_urlsafe(32)
                responses.append(session.get(strict.url(ME_PATH), headers=bearer(key), timeout=10))
        return responses

    with ThreadPoolExecutor(threads) as pool:
        results = [r for batch in pool.map(guess, range(threads)) for r in batch]

    statuses = [r.status_code for r in results]
    limited = [r for r in results if r.status_code == 429]
    guessed = statuses.count(401)
    figures["auth_guessing"] = {
        "guesses": len(results),
        "answered_401": guessed,
        "rate_limited_429": len(limited),
        "accepted": statuses.count(200),
    }
    assert set(statuses) <= {401, 429}, sorted(set(statuses))
    assert statuses.count(200) == 0
    assert limited, f"{len(results)} guesses and not one 429"
    for response in (limited[0], limited[-1]):
        assert_error_json(response, 429)
        assert response.headers.get("Retry-After", "").isdigit(), response.headers
    # The limit capped the guessing: most of the burst never reached the API.
    assert guessed < len(results) // 2, figures["auth_guessing"]
