"""A real gunicorn serving the app on a loopback port, for tests that need the server itself."""

import contextlib
import http.client
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SERVICE_DIR = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@dataclass
class Server:
    port: int
    log_path: Path
    metrics_port: int

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            payload = json.dumps(body) if body is not None else None
            headers = {"Content-Type": "application/json"} if body is not None else {}
            conn.request(method, path, body=payload, headers=headers)
            response = conn.getresponse()
            data = response.read()
            return response.status, json.loads(data) if data else {}
        finally:
            conn.close()

    def access_log(self) -> list[dict]:
        lines = []
        for line in self.log_path.read_text().splitlines():
            if line.startswith("{"):
                entry = json.loads(line)
                if entry.get("logger") == "api.access":
                    lines.append(entry)
        return lines


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_healthy(server: Server, process: subprocess.Popen, deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"gunicorn exited early:\n{server.log_path.read_text()}")
        try:
            if server.request("GET", "/healthz")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    pytest.fail(f"gunicorn not healthy after {deadline_s}s:\n{server.log_path.read_text()}")


@contextlib.contextmanager
def running_gunicorn(tmp: Path, **env_overrides: str) -> Iterator[Server]:
    """Migrate a fresh SQLite file in ``tmp``, start gunicorn on it, and stop it afterwards."""
    port, metrics_port = free_port(), free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp / 'api.sqlite3'}",
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        # Not the default 9100, which another server on this machine may hold.
        "METRICS_PORT": str(metrics_port),
        **env_overrides,
    }
    subprocess.run(
        [sys.executable, "-m", "api.migrate"], cwd=SERVICE_DIR, env=env, check=True, timeout=60
    )
    log_path = tmp / "server.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "api.wsgi:app"],
            cwd=SERVICE_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = Server(port, log_path, metrics_port)
    try:
        wait_until_healthy(server, process, deadline_s=30)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
