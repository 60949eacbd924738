"""Malformed HTTP and bodies, sent byte for byte over TLS to nginx (shared stack, limits off).

Every case must get a 4xx answer in the stack's JSON error shape -- from nginx or from the API,
whichever refuses it -- within 10 s: never a 5xx, never an HTML page, never a hang. The requests
are written by hand (not by an HTTP library that would fix them up) and go through nginx exactly
as an attacker would send them. Cases that use a key use a real one, so the body is what gets
judged, not the credentials.

HTTP/2: nginx answers an oversized header block by closing the connection (GOAWAY), not with a
431; `test_oversized_headers_over_http2_end_the_connection_at_once` shows that this happens at
once, and that nginx keeps serving. That is the protocol's own answer (RFC 9113 section 10.5.1
allows a connection error for a header list larger than the server accepts) and it cannot be a
hang or a 5xx, so it is accepted; HTTP/1.1 clients get the JSON 431.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import time
from collections.abc import Callable

import pytest

from tests.support.domain import (
    ME_PATH,
    RESOURCES_PATH,
    USERS_PATH,
    raw_resource_body,
    resource_url,
    unique_email,
    user_url,
)
from tests.support.http import assert_json_error, raw_request, tls_context

Build = Callable[[str], bytes]  # API key -> the raw request
# The paths as request-line bytes, for the requests written by hand.
USERS, ME, RESOURCES = (path.encode() for path in (USERS_PATH, ME_PATH, RESOURCES_PATH))


def request(
    method: str,
    target: bytes | str,
    *,
    body: bytes | None = None,
    content_type: bytes | None = b"application/json",
    key: str | None = None,
    extra: bytes = b"",
    host: bytes = b"localhost",
) -> bytes:
    if isinstance(target, str):
        target = target.encode()
    head = method.encode() + b" " + target + b" HTTP/1.1\r\nHost: " + host + b"\r\n"
    head += b"Connection: close\r\n"
    if key:
        head += f"Authorization: Bearer {key}\r\n".encode()
    if body is not None:
        if content_type is not None:
            head += b"Content-Type: " + content_type + b"\r\n"
        head += b"Content-Length: " + str(len(body)).encode() + b"\r\n"
    return head + extra + b"\r\n" + (body or b"")


def new_user_body(name: bytes = b'"Mallory"') -> bytes:
    return b'{"name": ' + name + b', "email": "' + unique_email("bad").encode() + b'"}'


def post_user(body: bytes, content_type: bytes | None = b"application/json") -> Build:
    return lambda key: request("POST", USERS, body=body, content_type=content_type)


def post_resource(body: bytes) -> Build:
    return lambda key: request("POST", RESOURCES, body=body, key=key)


def get(target: bytes | str, extra: bytes = b"", key: bool = False) -> Build:
    return lambda k: request("GET", target, extra=extra, key=k if key else None)


def raw(data: bytes) -> Build:
    return lambda key: data


NEST = 100_000
CASES: dict[str, tuple[Build, set[int]]] = {
    # --- deep nesting
    "nested arrays, 100k deep": (post_user(b"[" * NEST + b"]" * NEST), {400}),
    "nested objects, 50k deep": (post_user(b'{"a":' * 50_000 + b"1" + b"}" * 50_000), {400}),
    "nesting inside a field": (
        post_resource(raw_resource_body(b"[" * 5000 + b"]" * 5000)),
        {400, 422},
    ),
    "nesting just under the limit": (
        post_resource(raw_resource_body(b"[" * 500 + b"]" * 500)),
        {422},
    ),
    # --- huge numbers
    "5000-digit integer in a body": (
        post_resource(raw_resource_body(public=b"9" * 5000)),
        {400, 422},
    ),
    "1e999999 in a body": (post_resource(raw_resource_body(public=b"1e999999")), {422}),
    "-1e999999 as a name": (post_resource(raw_resource_body(b"-1e999999")), {422}),
    "huge id in the path": (get(resource_url("9" * 30)), {422}),
    "3000-digit id in the path": (get(resource_url("9" * 3000)), {404, 422}),
    "5000-digit id in the path": (get(resource_url("9" * 5000)), {404, 414, 422}),
    "5000-digit page size": (get(f"{RESOURCES_PATH}?limit={'9' * 5000}"), {400, 414, 422}),
    "negative page size": (get(f"{USERS_PATH}?limit=-1"), {422}),
    "float page size": (get(f"{USERS_PATH}?limit=1e3"), {422}),
    # --- invalid UTF-8
    "invalid UTF-8 in a body": (post_user(new_user_body(b'"\xff\xfe\xfd"')), {400}),
    "overlong UTF-8 encoding of '/'": (post_user(new_user_body(b'"\xc0\xaf"')), {400}),
    "UTF-16 body": (post_user(new_user_body().decode().encode("utf-16")), {400}),
    "lone surrogate escape": (post_user(new_user_body(b'"\\ud800"')), {400, 422}),
    "invalid UTF-8 in the path": (get(USERS + b"/\xff\xfe"), {400, 404}),
    "%-encoded invalid UTF-8 in the path": (get(user_url("%ff%fe")), {400, 404}),
    "%-encoded invalid UTF-8 in the query": (get(f"{USERS_PATH}?cursor=%ff%fe"), {400, 422}),
    "invalid UTF-8 in the query": (get(USERS + b"?cursor=\xff\xfe"), {400, 422}),
    "invalid UTF-8 in Authorization": (
        get(ME, extra=b"Authorization: Bearer \xff\xfe\r\n"),
        {400, 401},
    ),
    # --- NUL bytes
    "escaped NUL in a name": (post_user(new_user_body(b'"Mal\\u0000lory"')), {422}),
    "raw NUL in a body": (post_user(new_user_body(b'"Mal\x00lory"')), {400}),
    "%00 in the path": (get(user_url("%00")), {400, 404}),
    "%00 in the query": (get(f"{USERS_PATH}?cursor=%00"), {400, 422}),
    "NUL in the path": (get(USERS + b"/\x00"), {400}),
    "NUL in a header": (get(RESOURCES, extra=b"X-Test: a\x00b\r\n"), {400}),
    "NUL in Authorization": (
        get(ME, extra=b"Authorization: Bearer a\x00b\r\n"),
        {400},
    ),
    # --- wrong and missing content types
    "text/plain": (post_user(new_user_body(), b"text/plain"), {415}),
    "no Content-Type": (post_user(new_user_body(), None), {415}),
    "form-encoded": (
        post_user(b"name=Mallory&email=m@example.com", b"application/x-www-form-urlencoded"),
        {415},
    ),
    "multipart": (post_user(b"--x\r\n\r\n--x--\r\n", b"multipart/form-data; boundary=x"), {415}),
    "application/xml": (post_user(b"<user/>", b"application/xml"), {415}),
    "JSON declared as UTF-16": (
        post_user(new_user_body(), b"application/json; charset=utf-16"),
        {415},
    ),
    "garbage Content-Type": (post_user(new_user_body(), b"\x01\x02;;;==="), {400, 415}),
    "JSON that is not an object": (post_user(b'"Mallory"'), {400}),
    "NaN": (post_resource(raw_resource_body(public=b"NaN")), {400}),
    "empty body with a JSON type": (post_user(b""), {400}),
    "truncated JSON": (post_user(b'{"name": "Mallory", "email": '), {400}),
    # --- duplicate keys
    "duplicate name": (
        post_user(b'{"name": "Mallory", "name": "Alice", "email": "d@example.com"}'),
        {400},
    ),
    "duplicate owner field": (
        post_resource(raw_resource_body(public=b"false", public_again=b"true")),
        {400},
    ),
    # --- oversized headers and request lines
    "one 20 KB header": (get(RESOURCES, extra=b"X-Big: " + b"a" * 20_000 + b"\r\n"), {431}),
    "40 KB of headers": (
        get(RESOURCES, extra=b"".join(b"X-H%d: %s\r\n" % (i, b"b" * 1000) for i in range(40))),
        {431},
    ),
    "600 small headers": (
        get(RESOURCES, extra=b"".join(b"X-H%d: v\r\n" % i for i in range(600))),
        {431},
    ),
    "100 KB cookie": (
        get(RESOURCES, extra=b"Cookie: a=" + b"c" * 100_000 + b"\r\n"),
        {431},
    ),
    "7 KB header (nginx passes it on)": (
        get(RESOURCES, extra=b"X-Big: " + b"a" * 7000 + b"\r\nAuthorization: Basic x\r\n"),
        {401},
    ),
    "20 KB request line": (get(f"{RESOURCES_PATH}?{'a' * 20_000}"), {414}),
    "6 KB request line (nginx passes it on)": (get(f"{user_url(1)}?x={'a' * 6000}"), {414}),
    # --- path traversal
    "../ in the path": (get("/api/../../../../etc/passwd"), {400, 404}),
    "%2e%2e in the path": (get("/api/%2e%2e/%2e%2e/%2e%2e/etc/passwd"), {400, 404}),
    "..%2f in the path": (get("/api/docs/static/..%2f..%2f..%2f..%2fetc%2fpasswd"), {400, 404}),
    "double-encoded ../": (get("/api/docs/static/%252e%252e/%252e%252e/etc/passwd"), {400, 404}),
    "backslashes": (get("/api/docs/static/..\\..\\..\\..\\etc\\passwd"), {400, 404}),
    "..%5c": (get("/api/docs/static/..%5c..%5c..%5cetc%5cpasswd"), {400, 404}),
    "traversal to the source": (
        get("/api/docs/static/../../../../app/src/api/core/config.py"),
        {400, 404},
    ),
    "traversal in an item id": (get(resource_url("..%2f..%2fetc%2fpasswd")), {400, 404}),
    "absolute-form request line": (get("http://evil.example/../../etc/passwd"), {400, 404}),
    # --- framing that smuggles
    "Content-Length and Transfer-Encoding": (
        raw(
            b"POST " + USERS + b" HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
            b"Content-Type: application/json\r\nContent-Length: 4\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET " + ME + b" HTTP/1.1\r\n\r\n"
        ),
        {400},
    ),
    "two Content-Lengths": (
        raw(
            b"POST " + USERS + b" HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
            b"Content-Type: application/json\r\nContent-Length: 2\r\nContent-Length: 40\r\n\r\n{}"
        ),
        {400},
    ),
    "negative Content-Length": (
        raw(
            b"POST " + USERS + b" HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
            b"Content-Type: application/json\r\nContent-Length: -1\r\n\r\n{}"
        ),
        {400},
    ),
    "bad chunk size": (
        raw(
            b"POST " + USERS + b" HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"zz\r\n{}\r\n0\r\n\r\n"
        ),
        {400},
    ),
    "no Host header": (raw(b"GET " + RESOURCES + b" HTTP/1.1\r\nConnection: close\r\n\r\n"), {400}),
    "bad method": (raw(b"G=T " + RESOURCES + b" HTTP/1.1\r\nHost: localhost\r\n\r\n"), {400, 405}),
    "unknown method": (
        raw(b"BREW " + RESOURCES + b" HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"),
        {400, 405},
    ),
    "TRACE": (
        raw(b"TRACE " + RESOURCES + b" HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"),
        {405},
    ),
    "HTTP/2.0 on an HTTP/1 connection": (
        raw(b"GET " + RESOURCES + b" HTTP/2.0\r\nHost: localhost\r\n\r\n"),
        {400},
    ),
}


@pytest.fixture(scope="module")
def key(stack) -> str:
    return stack.create_user("Malformed Sender")["api_key"]


@pytest.mark.parametrize("name", list(CASES))
def test_malformed_request_gets_a_json_4xx(stack, key, name, figures):
    build, expected = CASES[name]
    started = time.monotonic()
    response = raw_request(stack.https_port, build(key), str(stack.ca), timeout=10)
    elapsed = time.monotonic() - started
    body = assert_json_error(response, expected)
    assert b"root:" not in response.body, body
    assert b"SettingsError" not in response.body, body
    tally = figures.setdefault("malformed", {"cases": 0, "slowest_s": 0.0, "statuses": {}})
    tally["cases"] += 1
    tally["slowest_s"] = round(max(tally["slowest_s"], elapsed), 3)
    tally["statuses"][str(response.status)] = tally["statuses"].get(str(response.status), 0) + 1


def test_the_stack_still_serves_after_the_malformed_requests(stack):
    response = stack.get(RESOURCES_PATH)
    assert response.status_code == 200, response.text


# --- HTTP/2: a hand-written client (HPACK literals, no Huffman), so nothing fixes the request up.

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
HEADERS, CONTINUATION, SETTINGS, GOAWAY, DATA = 0x1, 0x9, 0x4, 0x7, 0x0
END_STREAM, END_HEADERS = 0x1, 0x4
ENHANCE_YOUR_CALM, PROTOCOL_ERROR = 0xB, 0x1


def frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    head = struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream)
    return head + payload


def hpack_int(value: int, prefix_bits: int, first: int = 0) -> bytes:
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = bytearray([first | limit])
    value -= limit
    while value >= 128:
        out.append((value % 128) + 128)
        value //= 128
    out.append(value)
    return bytes(out)


def hpack_literal(name: bytes, value: bytes) -> bytes:
    """Literal header field without indexing, new name, no Huffman coding."""
    return b"\x00" + hpack_int(len(name), 7) + name + hpack_int(len(value), 7) + value


def h2_frames(sock: socket.socket, deadline: float):
    buffer = b""
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = sock.recv(65536)
        except TimeoutError:
            break
        if not data:
            return
        buffer += data
        while len(buffer) >= 9:
            length = int.from_bytes(buffer[:3], "big")
            if len(buffer) < 9 + length:
                break
            yield buffer[3], buffer[4], buffer[9 : 9 + length]
            buffer = buffer[9 + length :]
    raise TimeoutError("HTTP/2 connection neither answered nor closed in time")


def h2_get(port: int, ca: str, path: str, extra: list[tuple[bytes, bytes]], timeout: float = 10):
    """Send one GET over HTTP/2; return ('status', code) or ('goaway', error code)."""
    block = b"".join(
        hpack_literal(name, value)
        for name, value in [
            (b":method", b"GET"),
            (b":scheme", b"https"),
            (b":authority", b"localhost"),
            (b":path", path.encode()),
            *extra,
        ]
    )
    chunks = [block[i : i + 16_000] for i in range(0, len(block), 16_000)]
    frames = [frame(HEADERS, END_STREAM | (END_HEADERS if len(chunks) == 1 else 0), 1, chunks[0])]
    for index, chunk in enumerate(chunks[1:], start=1):
        flags = END_HEADERS if index == len(chunks) - 1 else 0
        frames.append(frame(CONTINUATION, flags, 1, chunk))
    deadline = time.monotonic() + timeout
    with (
        socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw_sock,
        tls_context(ca, http2=True).wrap_socket(raw_sock, server_hostname="localhost") as sock,
    ):
        assert sock.selected_alpn_protocol() == "h2"
        sock.sendall(PREFACE + frame(SETTINGS, 0, 0, b""))
        # The server may close before it has read everything: judged below.
        with contextlib.suppress(OSError):
            sock.sendall(b"".join(frames))
        for kind, _flags, payload in h2_frames(sock, deadline):
            if kind == GOAWAY:
                return "goaway", int.from_bytes(payload[4:8], "big")
            if kind == HEADERS:
                # nginx's answer starts with an indexed :status (static table 8-14) or a literal.
                first = payload[0]
                static = {8: 200, 9: 204, 10: 206, 11: 304, 12: 400, 13: 404, 14: 500}
                if first & 0x80:
                    return "status", static.get(first & 0x7F)
                return "status", int(payload[2:5]) if payload[1] == 3 else None
    return "closed", None


def test_http2_works_for_an_ordinary_request(stack):
    assert h2_get(stack.https_port, str(stack.ca), RESOURCES_PATH, []) == ("status", 200)


def test_oversized_headers_over_http2_end_the_connection_at_once(stack):
    started = time.monotonic()
    outcome = h2_get(stack.https_port, str(stack.ca), RESOURCES_PATH, [(b"x-big", b"a" * 40_000)])
    elapsed = time.monotonic() - started
    assert outcome in {("goaway", ENHANCE_YOUR_CALM), ("status", 431), ("status", 400)}, outcome
    assert elapsed < 5, f"took {elapsed:.1f}s"
    # nginx itself is unharmed.
    assert h2_get(stack.https_port, str(stack.ca), RESOURCES_PATH, []) == ("status", 200)
