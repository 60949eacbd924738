"""The API goes away, or is not there yet: nginx answers JSON 502/503, then recovers by itself
(no nginx restart)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import requests

from tests.support.domain import RESOURCES_PATH, USERS_PATH, user_body, user_url
from tests.support.http import assert_error_json, new_session
from tests.support.waiting import wait_until

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


def test_nginx_starts_before_the_api_and_follows_it_when_it_appears(launcher):
    """As on a Swarm, which ignores depends_on and lists a task in DNS only once it is healthy:
    nginx must start while the API's name resolves to nothing (nginx alone would refuse to), answer
    502 JSON meanwhile, and use the API as soon as it resolves."""
    nginx = launcher.nginx(
        "early-nginx", upstream="late-api:8000", env={"API_RESOLVE_INTERVAL": "1"}
    )
    url = f"https://localhost:{nginx.host_port(8443)}{RESOURCES_PATH}"

    def status() -> int | None:
        nginx.check_alive()
        try:
            with new_session(str(launcher.tls.ca)) as session:
                return session.get(url, timeout=5).status_code
        except requests.ConnectionError:
            return None  # nginx not listening yet

    wait_until(lambda: status() is not None, 30, what="nginx to listen without the API")
    with new_session(str(launcher.tls.ca)) as session:
        assert_error_json(session.get(url, timeout=5), 502)
    assert "late-api does not resolve yet" in nginx.logs()

    api = launcher.api("late-api", aliases=("late-api",))
    stack = launcher.stack(api, nginx)  # waits until nginx answers through the API
    assert stack.get(RESOURCES_PATH).status_code == 200
    assert "late-api now resolves to" in nginx.logs()
    assert nginx.container.attrs["RestartCount"] == 0
