"""Rate limiting at nginx, with the image's default (strict) limits.

Each test gets its own nginx (fresh limit zones, so the tests cannot throttle each other) in front
of the shared API; the shared nginx runs with limits off, so nothing here can throttle other tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.support.domain import RESOURCES_PATH, USERS_PATH, unique_email, user_body
from tests.support.http import assert_error_json
from tests.support.waiting import Fatal, wait_until


@pytest.fixture
def strict(request, stack, launcher) -> Iterator:
    nginx = launcher.nginx(f"nginx-strict-{request.node.name[5:30]}", upstream="api:8000")
    yield launcher.stack(stack.api, nginx)
    nginx.remove()


def check_429(response: requests.Response) -> None:
    assert_error_json(response, 429)
    retry_after = response.headers.get("Retry-After")
    assert retry_after is not None, "429 without Retry-After"
    assert retry_after.isdigit(), f"429 with an unusable Retry-After: {retry_after!r}"
    assert int(retry_after) >= 1, f"429 with Retry-After {retry_after!r}"


def general_limit_clear(view) -> bool:
    return view.get(RESOURCES_PATH, timeout=5).status_code == 200


def count_until_429(send, limit: int) -> tuple[int, requests.Response | None]:
    """Call `send` until it answers 429; return (successes before it, the 429 response)."""
    allowed = 0
    for _ in range(limit):
        response = send()
        if response.status_code == 429:
            return allowed, response
        assert response.status_code < 400, response.text
        allowed += 1
    return allowed, None


def test_burst_past_the_limit_gets_429_json_with_retry_after(strict):
    def hammer(_: int) -> list[int | requests.Response]:
        results: list[int | requests.Response] = []
        with strict.session() as session:
            for _ in range(40):
                response = session.get(strict.url(RESOURCES_PATH), timeout=10)
                results.append(response if response.status_code == 429 else response.status_code)
        return results

    # 8 clients x 40 requests from one address, as fast as they go: hundreds per second.
    with ThreadPoolExecutor(8) as pool:
        results = [r for batch in pool.map(hammer, range(8)) for r in batch]

    rejected = [r for r in results if isinstance(r, requests.Response)]
    accepted = [r for r in results if r == 200]
    others = [r for r in results if not isinstance(r, requests.Response) and r != 200]
    assert not others, f"unexpected statuses: {others[:10]}"
    assert accepted, "the limit rejected even the first requests (no burst allowance)"
    assert len(rejected) >= len(results) // 4, (
        f"a flood of {len(results)} requests got only {len(rejected)} rejections"
    )
    check_429(rejected[0])
    check_429(rejected[-1])

    # After waiting, requests are served again.
    wait_until(lambda: general_limit_clear(strict), 60, what="requests to succeed again")


def test_account_creation_has_a_stricter_limit(strict):
    with strict.session() as session:
        auth_allowed, first = count_until_429(
            lambda: session.post(
                strict.url(USERS_PATH),
                json=user_body("Rate Limited", unique_email("rl")),
                timeout=10,
            ),
            300,
        )
        assert first is not None, "300 quick sign-ups were never limited"
        check_429(first)
        assert first.json()["message"], first.text
        # The general limit is not what stopped them: ordinary calls still go through, more of
        # them than sign-ups were allowed.
        api_allowed, _ = count_until_429(
            lambda: session.get(strict.url(RESOURCES_PATH), timeout=10), auth_allowed + 1
        )
    assert api_allowed == auth_allowed + 1, (auth_allowed, api_allowed)

    # After waiting, sign-up works again.
    def sign_up_works() -> bool:
        response = strict.post(
            USERS_PATH, json=user_body("Patient", unique_email("rl")), timeout=10
        )
        if response.status_code not in (201, 429):
            raise Fatal(f"sign-up answered {response.status_code}: {response.text[:300]}")
        return response.status_code == 201

    wait_until(sign_up_works, 120, interval=1, what="sign-up to be allowed again")
