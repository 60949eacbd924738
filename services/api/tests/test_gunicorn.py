"""Real gunicorn, several workers, one SQLite file: no per-process state, no lost writes.

The server is started exactly as in the container (migrations first, then gunicorn with
gunicorn.conf.py), on a free loopback port. Each request uses a fresh connection so that the
kernel spreads them over the workers; which worker answered is read from the JSON access log.
"""

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from gunicorn_server import SERVICE_DIR, Server, running_gunicorn

WORKERS = 3


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_gunicorn(
        tmp_path_factory.mktemp("gunicorn"),
        GUNICORN_WORKERS=str(WORKERS),
        GUNICORN_WORKER_CLASS="gthread",
        GUNICORN_THREADS="4",
    ) as server:
        yield server


def test_a_write_is_visible_to_every_worker(server):
    status, user = server.request(
        "POST", "/api/users", {"name": "Alice", "email": "alice@gunicorn.example.com"}
    )
    assert status == 201
    path = f"/api/users/{user['id']}"
    pids: set[int] = set()
    deadline = time.monotonic() + 20
    # Concurrent bursts of fresh connections until at least two workers have answered; each
    # answer must see the user, whichever process served it.
    with ThreadPoolExecutor(max_workers=8) as pool:
        while len(pids) < 2 and time.monotonic() < deadline:
            results = list(pool.map(lambda _: server.request("GET", path), range(40)))
            assert all(status == 200 for status, _ in results)
            assert all(body["name"] == "Alice" for _, body in results)
            pids = {line["pid"] for line in server.access_log() if line["path"] == path}
    assert len(pids) >= 2, "all requests landed on one worker"


def test_concurrent_writers_lose_nothing(server):
    threads, per_thread = 8, 25

    def sign_up(n: int) -> int:
        status, _ = server.request(
            "POST", "/api/users", {"name": f"Writer {n}", "email": f"writer{n}@load.example.com"}
        )
        return status

    with ThreadPoolExecutor(max_workers=threads) as pool:
        statuses = list(pool.map(sign_up, range(threads * per_thread)))
    assert [s for s in statuses if s != 201] == []

    names, cursor = set(), ""
    while True:
        status, page = server.request("GET", f"/api/users?limit=100{cursor}")
        assert status == 200
        names |= {user["name"] for user in page["items"]}
        if page["next_cursor"] is None:
            break
        cursor = f"&cursor={page['next_cursor']}"
    assert {f"Writer {n}" for n in range(threads * per_thread)} <= names


def test_access_log_has_one_line_per_request(server):
    status, _ = server.request("GET", "/api/users/999999")
    assert status == 404
    lines = [line for line in server.access_log() if line["path"] == "/api/users/999999"]
    assert len(lines) == 1
    assert lines[0]["status"] == 404
    assert lines[0]["remote_addr"] == "127.0.0.1"
    raw = server.log_path.read_text()
    assert "GET /api/users/999999 HTTP" not in raw  # no second, gunicorn-style access line


def test_a_booted_worker_takes_what_it_loaded_out_of_the_gc(tmp_path):
    """gunicorn.conf.py's post_worker_init freezes the loaded app: a full collection that walks
    those ~70k objects stops that worker for ~70 ms, a latency spike under load."""
    code = (
        "import gc, runpy; hooks = runpy.run_path('gunicorn.conf.py');"
        "from api import create_app; create_app();"
        "hooks['post_worker_init'](None); print(gc.get_freeze_count())"
    )
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'api.db'}"}
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=SERVICE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert int(result.stdout) > 10_000
