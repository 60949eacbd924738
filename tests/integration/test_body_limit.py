"""client_max_body_size: an oversized body is refused by nginx and never reaches the API."""

from __future__ import annotations

import json
import uuid

from tests.support.domain import RESOURCES_PATH, USERS_PATH, unique_email, user_body
from tests.support.http import assert_error_json, find_log_entry
from tests.support.waiting import wait_until

TWO_MIB = 2 * 1024 * 1024  # the default limit is 1 MiB


def test_oversized_body_is_413_json_and_never_reaches_the_api(stack):
    probe_id = f"itest-413-{uuid.uuid4().hex}"
    body = json.dumps(user_body("x" * TWO_MIB, unique_email("big")))
    response = stack.post(
        USERS_PATH,
        data=body,
        headers={"Content-Type": "application/json", "X-Request-ID": probe_id},
        timeout=30,
    )
    error = assert_error_json(response, 413)
    assert error["request_id"] == probe_id

    # nginx logged the rejection under the probe's id ...
    nginx_entry = wait_until(
        lambda: find_log_entry(stack.nginx.logs(), probe_id), 10, what="nginx's log line"
    )
    assert nginx_entry["status"] == 413
    assert not nginx_entry.get("upstream_addr"), nginx_entry

    # ... and the API did not: once a later request (a marker) is in the API's log, every
    # earlier request it saw is too, and the probe is not among them.
    marker_id = f"itest-marker-{uuid.uuid4().hex}"
    assert stack.get(RESOURCES_PATH, headers={"X-Request-ID": marker_id}).status_code == 200
    wait_until(
        lambda: find_log_entry(stack.api.logs(), marker_id), 10, what="the marker in the API log"
    )
    api_logs = stack.api.logs()
    assert probe_id not in api_logs


def test_body_within_the_limit_reaches_the_api(stack):
    # Just under 1 MiB: nginx passes it on; the API judges it (a 900 KiB name is a 422).
    request_id = f"itest-900k-{uuid.uuid4().hex}"
    body = json.dumps(user_body("x" * (900 * 1024), unique_email("big")))
    response = stack.post(
        USERS_PATH,
        data=body,
        headers={"Content-Type": "application/json", "X-Request-ID": request_id},
        timeout=30,
    )
    api_entry = wait_until(
        lambda: find_log_entry(stack.api.logs(), request_id), 10, what="the request in the API log"
    )
    assert api_entry["status"] == response.status_code
    assert_error_json(response, 422)
