"""Prometheus metrics (api/web/metrics.py, api/metrics_server.py; docs/operations.md).

In-process, through the Flask test client: the values stay in the app's own registry (no
PROMETHEUS_MULTIPROC_DIR here). Then a real gunicorn with two workers: the workers' files merged
by the master on its own port, the instance's series (build info, readiness), in flight across
workers, a killed worker's gauges dropped, and nothing of it on the API's port.
"""

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from api_helpers import assert_error
from gunicorn_server import BIN, SERVICE_DIR, Server, free_port, running_gunicorn
from prometheus_client.parser import text_string_to_metric_families

from api import create_app
from api.app import API_VERSION
from api.core.config import load_settings
from api.metrics_server import InstanceCollector, ReadinessProbe, Target
from api.web.metrics import BUCKETS, OTHER_METHOD, UNMATCHED_ROUTE

USER_ROUTE = "/api/users/<int:user_id>"


def sample(app, name: str, **labels: str) -> float:
    """A sample's value in the app's registry (0 when the series does not exist yet)."""
    value = app.extensions["api.metrics"].registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def requests_total(app, method: str, route: str, status: str) -> float:
    return sample(app, "api_http_requests_total", method=method, route=route, status=status)


def series(app, name: str) -> list[dict[str, str]]:
    """The label sets of every sample called ``name``."""
    registry = app.extensions["api.metrics"].registry
    return [s.labels for family in registry.collect() for s in family.samples if s.name == name]


# --- in-process ---------------------------------------------------------------------------------


def test_requests_are_counted_by_route_template_not_path(app, client):
    ids = []
    for n in range(3):
        body = {"name": f"N{n}", "email": f"n{n}@example.com"}
        ids.append(client.post("/api/users", json=body).json["id"])
    for user_id in ids:
        assert client.get(f"/api/users/{user_id}").status_code == 200
    assert client.get("/api/users/987654").status_code == 404

    assert requests_total(app, "GET", USER_ROUTE, "200") == 3
    assert requests_total(app, "GET", USER_ROUTE, "404") == 1
    assert requests_total(app, "POST", "/api/users", "201") == 3
    routes = {labels["route"] for labels in series(app, "api_http_requests_total")}
    assert not any(re.search(r"/\d+", route) for route in routes), routes
    # The histogram: one observation per answer, by method and route, with a 0.5 s bucket.
    duration = "api_http_request_duration_seconds"
    assert sample(app, f"{duration}_count", method="GET", route=USER_ROUTE) == 4
    assert sample(app, f"{duration}_bucket", method="GET", route=USER_ROUTE, le="+Inf") == 4
    assert 0.5 in BUCKETS
    assert sample(app, f"{duration}_bucket", method="GET", route=USER_ROUTE, le="0.5") == 4
    assert sample(app, f"{duration}_sum", method="GET", route=USER_ROUTE) > 0


def test_answers_before_the_view_keep_their_route(app, client):
    # 401 from the auth hook: the rule matched even though no view ran.
    assert client.get("/api/users/me").status_code == 401
    assert requests_total(app, "GET", "/api/users/me", "401") == 1


def test_unmatched_paths_and_unknown_methods_have_one_fixed_label_each(app, client):
    for _ in range(20):
        assert client.get(f"/api/nope-{uuid.uuid4().hex}").status_code == 404
        method = f"X{uuid.uuid4().hex[:6].upper()}"
        assert client.open("/api/users", method=method).status_code == 405
    # A known path with a method it does not allow matched no rule either.
    assert client.delete("/api/users").status_code == 405
    assert requests_total(app, "GET", UNMATCHED_ROUTE, "404") == 20
    assert requests_total(app, "DELETE", UNMATCHED_ROUTE, "405") == 1
    assert requests_total(app, OTHER_METHOD, UNMATCHED_ROUTE, "405") == 20
    # 41 requests, 40 distinct paths and methods: 3 series.
    assert len(series(app, "api_http_requests_total")) == 3


def test_known_methods_are_those_of_the_app(app, client):
    assert client.head("/healthz").status_code == 200
    assert client.options("/healthz").status_code == 200
    assert client.patch("/api/users/me", json={}).status_code == 401
    assert requests_total(app, "HEAD", "/healthz", "200") == 1
    assert requests_total(app, "OPTIONS", "/healthz", "200") == 1
    assert requests_total(app, "PATCH", "/api/users/me", "401") == 1


