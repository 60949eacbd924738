"""Clients that load or tie up the stack: slow uploads trickling a body, keep-alive load threads."""

from __future__ import annotations

import contextlib
import math
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import requests

from .http import new_session, response_complete
from .waiting import wait_until


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


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (pct in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


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
