"""The API knows it is behind nginx: client address, scheme, host and port, and the request id."""

from __future__ import annotations

import uuid

from tests.support.domain import RESOURCES_PATH, USERS_PATH, user_body, user_url
from tests.support.http import find_log_entry
from tests.support.waiting import wait_until


def log_entries(stack, request_id: str) -> tuple[dict, dict]:
    """(nginx's, the API's) access-log entry for `request_id`, waiting for both."""
    nginx_entry = wait_until(
        lambda: find_log_entry(stack.nginx.logs(), request_id), 10, what="nginx's log line"
    )
    api_entry = wait_until(
        lambda: find_log_entry(stack.api.logs(), request_id), 10, what="the API's log line"
    )
    return nginx_entry, api_entry


def test_request_id_is_in_response_and_both_logs(stack):
    response = stack.get(RESOURCES_PATH)
    assert response.status_code == 200
    request_id = response.headers.get("X-Request-ID")
    assert request_id, "no X-Request-ID in the response"
    nginx_entry, api_entry = log_entries(stack, request_id)
    assert nginx_entry["request_id"] == request_id
    assert api_entry["request_id"] == request_id
    assert api_entry["path"] == RESOURCES_PATH
    assert api_entry["status"] == 200
    assert nginx_entry["upstream_status"] == "200"


def test_api_logs_the_client_address_nginx_saw(stack):
    response = stack.get(RESOURCES_PATH)
    nginx_entry, api_entry = log_entries(stack, response.headers["X-Request-ID"])
    client = nginx_entry["remote_addr"]
    assert client, nginx_entry
    assert api_entry["remote_addr"] == client
    assert api_entry["remote_addr"] != stack.nginx.ip(), "the API logged nginx's own address"


def test_client_cannot_spoof_its_address(stack):
    response = stack.get(
        RESOURCES_PATH, headers={"X-Forwarded-For": "203.0.113.66", "X-Real-IP": "203.0.113.66"}
    )
    assert response.status_code == 200
    nginx_entry, api_entry = log_entries(stack, response.headers["X-Request-ID"])
    assert api_entry["remote_addr"] == nginx_entry["remote_addr"] != "203.0.113.66"


def test_client_supplied_request_id_is_kept_and_a_bad_one_replaced(stack):
    mine = f"itest-{uuid.uuid4().hex}"
    response = stack.get(RESOURCES_PATH, headers={"X-Request-ID": mine})
    assert response.headers["X-Request-ID"] == mine
    log_entries(stack, mine)

    response = stack.get(RESOURCES_PATH, headers={"X-Request-ID": "bad id with spaces!"})
    replaced = response.headers["X-Request-ID"]
    assert replaced
    assert " " not in replaced
    log_entries(stack, replaced)


def test_location_is_https_on_the_public_host_and_port(stack):
    response = stack.post(USERS_PATH, json=user_body("Located"))
    assert response.status_code == 201, response.text
    location = response.headers["Location"]
    assert location == stack.url(user_url(response.json()["id"]))
    # ... and it works as a link.
    followed = stack.get(location.removeprefix(stack.base_url))
    assert followed.status_code == 200
    assert followed.json()["id"] == response.json()["id"]