def test_requests_in_flight(app, client):
    seen = []

    @app.get("/_test/in-flight")
    def in_flight() -> str:
        seen.append(sample(app, "api_http_requests_in_flight"))
        return "ok"

    assert sample(app, "api_http_requests_in_flight") == 0
    assert client.get("/_test/in-flight").status_code == 200
    assert seen == [1]
    assert sample(app, "api_http_requests_in_flight") == 0


def test_in_flight_counts_concurrent_requests(app):
    inside, release = threading.Barrier(4), threading.Event()
    seen = []

    @app.get("/_test/wait")
    def wait() -> str:
        inside.wait(timeout=10)
        seen.append(sample(app, "api_http_requests_in_flight"))
        release.wait(timeout=10)
        return "ok"

    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = [pool.submit(app.test_client().get, "/_test/wait") for _ in range(3)]
        inside.wait(timeout=10)
        time.sleep(0.1)
        assert sample(app, "api_http_requests_in_flight") == 3
        release.set()
        assert [f.result().status_code for f in futures] == [200] * 3
    assert seen == [3, 3, 3]
    assert sample(app, "api_http_requests_in_flight") == 0


def test_database_errors_are_counted(app, client):
    with app.extensions["api.db"].write() as conn:
        conn.exec_driver_sql("DROP TABLE alembic_version")
    assert_error(client.get("/readyz"), 503)
    assert_error(client.get("/readyz"), 503)
    assert sample(app, "api_database_errors_total") == 2


def test_a_database_that_answers_nothing_is_a_503_and_counted(app, client, monkeypatch):
    from sqlalchemy.exc import OperationalError

    def unavailable(*args, **kwargs):
        raise OperationalError("SELECT", {}, Exception("database is locked"))

    monkeypatch.setattr(app.extensions["api.db"], "read", unavailable)
    assert_error(client.get("/api/users/1"), 503)
    assert sample(app, "api_database_errors_total") == 1


def test_idempotent_replays_are_counted(app, client):
    headers = {"Idempotency-Key": str(uuid.uuid4())}
    body = {"name": "Ann", "email": "ann@example.com"}
    assert client.post("/api/users", json=body, headers=headers).status_code == 201
    assert sample(app, "api_idempotent_replays_total") == 0
    for _ in range(2):
        again = client.post("/api/users", json=body, headers=headers)
        assert again.headers["Idempotent-Replayed"] == "true"
    assert sample(app, "api_idempotent_replays_total") == 2


def test_pool_usage(app, client):
    seen = []

    @app.get("/_test/pool")
    def pool() -> str:
        with app.extensions["api.db"].read():
            seen.append(sample(app, "api_db_pool_checked_out"))
        return "ok"

    assert client.get("/_test/pool").status_code == 200
    assert seen == [1]
    assert sample(app, "api_db_pool_checked_out") == 0


def test_the_app_does_not_serve_metrics_on_its_own_routes(app, client):
    for path in ("/metrics", "/api/metrics"):
        assert_error(client.get(path), 404)
    assert requests_total(app, "GET", UNMATCHED_ROUTE, "404") == 2


def test_metrics_can_be_turned_off(db_path, settings):
    app = create_app(load_settings(database_url=settings.database_url, metrics_enabled=False))
    try:
        assert "api.metrics" not in app.extensions
        assert app.test_client().get("/healthz").status_code == 200
        assert_error(app.test_client().get("/metrics"), 404)
    finally:
        app.extensions["api.db"].engine.dispose()


def test_metrics_settings():
    assert load_settings().metrics_enabled is True
    assert load_settings().metrics_port == 9100
    with pytest.raises(Exception, match="METRICS_PORT"):
        load_settings(metrics_port=0)


# --- the master's side, without gunicorn --------------------------------------------------------


