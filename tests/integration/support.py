"""Helpers shared by the integration tests; nothing here talks to Docker.

- `wait_until`: poll a real condition with a deadline (the suite never sleeps and hopes).
- `assert_error_json`: the error shape every component must answer with.
- `json_lines` / `find_log_entry`: read the JSON log lines the API and nginx write to stdout.
- `SlowUpload` / `Trickler`: raw-socket clients that send their headers at once and then trickle
  the request body one byte at a time, to tie up whatever reads it.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import requests

T = TypeVar("T")

# Exceptions a polled condition may raise while the thing it waits for is not there yet.
TRANSIENT = (OSError, requests.RequestException, AssertionError, ValueError, KeyError)


class Fatal(Exception):
    """Raised by a polled predicate when waiting longer cannot help (e.g. a container exited)."""


def wait_until(
    predicate: Callable[[], T],
    timeout: float,
    *,
    interval: float = 0.2,
    what: str = "condition",
) -> T:
    """Call `predicate` until it returns a truthy value, and return that value.

    Exceptions in TRANSIENT count as "not yet"; anything else (notably `Fatal`) propagates at
    once. When `timeout` seconds pass, raise AssertionError naming `what` and the last result
    or exception, so a failure says what the suite was waiting for.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            result = predicate()
            if result:
                return result
            last = result
        except TRANSIENT as exc:
            last = exc
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}"
            )
        time.sleep(interval)


def new_session(ca: str | None = None) -> requests.Session:
    """A Session that trusts only `ca` (the run's CA) for https and ignores the environment.

    trust_env is off because requests lets REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE override a Session's
    `verify`, and a proxy from HTTPS_PROXY must not sit between the suite and 127.0.0.1.
    """
    session = requests.Session()
    session.trust_env = False
    if ca is not None:
        session.verify = ca
    return session


def http_get(url: str, *, ca: str | None = None, **kwargs: Any) -> requests.Response:
    """One GET on a fresh connection (see new_session); timeout 10 s unless given."""
    kwargs.setdefault("timeout", 10)
    with new_session(ca) as session:
        return session.get(url, **kwargs)


def unique_email(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}@example.com"


def assert_error_json(response: requests.Response, status: int) -> dict[str, Any]:
    """Assert `response` is the stack's JSON error with `status`; return the parsed body."""
    assert response.status_code == status, (
        f"expected {status}, got {response.status_code}: {response.text[:500]}"
    )
    content_type = response.headers.get("Content-Type", "")
    assert content_type.startswith("application/") and "json" in content_type, (
        f"error {status} is not JSON (Content-Type {content_type!r}): {response.text[:500]}"
    )
    body = response.json()
    assert isinstance(body, dict), body
    missing = {"error", "message", "status", "request_id"} - body.keys()
    assert not missing, f"error body lacks {sorted(missing)}: {body}"
    assert body["status"] == status, body
    assert isinstance(body["error"], str) and body["error"], body
    assert isinstance(body["message"], str) and body["message"], body
    assert "<html" not in response.text.lower(), response.text[:500]
    return body


def json_lines(text: str) -> list[dict[str, Any]]:
    """The JSON objects among a container's log lines (other lines are skipped)."""
    entries = []
    for line in text.splitlines():
        line = line.strip()
        start = line.find("{")
        if start < 0:
            continue
        try:
            entry = json.loads(line[start:])
        except ValueError:
            continue
        if isinstance(entry, dict):
            entries.append(entry)
    return entries


def find_log_entry(text: str, request_id: str) -> dict[str, Any] | None:
    """The JSON log line whose value (any field) equals `request_id`, if there is one."""
    for entry in json_lines(text):
        if request_id in (str(value) for value in entry.values()):
            return entry
    return None


def raw_http(
    host: str,
    port: int,
    request: bytes,
    *,
    tls: ssl.SSLContext | None = None,
    server_hostname: str = "localhost",
    timeout: float = 10.0,
) -> bytes:
    """Send a raw request and read until the server closes or sends a complete response."""
    sock = socket.create_connection((host, port), timeout=timeout)
    if tls is not None:
        sock = tls.wrap_socket(sock, server_hostname=server_hostname)
    with sock:
        sock.sendall(request)
        chunks = []
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
        return b"".join(chunks)


class SlowUpload:
    """One client that sends a POST's headers at once and then its body a byte at a time."""

    def __init__(
        self,
        host: str,
        port: int,
        path: str,
        body: bytes,
        *,
        tls: ssl.SSLContext | None = None,
        host_header: str = "localhost",
    ) -> None:
        self.body = body
        self.sent = 0
        sock = socket.create_connection((host, port), timeout=10)
        if tls is not None:
            sock = tls.wrap_socket(sock, server_hostname="localhost")
        self.sock = sock
        head = (
            f"POST {path} HTTP/1.1\r\n"
            f"Host: {host_header}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n"
            "\r\n"
        ).encode()
        self.sock.sendall(head)
        self.send_byte()

    def send_byte(self) -> None:
        """Send the next body byte (never the last one: the request must stay incomplete)."""
        if self.sent < len(self.body) - 1:
            self.sock.sendall(self.body[self.sent : self.sent + 1])
            self.sent += 1

    def finish(self) -> bytes:
        """Send the rest of the body and return the whole response."""
        self.sock.sendall(self.body[self.sent :])
        self.sent = len(self.body)
        chunks = []
        self.sock.settimeout(30)
        while True:
            data = self.sock.recv(65536)
            if not data:
                break
            chunks.append(data)
            if response_complete(b"".join(chunks)):
                break
        return b"".join(chunks)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def response_complete(data: bytes) -> bool:
    """Whether `data` holds a full HTTP/1.1 response with a Content-Length body."""
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value.strip())
    return False


class Trickler:
    """Keep a set of SlowUploads alive: one more body byte each per `interval` seconds.

    Use as a context manager; on exit every connection is closed. `broken` lists the errors of
    connections the server closed while the test still needed them.
    """

    def __init__(self, clients: Iterable[SlowUpload], interval: float = 0.25) -> None:
        self.clients = list(clients)
        self.interval = interval
        self.broken: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="trickler", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            for client in self.clients:
                if client.sock.fileno() < 0:
                    continue
                try:
                    client.send_byte()
                except OSError as exc:
                    self.broken.append(repr(exc))
                    client.close()

    def wait_sent(self, count: int, timeout: float = 15) -> None:
        """Wait until every client has sent at least `count` body bytes."""
        wait_until(
            lambda: min(client.sent for client in self.clients) >= count,
            timeout,
            interval=0.05,
            what=f"every slow client to send {count} body bytes",
        )

    def __enter__(self) -> Trickler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        for client in self.clients:
            client.close()
