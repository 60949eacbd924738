"""HTTP as the suites speak it: sessions that trust the run's CA, raw requests over TLS, the
stack's JSON error shape, and the JSON log lines the API and nginx write.

Nothing here talks to Docker.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

ERROR_KEYS = {"error", "message", "status", "request_id"}


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


class HttpsClient:
    """Requests to ``self.base_url`` over HTTPS, trusting only ``self.ca`` (the run's CA).

    Mixed into whatever serves the stack (a compose-style Stack, one Swarm node's nginx), so they
    offer the same ``url``/``request``/``get``/``post`` that domain.py's helpers call.
    """

    base_url: str
    ca: Path

    def url(self, path: str) -> str:
        return self.base_url + path

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """One request on a fresh connection; timeout 10 s unless given."""
        kwargs.setdefault("timeout", 10)
        with new_session(str(self.ca)) as session:
            return session.request(method, self.url(path), **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("POST", path, **kwargs)


def assert_error_json(response: requests.Response, status: int) -> dict[str, Any]:
    """Assert `response` is the stack's JSON error with `status`; return the parsed body."""
    assert response.status_code == status, (
        f"expected {status}, got {response.status_code}: {response.text[:500]}"
    )
    content_type = response.headers.get("Content-Type", "")
    not_json = f"error {status} is not JSON (Content-Type {content_type!r}): {response.text[:500]}"
    assert content_type.startswith("application/"), not_json
    assert "json" in content_type, not_json
    body = response.json()
    assert isinstance(body, dict), body
    missing = {"error", "message", "status", "request_id"} - body.keys()
    assert not missing, f"error body lacks {sorted(missing)}: {body}"
    assert body["status"] == status, body
    assert isinstance(body["error"], str), body
    assert body["error"], body
    assert isinstance(body["message"], str), body
    assert body["message"], body
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


def get_json(stack: Any, path: str, **kwargs: Any) -> Any:
    response = stack.get(path, **kwargs)
    assert response.status_code == 200, (path, response.status_code, response.text[:300])
    return response.json()


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
    assert len(parts) >= 2, f"not a response: {lines[0]!r}"
    assert parts[0].startswith("HTTP/1."), f"not a response: {lines[0]!r}"
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
    assert isinstance(body, dict), body
    assert body.keys() >= ERROR_KEYS, body
    assert body["status"] == response.status, body
    return body


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


def closing(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.close()
