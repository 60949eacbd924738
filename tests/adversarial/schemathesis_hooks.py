"""Schemathesis hooks (loaded by `st run` through SCHEMATHESIS_HOOKS): authenticate with real keys.

Every operation that declares `bearerAuth` is sent with `Authorization: Bearer <real key>`:

- one shared account's key for ordinary operations, created once per run;
- a brand-new account for each case of the two operations that destroy their own credentials
  (`DELETE` of ME_PATH deletes the account, `POST` to API_KEY_PATH rotates the key), so
  that they are fuzzed with a working key every time and never log the rest of the run out.

Keys are made by signing up through the same nginx the fuzzer attacks (ADV_BASE_URL), verifying
its certificate against the run's CA (ADV_CA). No token is cached by schemathesis and no 401 is
retried with a fresh key (retry_on=[]): a 401 for a valid key must reach the checks as it is.
"""

from __future__ import annotations

import os
import re
import threading
import uuid

import requests
import schemathesis

from tests.support.domain import API_KEY_PATH, ME_PATH, USERS_PATH, user_body

BASE_URL = os.environ["ADV_BASE_URL"]
CA = os.environ["ADV_CA"]
# Operations after which the key they were sent with no longer works.
SELF_DESTRUCTIVE = {("DELETE", ME_PATH), ("POST", API_KEY_PATH)}


def sign_up(purpose: str) -> str:
    """Create an account through nginx and return its API key."""
    email = f"st-{purpose}-{uuid.uuid4().hex[:12]}@example.com"
    with requests.Session() as session:
        session.trust_env = False  # no proxy, and REQUESTS_CA_BUNDLE must not override verify
        response = session.post(
            BASE_URL + USERS_PATH,
            json=user_body(f"Schemathesis {purpose}", email),
            verify=CA,
            timeout=10,
        )
    response.raise_for_status()
    return response.json()["api_key"]


@schemathesis.auth(refresh_interval=None, retry_on=[])
class RealApiKey:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._shared: str | None = None

    def get(self, case, context) -> str:
        operation = context.operation
        if (operation.method.upper(), operation.path) in SELF_DESTRUCTIVE:
            return sign_up("victim")
        with self._lock:
            if self._shared is None:
                self._shared = sign_up("shared")
            return self._shared

    def set(self, case, data: str, context) -> None:
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"


# A well-formed Idempotency-Key (api/idempotency.py); malformed ones are left as generated.
_IDEMPOTENCY_KEY = re.compile(r"[\x20\x21\x23-\x2b\x2d-\x5b\x5d-\x7e]{16,255}")


@schemathesis.hook
def before_call(ctx, case, kwargs) -> None:
    """Give every well-formed Idempotency-Key a value of its own.

    The fuzzer reuses header values across requests, and a reused key gets the first request's
    answer by design, even after the resource it created was deleted (the IETF draft's
    semantics): its stateful checks would read that replay as "created resource not found".
    The replay rules have their own tests; here each request must run.
    """
    headers = case.headers or {}
    value = headers.get("Idempotency-Key")
    if value is not None and _IDEMPOTENCY_KEY.fullmatch(value.strip('"')):
        headers["Idempotency-Key"] = str(uuid.uuid4())
