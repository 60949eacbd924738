"""`make seed`: users and items to try the stack with, and a second run that creates nothing."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.support.containers import REPO
from tests.support.domain import ME_PATH, RESOURCES_PATH, bearer, owned_by


def seed(stack) -> str:
    done = subprocess.run(
        [sys.executable, "scripts/seed.py", "--base-url", stack.base_url, "--ca", str(stack.ca)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_seed_creates_users_with_keys_and_a_second_run_creates_nothing(stack):
    first = seed(stack)
    keys = re.findall(r"API key (\S+)", first)
    assert len(keys) == 3, first
    item_ids = re.findall(r"#(\d+), (?:public|private)", first)
    assert len(item_ids) == 5, first

    # Within the Idempotency-Key window: the same answers, so the same users, keys and items.
    assert seed(stack) == first
    me = stack.get(ME_PATH, headers=bearer(keys[0]))
    assert me.status_code == 200
    assert me.json()["email"] == "alice@seed.example.com"
    mine = stack.get(RESOURCES_PATH, params=owned_by(me.json()["id"]), headers=bearer(keys[0]))
    assert len(mine.json()["items"]) == 2  # not four: the second run created nothing