@pytest.fixture
def readyz_server() -> Iterator[tuple[ThreadingHTTPServer, list[int]]]:
    """A stand-in for the workers: answers GET /readyz with the status at the end of the list."""
    statuses = [200]

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(statuses[-1] if self.path == "/readyz" else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server, statuses
    server.shutdown()
    server.server_close()


class ListLog:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, msg: str, *args: object) -> None:
        self.lines.append(msg % args)

    def warning(self, msg: str, *args: object) -> None:
        self.lines.append(msg % args)


def wait_for(predicate, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_the_readiness_probe_follows_readyz(readyz_server):
    server, statuses = readyz_server
    target = Target.of_listeners([server.socket])
    assert target is not None
    assert target.address == server.server_address
    log = ListLog()
    probe = ReadinessProbe(target, log, interval=0.05, timeout=1)
    assert probe.ready is False  # until a check has answered
    probe.start()
    try:
        wait_for(lambda: probe.ready)
        statuses.append(503)
        wait_for(lambda: not probe.ready)
        statuses.append(200)
        wait_for(lambda: probe.ready)
    finally:
        probe.stop()
    assert log.lines[0] == "readiness check passes: api_ready 1"
    assert log.lines[1] == "readiness check fails (status 503): api_ready 0"


def test_the_readiness_probe_fails_when_nothing_answers():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, never listening: connection refused
        probe = ReadinessProbe(Target.of_listeners([sock]), ListLog(), timeout=1)
        assert probe.check()[0] is False


def test_a_wildcard_listener_is_checked_on_the_loopback_address():
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", 0))
        target = Target.of_listeners([sock])
        assert target is not None
        assert target.address == ("127.0.0.1", sock.getsockname()[1])


def test_the_instance_series(readyz_server):
    server, _ = readyz_server
    probe = ReadinessProbe(Target.of_listeners([server.socket]), ListLog())
    collector = InstanceCollector(probe, "1.2.3", "abc123")
    families = {f.name: f for f in collector.collect()}
    assert [(s.labels, s.value) for s in families["api_ready"].samples] == [({}, 0)]
    ready, _ = probe.check()
    probe.ready = ready
    families = {f.name: f for f in collector.collect()}
    assert [(s.labels, s.value) for s in families["api_ready"].samples] == [({}, 1)]
    assert [(s.labels, s.value) for s in families["api_build_info"].samples] == [
        ({"version": "1.2.3", "revision": "abc123"}, 1)
    ]


# --- a real gunicorn ----------------------------------------------------------------------------

WORKERS = 2


def scrape(server: Server, path: str = "/metrics") -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", server.metrics_port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def parse(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} of a scrape."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(text: str, name: str, **labels: str) -> float | None:
    return parse(text).get((name, tuple(sorted(labels.items()))))


def parent(pid: int) -> int:
    # /proc/PID/stat: "pid (comm) state ppid ...", comm may hold spaces.
    return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])


def worker_pids(master: int) -> list[int]:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return [int(pid) for pid in children]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_gunicorn(
        tmp_path_factory.mktemp("metrics"),
        GUNICORN_WORKERS=str(WORKERS),
        GUNICORN_THREADS="4",
        GIT_REVISION="0123456789ab",
    ) as server:
        yield server


def test_the_master_serves_every_workers_requests(server):
    path, route = "/api/users/424242", "/api/users/<int:user_id>"
    key = {"method": "GET", "route": route, "status": "404"}
    start = value(scrape(server)[1], "api_http_requests_total", **key) or 0
    # Bursts of fresh connections until both workers have answered some (the kernel decides).
    sent, pids = 0, set()
    deadline = time.monotonic() + 20
    with ThreadPoolExecutor(max_workers=8) as pool:
        while len(pids) < WORKERS and time.monotonic() < deadline:
            statuses = list(pool.map(lambda _: server.request("GET", path)[0], range(40)))
            assert statuses == [404] * 40
            sent += 40
            pids = {line["pid"] for line in server.access_log() if line["path"] == path}
    assert len(pids) == WORKERS, "all requests landed on one worker"

    status, text = scrape(server)
    assert status == 200
    assert value(text, "api_http_requests_total", **key) == start + sent
    # One series per label set, summed over the workers: no pid label anywhere.
    assert all("pid" not in dict(labels) for _, labels in parse(text))


