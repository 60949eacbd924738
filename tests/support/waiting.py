"""Waiting on a real condition with a deadline: the suites never sleep and hope."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import requests

T = TypeVar("T")

# Exceptions a polled condition may raise while the thing it waits for is not there yet.
TRANSIENT = (OSError, requests.RequestException, AssertionError, ValueError, KeyError)


class Fatal(Exception):
    """Raised by a polled predicate when waiting longer cannot help (e.g. a container exited)."""


def wait_until(
    predicate: Callable[[], T],
    timeout: float,
    *,
    interval: float = 0.2,
    what: str = "condition",
) -> T:
    """Call `predicate` until it returns a truthy value, and return that value.

    Exceptions in TRANSIENT count as "not yet"; anything else (notably `Fatal`) propagates at
    once. When `timeout` seconds pass, raise AssertionError naming `what` and the last result
    or exception, so a failure says what the suite was waiting for.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            result = predicate()
            if result:
                return result
            last = result
        except TRANSIENT as exc:
            last = exc
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}"
            )
        time.sleep(interval)
