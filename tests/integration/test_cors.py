"""CORS over HTTPS through nginx: the API's preflight and answers, and nginx's own 413, 429 and
502, carry Access-Control-Allow-Origin for an allowed origin and not for another one.

The module runs its own API and two nginx in front of it, all with CORS_ALLOWED_ORIGINS set (as
compose passes the one variable to both services): ``open`` with rate limits off, and ``strict``
with one request a minute and a burst of one, so that the third request is a 429. The shared
stack runs with CORS off, the default, and must send no CORS header at all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from tests.support import domain
from tests.support.containers import Launcher, Service, Stack
from tests.support.http import assert_error_json
from tests.support.waiting import wait_until

ALLOWED = "https://app.example.com"
OTHER = "https://evil.example.net"
CORS_ENV = {"CORS_ALLOWED_ORIGINS": f"{ALLOWED},http://localhost:5173"}
TWO_MIB = 2 * 1024 * 1024  # nginx's default limit is 1 MiB


def preflight_headers(origin: str, method: str = "POST") -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
    }


def vary(response: requests.Response) -> list[str]:
    return [v.strip().lower() for v in response.headers.get("Vary", "").split(",") if v.strip()]


def assert_cors(response: requests.Response, origin: str | None) -> None:
    """Allowed (``origin``): the header once, with Vary: Origin once. None: no CORS header."""
    if origin is None:
        cors = [name for name in response.headers if name.lower().startswith("access-control-")]
        assert cors == [], f"{response.status_code}: {cors}"
    else:
        # requests joins repeated headers with ", ": a second copy would show here.
        assert response.headers.get("Access-Control-Allow-Origin") == origin, response.headers
        exposed = response.headers.get("Access-Control-Expose-Headers", "")
        assert {"Retry-After", "X-Request-ID", "Location"} <= {
            h.strip() for h in exposed.split(",")
        }, exposed
        assert "Access-Control-Allow-Credentials" not in response.headers
    assert vary(response).count("origin") == 1, response.headers.get("Vary")


class FromOrigin:
    """The stack as a page of ``origin`` reaches it: what the domain helpers post carries Origin,
    and the last response is kept for its headers."""

    def __init__(self, stack: Stack, origin: str) -> None:
        self.stack = stack
        self.origin = origin
        self.last: requests.Response | None = None

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        kwargs["headers"] = {**(kwargs.get("headers") or {}), "Origin": self.origin}
        self.last = self.stack.post(path, **kwargs)
        return self.last


@pytest.fixture(scope="module")
def cors_api(launcher: Launcher) -> Iterator[Service]:
    api = launcher.api("cors-api", aliases=("cors-api",), env=CORS_ENV)
    yield api
    api.remove()


@pytest.fixture(scope="module")
def open_stack(launcher: Launcher, cors_api: Service) -> Iterator[Stack]:
    nginx = launcher.nginx(
        "cors-nginx", upstream="cors-api:8000", env={**CORS_ENV, "RATE_LIMIT_ENABLED": "false"}
    )
    yield launcher.stack(cors_api, nginx)
    nginx.remove()


@pytest.fixture(scope="module")
def strict_stack(launcher: Launcher, open_stack: Stack) -> Iterator[Stack]:
    nginx = launcher.nginx(
        "cors-nginx-strict",
        upstream="cors-api:8000",
        env={**CORS_ENV, "RATE_LIMIT_API": "1r/m", "RATE_LIMIT_API_BURST": "1"},
    )
    view = Stack(api=open_stack.api, nginx=nginx, ca=open_stack.ca)
    # Not Stack.wait_ready: its /healthz and /readyz would spend the two requests a minute.
    # /nginx-health is never limited; the API behind is ready already (open_stack).
    wait_until(
        lambda: view.get("/nginx-health", timeout=5).status_code == 200,
        60,
        what="the strict nginx to answer",
    )
    yield view
    nginx.remove()


def test_a_preflight_through_nginx_gets_the_apis_cors_answer(open_stack):
    # An authenticated POST's preflight: no Authorization, no body (never a 401 or 415).
    response = open_stack.request(
        "OPTIONS", domain.RESOURCES_PATH, headers=preflight_headers(ALLOWED)
    )
    assert response.status_code == 204, response.text
    assert_cors(response, ALLOWED)
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    allowed = {h.strip() for h in response.headers["Access-Control-Allow-Headers"].split(",")}
    assert allowed == {"authorization", "content-type", "idempotency-key"}
    assert int(response.headers["Access-Control-Max-Age"]) > 0

    refused = open_stack.request("OPTIONS", domain.RESOURCES_PATH, headers=preflight_headers(OTHER))
    assert refused.status_code == 204
    assert_cors(refused, None)


def test_the_apis_answers_carry_the_headers_through_nginx(open_stack):
    page = FromOrigin(open_stack, ALLOWED)
    user = domain.create_user(page)
    assert page.last is not None
    assert_cors(page.last, ALLOWED)
    domain.create_resource(page, user)
    assert_cors(page.last, ALLOWED)
    assert page.last.headers.get("Location")

    origin = {"Origin": ALLOWED}
    listed = open_stack.get(domain.RESOURCES_PATH, headers=origin)
    assert listed.status_code == 200
    assert_cors(listed, ALLOWED)
    unauthenticated = open_stack.post(
        domain.RESOURCES_PATH, json=domain.resource_body(), headers=origin
    )
    assert_error_json(unauthenticated, 401)
    assert_cors(unauthenticated, ALLOWED)

    elsewhere = open_stack.get(domain.RESOURCES_PATH, headers={"Origin": OTHER})
    assert elsewhere.status_code == 200
    assert_cors(elsewhere, None)


@pytest.mark.parametrize(("origin", "expected"), [(ALLOWED, ALLOWED), (OTHER, None)])
def test_nginx_413_carries_the_headers_for_an_allowed_origin(open_stack, origin, expected):
    response = open_stack.post(
        domain.RESOURCES_PATH,
        data=b"x" * TWO_MIB,
        headers={"Origin": origin, "Content-Type": "application/json"},
        timeout=30,
    )
    assert_error_json(response, 413)
    assert_cors(response, expected)


def until_429(send: Callable[[], requests.Response], limit: int = 5) -> requests.Response:
    """Send until nginx answers 429 (the strict nginx lets two through); that answer."""
    for _ in range(limit):
        response = send()
        if response.status_code == 429:
            return response
        assert response.status_code < 400, response.text
    raise AssertionError(f"{limit} requests and no 429")


def test_nginx_429_carries_the_headers_and_preflights_have_their_own_bucket(strict_stack):
    def probe(origin: str) -> requests.Response:
        return strict_stack.get("/healthz", headers={"Origin": origin})

    def preflight() -> requests.Response:
        return strict_stack.request(
            "OPTIONS", domain.RESOURCES_PATH, headers=preflight_headers(ALLOWED)
        )

    first = probe(ALLOWED)
    assert first.status_code == 200, first.text
    assert_cors(first, ALLOWED)  # the API's headers, not repeated by nginx

    limited = until_429(lambda: probe(ALLOWED))
    assert_error_json(limited, 429)
    assert_cors(limited, ALLOWED)
    assert limited.headers.get("Retry-After")
    other = probe(OTHER)
    assert_error_json(other, 429)
    assert_cors(other, None)

    # The requests' bucket is empty, the preflights' is not: the browser still gets its
    # preflight answered, and then a 429 it can read rather than a bare network error.
    answered = preflight()
    assert answered.status_code == 204, answered.text
    assert_cors(answered, ALLOWED)
    # Past the preflights' own rate, nginx's 429 still carries the headers.
    refused = until_429(preflight)
    assert_error_json(refused, 429)
    assert_cors(refused, ALLOWED)


def test_nginx_502_while_the_api_is_down_carries_the_headers(open_stack):
    open_stack.api.stop(timeout=30)
    try:
        for origin, expected in ((ALLOWED, ALLOWED), (OTHER, None)):
            response = open_stack.get("/healthz", headers={"Origin": origin}, timeout=30)
            assert response.status_code in (502, 503, 504), response.text
            assert_error_json(response, response.status_code)
            assert_cors(response, expected)
    finally:
        open_stack.api.start_again()
    open_stack.wait_ready(timeout=60)


def test_with_cors_off_no_answer_has_a_cors_header(stack):
    """The default (the shared stack, as `make up` runs it): nothing CORS, from either service."""
    origin = {"Origin": ALLOWED}
    responses = {
        "preflight": stack.request(
            "OPTIONS", domain.RESOURCES_PATH, headers=preflight_headers(ALLOWED)
        ),
        "API answer": stack.get("/healthz", headers=origin),
        "nginx 404": stack.get("/not-proxied", headers=origin),
        "nginx 413": stack.post(
            "/healthz", data=b"x" * TWO_MIB, headers={**origin, "Content-Type": "text/plain"}
        ),
    }
    assert responses["preflight"].status_code == 401  # an OPTIONS like any other
    assert responses["API answer"].status_code == 200
    assert responses["nginx 404"].status_code == 404
    assert responses["nginx 413"].status_code == 413
    for what, response in responses.items():
        cors = [name for name in response.headers if name.lower().startswith("access-control-")]
        assert cors == [], (what, cors)
        assert "origin" not in vary(response), (what, response.headers.get("Vary"))
