"""PostgreSQL under the stack: an outage the API rides out, and a POST whose answer was lost."""

from __future__ import annotations

import json
import socket
import ssl
import uuid

import pytest

from tests.support.domain import (
    RESOURCES_PATH,
    USERS_PATH,
    owned_by,
    resource_body,
    user_body,
    user_url,
)
from tests.support.fixtures import DATABASES, on_database
from tests.support.http import assert_error_json, find_log_entry
from tests.support.waiting import wait_until


def test_readyz_follows_the_database_and_the_api_is_not_restarted(postgres_stack):
    stack = postgres_stack
    user = stack.create_user("Before the outage")
    api_started = stack.api.container.attrs["State"]["StartedAt"]

    stack.db.stop(timeout=30)
    try:
        # The API's liveness probe does no I/O, so Docker keeps the API running; readiness and
        # every database request answer 503 JSON, at once, with Retry-After.
        assert stack.get("/healthz").status_code == 200
        assert_error_json(stack.get("/readyz"), 503)
        down = stack.post(USERS_PATH, json=user_body("During"))
        assert_error_json(down, 503)
        assert down.headers.get("Retry-After") == "1"
    finally:
        stack.db.start_again()

    wait_until(lambda: stack.get("/readyz").status_code == 200, 60, what="/readyz back to 200")
    assert stack.get(user_url(user["id"])).status_code == 200
    assert stack.api.container.attrs["State"]["StartedAt"] == api_started, "the API restarted"
    assert stack.api.container.attrs["RestartCount"] == 0


@pytest.fixture(params=DATABASES)
def stack(request):
    return on_database(request)


def test_a_post_whose_answer_was_never_read_is_replayed_once(stack):
    """Send a POST, close the socket before reading the answer, retry with the same key."""
    owner = stack.create_user("Retrier")
    idempotency_key = str(uuid.uuid4())
    request_id = f"itest-lost-answer-{uuid.uuid4().hex}"
    body = json.dumps(resource_body("written once")).encode()
    request = (
        f"POST {RESOURCES_PATH} HTTP/1.1\r\nHost: localhost:{stack.https_port}\r\n"
        f"Authorization: Bearer {owner['api_key']}\r\nIdempotency-Key: {idempotency_key}\r\n"
        f"X-Request-ID: {request_id}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body
    tls = ssl.create_default_context(cafile=str(stack.ca))
    raw = socket.create_connection(("127.0.0.1", stack.https_port), timeout=10)
    with tls.wrap_socket(raw, server_hostname="localhost") as sock:
        sock.sendall(request)
        # The API has answered (its log line carries our request id): hang up without reading.
        entry = wait_until(
            lambda: find_log_entry(stack.api.logs(), request_id), 20, what="the POST in the log"
        )
    assert entry["status"] == 201, entry

    headers = {"Authorization": f"Bearer {owner['api_key']}", "Idempotency-Key": idempotency_key}
    retry = stack.post(
        RESOURCES_PATH, data=body, headers={**headers, "Content-Type": "application/json"}
    )
    assert retry.status_code == 201, retry.text
    assert retry.headers.get("Idempotent-Replayed") == "true"
    listed = stack.get(
        RESOURCES_PATH,
        params=owned_by(owner["id"]),
        headers={"Authorization": headers["Authorization"]},
    )
    assert [resource["id"] for resource in listed.json()["items"]] == [retry.json()["id"]]