def test_the_instance_series_from_the_master(server):
    _, text = scrape(server)
    assert value(text, "api_build_info", version=API_VERSION, revision="0123456789ab") == 1
    wait_for(lambda: value(scrape(server)[1], "api_ready") == 1, timeout=15)
    for name in (
        "api_database_errors_total",
        "api_idempotent_replays_total",
        "api_http_requests_in_flight",
        "api_db_pool_checked_out",
    ):
        assert value(text, name) is not None, name


def test_the_readiness_probe_is_an_ordinary_request(server):
    wait_for(
        lambda: any(
            line["path"] == "/readyz" and line["status"] == 200 for line in server.access_log()
        ),
        timeout=15,
    )
    _, text = scrape(server)
    assert value(text, "api_http_requests_total", method="GET", route="/readyz", status="200")


def test_only_metrics_path_is_served(server):
    assert scrape(server, "/")[0] == 404
    assert scrape(server, "/readyz")[0] == 404


def test_the_api_port_does_not_serve_metrics(server):
    status, body = server.request("GET", "/metrics")
    assert status == 404
    assert body["status"] == 404


class SlowRequest:
    """A sign-up whose body has not all arrived: the app is running it, waiting to read."""

    def __init__(self, server: Server) -> None:
        body = json.dumps({"name": "Slow", "email": f"slow-{uuid.uuid4().hex}@example.com"})
        self.rest = body[5:].encode()
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        self.sock.sendall(
            b"POST /api/users HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n{body[:5]}".encode()
        )

    def finish(self) -> bytes:
        """Send the rest of the body; the status line."""
        self.sock.sendall(self.rest)
        return self.sock.recv(100)

    def close(self) -> None:
        self.sock.close()


def test_requests_in_flight_across_workers(server):
    def in_flight() -> float | None:
        return value(scrape(server)[1], "api_http_requests_in_flight")

    # Make both workers start their samplers (each does on its first request).
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda _: server.request("GET", "/healthz"), range(20)))
    wait_for(lambda: in_flight() == 0, timeout=5)
    held = [SlowRequest(server) for _ in range(3)]
    try:
        wait_for(lambda: in_flight() == 3, timeout=5)  # sampled once a second
    finally:
        for request in held:
            assert request.finish().startswith(b"HTTP/1.1 201")
            request.close()
    wait_for(lambda: in_flight() == 0, timeout=5)


def test_a_killed_workers_requests_are_no_longer_in_flight(server):
    held = SlowRequest(server)
    try:
        wait_for(lambda: value(scrape(server)[1], "api_http_requests_in_flight") == 1, timeout=5)
        master = parent(int(server.access_log()[-1]["pid"]))  # a live worker's parent
        for pid in worker_pids(master):
            os.kill(pid, signal.SIGKILL)
        # The dead workers' files would still say 1 without child_exit's mark_process_dead.
        wait_for(lambda: len(worker_pids(master)) == WORKERS, timeout=15)
        wait_for(lambda: value(scrape(server)[1], "api_http_requests_in_flight") == 0, timeout=5)
    finally:
        held.close()
    # Counters of the dead workers stay: totals never go down while the master lives.
    _, text = scrape(server)
    assert value(text, "api_http_requests_total", method="GET", route="/healthz", status="200")


def start_gunicorn(
    tmp_path: Path, bind_port: int, metrics_port: int
) -> subprocess.CompletedProcess[str]:
    """Run the API's gunicorn with these ports until it exits (these tests expect it to refuse)."""
    return subprocess.run(
        [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "api.wsgi:app"],
        cwd=SERVICE_DIR,
        env={
            **os.environ,
            "DATABASE_URL": f"sqlite:///{tmp_path / 'api.db'}",
            "GUNICORN_BIND": f"127.0.0.1:{bind_port}",
            "METRICS_PORT": str(metrics_port),
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_gunicorn_refuses_metrics_on_the_api_port(tmp_path):
    port = free_port()
    result = start_gunicorn(tmp_path, port, port)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert f"METRICS_PORT={port} is the port of GUNICORN_BIND" in result.stderr


def test_gunicorn_stops_when_the_metrics_port_is_taken(tmp_path):
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = start_gunicorn(tmp_path, free_port(), port)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert f"METRICS_PORT={port}: cannot serve the metrics" in result.stderr
