"""Data lives in the volume, not the container, and is shared by every gunicorn worker."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support.domain import ME_PATH, RESOURCES_PATH, auth, resource_body, resource_url
from tests.support.fixtures import DATABASES, on_database
from tests.support.http import find_log_entry
from tests.support.waiting import wait_until


@pytest.fixture(params=DATABASES)
def stack(request):
    """Every test here runs on SQLite and on PostgreSQL."""
    return on_database(request)


KEEPSAKE = resource_body("keepsake")


def assert_data_present(stack, user: dict, resource_id: int) -> None:
    me = stack.get(ME_PATH, headers=auth(user))
    assert me.status_code == 200, me.text
    assert me.json()["email"] == user["email"]
    resource = stack.get(resource_url(resource_id), headers=auth(user))
    assert resource.status_code == 200, resource.text
    assert {field: resource.json()[field] for field in KEEPSAKE} == KEEPSAKE


def test_data_survives_restart_and_recreation(stack):
    user = stack.create_user("Persistent")
    created = stack.post(RESOURCES_PATH, json=KEEPSAKE, headers=auth(user))
    assert created.status_code == 201, created.text
    resource_id = created.json()["id"]

    try:
        stack.api.restart(timeout=30)
        stack.wait_ready()
        assert_data_present(stack, user, resource_id)

        old_container = stack.api.container.id
        stack.api.recreate()
        assert stack.api.container.id != old_container
        stack.wait_ready()
        assert_data_present(stack, user, resource_id)
    finally:
        stack.ensure_running()


def test_new_user_is_visible_at_once_on_every_worker(stack):
    """Create, then read back at once over many connections; the reads land on several workers."""
    pids: set[int] = set()
    for _ in range(10):
        user = stack.create_user("Everywhere")
        ids = [f"itest-read-{uuid.uuid4().hex}" for _ in range(12)]

        def read(request_id: str, user: dict = user) -> int:
            headers = {**auth(user), "X-Request-ID": request_id, "Connection": "close"}
            return stack.get(ME_PATH, headers=headers).status_code

        with ThreadPoolExecutor(6) as pool:
            statuses = list(pool.map(read, ids))
        assert statuses == [200] * len(ids), statuses

        def all_logged(ids: list[str] = ids) -> str:
            text = stack.api.logs()
            return text if all(request_id in text for request_id in ids) else ""

        logs = wait_until(all_logged, 10, what="the reads in the API log")
        pids |= {entry["pid"] for request_id in ids if (entry := find_log_entry(logs, request_id))}
        if len(pids) >= 2:
            break
    assert len(pids) >= 2, f"all reads were served by one worker ({pids}); the test proves little"
