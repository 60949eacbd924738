"""The API goes away: nginx answers JSON 502/503, then recovers by itself (no nginx restart)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from tests.support.domain import RESOURCES_PATH, USERS_PATH, user_body, user_url
from tests.support.http import assert_error_json

GATEWAY_ERRORS = (502, 503, 504)


def test_api_down_gives_json_gateway_error_and_stack_recovers(stack):
    user = stack.create_user("Survivor")
    nginx_before = stack.nginx.container.attrs["State"]
    api_ip_before = stack.api.ip()

    stack.api.stop(timeout=30)
    try:
        assert stack.api.status() == "exited"
        probes = [
            ("GET", RESOURCES_PATH, {}),
            ("POST", USERS_PATH, {"json": user_body("Nobody")}),
            ("GET", "/readyz", {}),
        ]
        # Concurrently: each may wait for nginx's connect timeout to the vanished address.
        with ThreadPoolExecutor(len(probes)) as pool:
            responses = list(
                pool.map(lambda p: stack.request(p[0], p[1], timeout=30, **p[2]), probes)
            )
        for (method, path, _), response in zip(probes, responses, strict=True):
            assert response.status_code in GATEWAY_ERRORS, (method, path, response.status_code)
            body = assert_error_json(response, response.status_code)
            assert response.headers.get("X-Request-ID") == body["request_id"]
    finally:
        stack.api.start_again()

    # Back without touching nginx: it follows the API (same or new address) on its own.
    stack.wait_ready(timeout=60)
    response = stack.get(user_url(user["id"]))
    assert response.status_code == 200, response.text

    nginx_after = stack.nginx.container.attrs["State"]
    assert nginx_after["StartedAt"] == nginx_before["StartedAt"], "nginx was restarted"
    assert nginx_after["Running"] is True
    assert stack.nginx.container.attrs["RestartCount"] == 0
    print(f"API address before/after: {api_ip_before} / {stack.api.ip()}")
