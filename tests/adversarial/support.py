"""Helpers of the adversarial suite (the integration suite's helpers are re-exported from here)."""

from __future__ import annotations

import contextlib
import json
import math
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests

from tests.integration.support import (  # noqa: F401  (re-exported)
    Fatal,
    assert_error_json,
    new_session,
    unique_email,
    wait_until,
)

ERROR_KEYS = {"error", "message", "status", "request_id"}


def get_json(stack: Any, path: str, **kwargs: Any) -> Any:
    response = stack.get(path, **kwargs)
    assert response.status_code == 200, (path, response.status_code, response.text[:300])
    return response.json()


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (pct in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def tls_context(ca: str, *, http2: bool = False) -> ssl.SSLContext:
    """A client context that trusts only the run's CA (ALPN http/1.1 unless http2)."""
    context = ssl.create_default_context(cafile=ca)
    context.set_alpn_protocols(["h2", "http/1.1"] if http2 else ["http/1.1"])
    return context


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes
    raw: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def parse_response(data: bytes) -> RawResponse:
    """Parse one HTTP/1.1 response with a Content-Length (or close-delimited) body."""
    head, sep, body = data.partition(b"\r\n\r\n")
    assert sep, f"no complete response head: {data[:300]!r}"
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    assert len(parts) >= 2 and parts[0].startswith("HTTP/1."), f"not a response: {lines[0]!r}"
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = headers.get("content-length")
    if length is not None:
        body = body[: int(length)]
    return RawResponse(int(parts[1]), headers, body, data)


def read_response(sock: socket.socket, deadline: float) -> bytes:
    """Read until a complete Content-Length response arrived or the server closed."""
    chunks: list[bytes] = []
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"no complete response in time; got {b''.join(chunks)[:300]!r}")
        sock.settimeout(remaining)
        data = sock.recv(65536)
        if not data:
            return b"".join(chunks)
        chunks.append(data)
        buffered = b"".join(chunks)
        head, sep, body = buffered.partition(b"\r\n\r\n")
        if sep:
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length" and len(body) >= int(value):
                    return buffered


def raw_request(port: int, request: bytes, ca: str, timeout: float = 10.0) -> RawResponse:
    """Send `request` as is over TLS to 127.0.0.1:port; the answer must come within `timeout`."""
    deadline = time.monotonic() + timeout
    with (
        socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw,
        tls_context(ca).wrap_socket(raw, server_hostname="localhost") as sock,
    ):
        sock.sendall(request)
        return parse_response(read_response(sock, deadline))


def assert_json_error(response: RawResponse, statuses: set[int] | None = None) -> dict[str, Any]:
    """A 4xx (in `statuses` if given) with the stack's JSON error body."""
    assert 400 <= response.status < 500, f"{response.status}: {response.raw[:500]!r}"
    if statuses is not None:
        assert response.status in statuses, f"{response.status}: {response.raw[:500]!r}"
    content_type = response.headers.get("content-type", "")
    assert content_type.startswith("application/json"), f"not JSON: {response.raw[:500]!r}"
    body = response.json()
    assert isinstance(body, dict) and body.keys() >= ERROR_KEYS, body
    assert body["status"] == response.status, body
    return body


def own_stack(launcher: Any, name: str, *, api_env: dict[str, str], nginx_env: dict[str, str]):
    """An API + nginx pair of this test's own (for drills that stop, kill or flood them)."""
    api = launcher.api(name, aliases=(name,), env=api_env)
    nginx = launcher.nginx(f"{name}-nginx", upstream=f"{name}:8000", env=nginx_env)
    return launcher.stack(api, nginx)


@dataclass
class LoadResult:
    """What a load generator saw: latencies of answered requests, statuses, transport errors."""

    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, status: int | None, seconds: float, error: str | None = None) -> None:
        with self.lock:
            if status is None:
                self.errors.append(error or "?")
            else:
                self.statuses[status] = self.statuses.get(status, 0) + 1
                self.latencies.append(seconds)

    @property
    def count(self) -> int:
        return len(self.latencies) + len(self.errors)

    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)


class Load:
    """`threads` clients, each on its own keep-alive session, calling `send` until stopped."""

    def __init__(
        self,
        ca: str,
        send: Callable[[requests.Session], requests.Response],
        threads: int = 2,
        pause: float = 0.0,
    ) -> None:
        self.ca = ca
        self.send = send
        self.result = LoadResult()
        self.pause = pause
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, name=f"load-{i}", daemon=True)
            for i in range(threads)
        ]

    def _run(self) -> None:
        with new_session(self.ca) as session:
            while not self._stop.is_set():
                started = time.perf_counter()
                try:
                    response = self.send(session)
                    self.result.record(response.status_code, time.perf_counter() - started)
                except requests.RequestException as exc:
                    self.result.record(None, time.perf_counter() - started, repr(exc))
                if self.pause:
                    self._stop.wait(self.pause)

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def closing(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.close()
