"""Fill a running stack with a few users and items to try it out: `make seed`.

    .venv/bin/python scripts/seed.py [--base-url https://localhost:8443] [--ca certs/ca.pem]

Re-runnable: every request carries a fixed Idempotency-Key, so a second run within 24 hours gets
the first run's answers (the same users, their API keys, the same items) and creates nothing.
Later, a user that exists already answers 409 and its key, shown only once, is not printed again.
Three sign-ups stay within the default sign-up rate limit (10 a minute, burst 10); on a 429 the
script waits as long as Retry-After says and tries again.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import requests

USERS = [
    ("Alice Example", "alice@seed.example.com", [("Notebook", True), ("Diary", False)]),
    ("Bob Example", "bob@seed.example.com", [("Bicycle", True)]),
    ("Carol Example", "carol@seed.example.com", [("Camera", True), ("Secret recipe", False)]),
]
RETRIES = 5


def post(session: requests.Session, url: str, key: str, **kwargs: Any) -> requests.Response:
    """POST with an Idempotency-Key; wait out 429 and 409 (a retry still running) a few times."""
    headers = {"Idempotency-Key": key, **kwargs.pop("headers", {})}
    for _ in range(RETRIES):
        response = session.post(url, headers=headers, timeout=10, **kwargs)
        if response.status_code not in (409, 429) or "Retry-After" not in response.headers:
            return response
        time.sleep(int(response.headers["Retry-After"]))
    return response


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", default="https://localhost:8443")
    parser.add_argument("--ca", default="certs/ca.pem", help="CA to verify the server with")
    args = parser.parse_args()

    with requests.Session() as session:
        session.verify = args.ca
        session.trust_env = False  # no proxy between us and the local stack
        for name, email, items in USERS:
            signed_up = post(
                session,
                f"{args.base_url}/api/users",
                f"seed-user-{email}",
                json={"name": name, "email": email},
            )
            if signed_up.status_code == 409:
                print(f"{email}: exists already (its API key was shown when it was created)")
                continue
            if signed_up.status_code != 201:
                print(f"{email}: sign-up failed: {signed_up.status_code} {signed_up.text}")
                return 1
            user = signed_up.json()
            auth = {"Authorization": f"Bearer {user['api_key']}"}
            created = []
            for title, public in items:
                item = post(
                    session,
                    f"{args.base_url}/api/items",
                    f"seed-item-{email}-{title}",
                    json={"name": title, "is_public": public},
                    headers=auth,
                )
                if item.status_code != 201:
                    print(f"{email}: item {title!r} failed: {item.status_code} {item.text}")
                    return 1
                created.append(
                    f"{title} (#{item.json()['id']}, {'public' if public else 'private'})"
                )
            print(f"{email}: user #{user['id']}, API key {user['api_key']}")
            print(f"    items: {', '.join(created)}")
    print(
        f"\nTry: curl --cacert {args.ca} -H 'Authorization: Bearer <key>' {args.base_url}/api/items"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
