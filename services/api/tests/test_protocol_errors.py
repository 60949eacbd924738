"""Requests gunicorn itself refuses are answered as JSON, never gunicorn's HTML page.

Found by the adversarial suite: nginx passes on requests that gunicorn's parser rejects (a raw
non-ASCII byte in the target, a control character in a header value, more than 100 header fields,
a request line over 4094 bytes), and gunicorn's HTML error page reached the client.
"""

import json
import socket
from collections.abc import Iterator

import pytest
from gunicorn_server import Server, running_gunicorn

from api.web.protocol_errors import write_error


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_gunicorn(
        tmp_path_factory.mktemp("gunicorn-protocol"), GUNICORN_WORKERS="1"
    ) as server:
        yield server


def send_raw(port: int, data: bytes) -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    return int(lines[0].split()[1]), headers, body


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /api/users/\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"GET /api/users HTTP/1.1\r\nHost: x\r\nX-Test: a\x01b\r\n\r\n", 400),
        (b"GET /api/users?" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (
            b"GET /api/users HTTP/1.1\r\nHost: x\r\n"
            + b"".join(b"X-H%d: v\r\n" % i for i in range(200))
            + b"\r\n",
            431,
        ),
    ],
)
def test_gunicorn_refusals_are_json(server, request_bytes, status):
    got, headers, body = send_raw(server.port, request_bytes)
    assert got == status
    assert headers["content-type"] == "application/json"
    assert int(headers["content-length"]) == len(body)
    error = json.loads(body)
    assert set(error) == {"error", "message", "status", "request_id"}
    assert error["status"] == status
    assert b"<html" not in body.lower()
    # The request is never echoed.
    assert b"\xff" not in body
    assert b"aaaa" not in body


def test_write_error_writes_one_complete_json_response():
    left, right = socket.socketpair()
    with left, right:
        write_error(left, 431, "Request Header Fields Too Large", "<b>details</b>")
        left.shutdown(socket.SHUT_WR)
        data = right.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
    assert b"Connection: close" in head
    assert json.loads(body)["message"] == "The request has too many or too large header fields."
    assert b"details" not in body
