"""The same API on PostgreSQL (psycopg 3). Opt-in: set API_TEST_POSTGRES_URL to an empty
database you can throw away, e.g. postgresql+psycopg://postgres@127.0.0.1:5432/apitest."""

import os

import pytest
from api_helpers import assert_error
from sqlalchemy import text

from api import create_app
from api.core.config import load_settings
from api.core.db import build_engine
from api.migrate import upgrade

URL = os.environ.get("API_TEST_POSTGRES_URL")
pytestmark = pytest.mark.skipif(not URL, reason="API_TEST_POSTGRES_URL is not set")


@pytest.fixture
def pg_client():
    engine = build_engine(URL)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS items, users, alembic_version"))
    engine.dispose()
    settings = load_settings(database_url=URL)
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
