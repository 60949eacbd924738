"""The same API on PostgreSQL (psycopg 3), on the ``postgres_url`` fixture (conftest.py)."""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from api_helpers import assert_error
from sqlalchemy import text

from api import create_app
from api.core.config import load_settings
from api.migrate import upgrade


@pytest.fixture
def pg_client(postgres_url):
    settings = load_settings(database_url=postgres_url)
    upgrade(settings)
    upgrade(settings)  # idempotent here too
    app = create_app(settings)
    yield app.test_client()
    app.extensions["api.db"].engine.dispose()


def test_full_flow_on_postgresql(pg_client):
    client = pg_client
    assert client.get("/readyz").status_code == 200
    created = client.post("/api/users", json={"name": "Alice", "email": "alice@example.com"})
    assert created.status_code == 201
    assert created.get_json()["created_at"].endswith("Z")
    headers = {"Authorization": f"Bearer {created.get_json()['api_key']}"}
    dup = client.post("/api/users", json={"name": "Other", "email": "ALICE@example.com"})
    assert_error(dup, 409)
    nul = client.post("/api/users", json={"name": "A\x00B", "email": "nul@example.com"})
    assert_error(nul, 422)

    item = client.post("/api/items", json={"name": "x"}, headers=headers).get_json()
    public = client.post("/api/items", json={"name": "y", "is_public": True}, headers=headers)
    assert_error(client.get(f"/api/items/{item['id']}"), 403)
    assert [i["id"] for i in client.get("/api/items").get_json()["items"]] == [
        public.get_json()["id"]
    ]
    page = client.get("/api/items?limit=1", headers=headers).get_json()
    assert page["next_cursor"] is not None
    patched = client.patch(f"/api/items/{item['id']}", json={"name": "z"}, headers=headers)
    assert patched.get_json()["name"] == "z"

    rotated = client.post("/api/users/me/api-key", headers=headers).get_json()["api_key"]
    assert_error(client.get("/api/users/me", headers=headers), 401)
    headers = {"Authorization": f"Bearer {rotated}"}
    assert client.delete("/api/users/me", headers=headers).status_code == 204
    assert_error(client.get(f"/api/items/{public.get_json()['id']}"), 404)


def test_connections_carry_the_timeouts(pg_client):
    app = pg_client.application
    with app.extensions["api.db"].read() as conn:
        assert conn.execute(text("SHOW statement_timeout")).scalar_one() == "15s"
    assert app.extensions["api.db"].engine.pool.size() == 5


def test_readyz_follows_the_database_without_a_restart(postgres_cluster, pg_client):
    """Stop the server under a warm pool: 503 JSON while it is down, 200 at once when it is back."""
    if postgres_cluster is None:
        pytest.fail("this test stops the server: unset API_TEST_POSTGRES_URL to let it run its own")
    client = pg_client
    for _ in range(3):  # pooled connections that the restart will leave dead
        assert client.get("/readyz").status_code == 200
    postgres_cluster.stop("fast")
    try:
        assert_error(client.get("/readyz"), 503)
        down = client.post("/api/users", json={"name": "Down", "email": "down@example.com"})
        assert_error(down, 503)
        assert down.headers["Retry-After"] == "1"
    finally:
        postgres_cluster.start()
    # The first requests after the restart succeed: dead pooled connections are dropped on
    # checkout (core/db.py), not handed to a request.
    assert client.get("/readyz").status_code == 200
    created = client.post("/api/users", json={"name": "Back", "email": "back@example.com"})
    assert created.status_code == 201


def test_a_retry_while_the_first_runs_is_409(pg_client, monkeypatch):
    """On PostgreSQL the claim is visible at once: a concurrent retry is told to wait."""
    from api.repositories import users as users_repo

    client = pg_client
    entered, release = threading.Event(), threading.Event()
    real_create = users_repo.create

    def slow_create(*args, **kwargs):
        entered.set()
        assert release.wait(10)
        return real_create(*args, **kwargs)

    monkeypatch.setattr(users_repo, "create", slow_create)
    headers = {"Idempotency-Key": "retry-while-running-0001"}
    body = {"name": "Slow", "email": "slow@example.com"}
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(
            client.application.test_client().post, "/api/users", json=body, headers=headers
        )
        assert entered.wait(10)
        busy = client.post("/api/users", json=body, headers=headers)
        release.set()
        created = first.result(timeout=10)
    assert_error(busy, 409)
    assert created.status_code == 201
    replay = client.post("/api/users", json=body, headers=headers)
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.get_json() == created.get_json()
