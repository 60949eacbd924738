"""The same API on PostgreSQL (psycopg 3).

Runs against API_TEST_POSTGRES_URL when it is set (an empty database you can throw away, e.g.
postgresql+psycopg://postgres@127.0.0.1:5432/apitest); otherwise against a throwaway cluster
started from the PostgreSQL server binaries on this machine (Debian's and Ubuntu's live in
/usr/lib/postgresql/<version>/bin). Without either it fails and says what to install: a backend
the API claims to support is never silently left untested.
"""

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from api_helpers import assert_error
from sqlalchemy import text

from api import create_app
from api.core.config import load_settings
from api.core.db import build_engine
from api.migrate import upgrade


def _postgres_bindir() -> Path | None:
    initdb = shutil.which("initdb") or next(
        iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)), None
    )
    return Path(initdb).resolve().parent if initdb else None


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL URL: the configured one, or a temporary cluster on a Unix socket."""
    if url := os.environ.get("API_TEST_POSTGRES_URL"):
        yield url
        return
    bindir = _postgres_bindir()
    if bindir is None:
        pytest.fail(
            "PostgreSQL is needed for this test: install the server (Debian/Ubuntu: "
            "apt-get install postgresql; macOS: brew install postgresql) or set "
            "API_TEST_POSTGRES_URL to an empty database."
        )
    # PostgreSQL refuses to run as root; as root, run the cluster as nobody.
    user = "nobody" if os.geteuid() == 0 else None
    root = Path(tempfile.mkdtemp(prefix="api-pg-"))
    if user:
        entry = pwd.getpwnam(user)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    data = root / "data"

    def run(*args: str | Path) -> None:
        subprocess.run(args, check=True, capture_output=True, user=user, timeout=60)

    run(bindir / "initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
    # No TCP listener at all: the socket lives in the temporary directory.
    options = f"-k {root} -c listen_addresses='' -c fsync=off"
    run(bindir / "pg_ctl", "-D", data, "-o", options, "-l", root / "log", "-w", "start")
    try:
        yield f"postgresql+psycopg://postgres@/postgres?host={root}"
    finally:
        run(bindir / "pg_ctl", "-D", data, "-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg_client(postgres_url):
    engine = build_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS items, users, alembic_version"))
    engine.dispose()
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
