"""A slowloris attacker, run as its own process: `python -m tests.adversarial.slowloris ...`.

Keeps CONNECTIONS TLS connections to 127.0.0.1:PORT open, half trickling an endless request
header block (a GET that never finishes its headers), half trickling the body of a POST whose
headers were complete, one byte per connection every INTERVAL seconds. When the server closes a
connection (nginx cuts header tricklers after client_header_timeout), its answer (if any) is read
and tallied by status, and a new connection takes its place at once, as a real attacker would.

Runs in a separate process so that its TLS handshakes and sends never compete with the ordinary
clients of the test for the same Python interpreter (which would add client-side latency that is
not the server's). Prints `READY <open>` once every connection is open, and a JSON summary when
stdin closes or after --seconds.
"""

from __future__ import annotations

import argparse
import json
import select
import socket
import ssl
import sys
import threading
import time
from dataclasses import dataclass, field

from tests.support.domain import RESOURCES_PATH, USERS_PATH, user_body


@dataclass
class Conn:
    kind: str  # "header" | "body"
    sock: ssl.SSLSocket
    pending: bytes  # the bytes still to trickle (headers are endless: refilled)
    opened: float = field(default_factory=time.monotonic)


def open_conn(port: int, context: ssl.SSLContext, kind: str, serial: int) -> Conn:
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock = context.wrap_socket(raw, server_hostname="localhost")
    if kind == "header":
        sock.sendall(f"GET {RESOURCES_PATH} HTTP/1.1\r\nHost: localhost\r\n".encode())
        pending = b"X-Slow-%d: x\r\n" % serial
    else:
        body = json.dumps(user_body("Slow Loris", f"loris-{serial}@example.com")).encode()
        body = body.ljust(100_000)  # at one byte per interval this never finishes
        sock.sendall(
            f"POST {USERS_PATH} HTTP/1.1\r\nHost: localhost\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        )
        pending = body[:-1]  # never the last byte
    sock.setblocking(False)
    return Conn(kind, sock, pending)


def status_of(data: bytes) -> str:
    if data.startswith(b"HTTP/1.1 "):
        return data[9:12].decode("ascii", "replace")
    return "closed-without-answer" if not data else "garbage"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--interval", type=float, default=0.5)
    parser.add_argument("--seconds", type=float, default=120)
    args = parser.parse_args()

    context = ssl.create_default_context(cafile=args.ca)
    context.set_alpn_protocols(["http/1.1"])
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    deadline = time.monotonic() + args.seconds

    conns: list[Conn] = []
    serial = 0
    answers: dict[str, int] = {}
    reconnects = 0
    open_errors: list[str] = []
    bytes_sent = 0
    min_open = args.connections
    lifetimes: dict[str, list[float]] = {"header": [], "body": []}

    def add(kind: str, into: list[Conn]) -> None:
        nonlocal serial
        serial += 1
        try:
            into.append(open_conn(args.port, context, kind, serial))
        except OSError as exc:
            open_errors.append(repr(exc))

    # Open them spread over ~2 s, so that the server's timeouts do not cut them all at once.
    for index in range(args.connections):
        add("header" if index % 2 == 0 else "body", conns)
        time.sleep(2.0 / args.connections)
    print(f"READY {len(conns)}", flush=True)

    while not stop.is_set() and time.monotonic() < deadline:
        tick = time.monotonic()
        readable, _, _ = select.select([c.sock for c in conns], [], [], 0)
        answered: dict[int, bytes] = {}
        for sock in readable:
            # Readable is not always an answer: TLS 1.3 sends session tickets after the handshake.
            try:
                answered[id(sock)] = sock.recv(65536)  # b"": the server closed
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                pass
            except OSError:
                answered[id(sock)] = b""
        survivors: list[Conn] = []
        for conn in conns:
            dead = id(conn.sock) in answered
            if not dead:
                try:
                    conn.sock.send(conn.pending[:1])
                    bytes_sent += 1
                    conn.pending = conn.pending[1:] or (
                        b"X-Slow: x\r\n" if conn.kind == "header" else conn.pending
                    )
                except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
                    pass
                except OSError:
                    dead = True
            if dead:
                data = answered.get(id(conn.sock), b"")
                answers[f"{conn.kind}:{status_of(data)}"] = (
                    answers.get(f"{conn.kind}:{status_of(data)}", 0) + 1
                )
                lifetimes[conn.kind].append(time.monotonic() - conn.opened)
                conn.sock.close()
                reconnects += 1
                add(conn.kind, survivors)  # a replacement, at once
            else:
                survivors.append(conn)
        conns = survivors
        min_open = min(min_open, len(conns))
        stop.wait(max(0.0, args.interval - (time.monotonic() - tick)))

    summary = {
        "connections": args.connections,
        "open_at_end": len(conns),
        "min_open": min_open,
        "reconnects": reconnects,
        "answers": answers,
        "open_errors": open_errors[:5],
        "open_error_count": len(open_errors),
        "bytes_trickled": bytes_sent,
        "max_lifetime_s": {k: round(max(v), 1) for k, v in lifetimes.items() if v},
    }
    for conn in conns:
        conn.sock.close()
    print("SUMMARY " + json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
