"""Open-loop, constant-rate HTTP/1.1 load generator (the closest honest stand-in for wrk2 here).

wrk is closed-loop: each connection sends its next request only after the previous answer, so a
slow server is offered less load and its stalls hide from the percentiles ("coordinated
omission"). wrk2 fixes that but is not packaged in Debian. This script does what wrk2 does:

- request i is *scheduled* at ``t0 + i / rate``, whatever happened before;
- a pool of keep-alive connections takes scheduled requests in order; when all connections are
  busy the request waits in a FIFO, and that wait counts;
- latency is measured from the scheduled time to the last byte of the answer, so a stall of the
  server shows up in every request scheduled during it.

It also reports the service time (send to last byte) and how late the scheduler itself released
requests, so a generator that cannot keep up is visible rather than blamed on the server.

It runs on the same CPUs as the stack it measures, so its own CPU per request matters: one
thread, non-blocking sockets, level-triggered ``select.epoll``, and TLS done by C OpenSSL through
``ssl.SSLSocket`` (the asyncio version, with its pure-Python TLS layer and a task and a timer per
request, cost about twice the CPU). Each loop turn waits on epoll until the next scheduled time
or the nearest request deadline, releases the requests now due into the FIFO (how late: the
scheduler lag), hands them to idle connections and expires requests that have waited
``--timeout`` for their answer. Most of what is left is the process waking up ~1.5 times per
request, which a virtual machine charges dearly; a bare blocking send/recv loop costs as much.
Connections are opened (TLS handshake included) before the clock starts; one that the server
closes or that breaks is reopened, without blocking the loop, by the next request it takes, and
that reconnect counts in that request's latency. Responses are parsed minimally: status line,
Content-Length, chunked, Connection: close. Standard library only; prints one JSON object on
stdout. Targets 127.0.0.1 (or any URL given; bench/run.py only gives 127.0.0.1).
"""

import argparse
import collections
import contextlib
import errno
import json
import os
import select
import socket
import ssl
import time
import urllib.parse
from typing import Any

RECV_SIZE = 1 << 16  # above a TLS record (16 KB): one read takes all OpenSSL has decrypted
IN, OUT = select.EPOLLIN, select.EPOLLOUT
CLOSED, CONNECTING, HANDSHAKE, OPEN = range(4)
clock = time.perf_counter


def percentile(sorted_values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile of an ascending list (None when empty)."""
    if not sorted_values:
        return None
    rank = max(1, round(pct / 100 * len(sorted_values) + 0.5 - 1e-9))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def header(head: bytearray, name: bytes) -> bytes:
    """A header's value in a lower-cased head that ends with CRLF (b"" when absent)."""
    start = head.find(b"\r\n" + name + b":")
    if start < 0:
        return b""
    start += len(name) + 3
    return bytes(head[start : head.index(b"\r\n", start)].strip())


def parse_response(buf: bytearray) -> tuple[int, bool, int] | None:
    """The HTTP/1.1 response at the start of buf: (status, server closes, its length in bytes),
    or None while incomplete. Raises ValueError or IndexError on garbage."""
    head_end = buf.find(b"\r\n\r\n")
    if head_end < 0:
        return None
    # This runs once per request: a few finds in the lower-cased head ("HTTP/1.1 200 ...\r\n")
    # cost much less than splitting it into header lines.
    head = buf[: head_end + 2].lower()
    status = int(head[9:12])
    end = head_end + 4
    if b"\r\ntransfer-encoding:" in head and b"chunked" in header(head, b"transfer-encoding"):
        size = -1
        while size:  # size line, data, CRLF; the 0-size chunk ends it (no trailers, as before)
            eol = buf.find(b"\r\n", end)
            if eol < 0:
                return None
            size = int(bytes(buf[end:eol]).split(b";")[0], 16)
            end = eol + 2 + size + 2
            if end > len(buf):
                return None
    else:
        end += int(header(head, b"content-length") or 0)
        if end > len(buf):
            return None
    return status, b"\r\nconnection:" in head and header(head, b"connection") == b"close", end


class Conn:
    """A keep-alive connection slot: one request at a time, like one worker before."""

    __slots__ = ("buf", "busy", "fd", "mask", "out", "scheduled", "sent", "sock", "state", "token")

    def __init__(self) -> None:
        self.sock: Any = None  # socket.socket, then ssl.SSLSocket once the TCP connect is done
        self.fd = -1
        self.state = self.mask = self.token = 0  # CLOSED, epoll events, the request it carries
        self.buf, self.out = bytearray(), b""  # received and not parsed yet; not sent yet
        self.busy = False
        self.scheduled = self.sent = 0.0


class OpenLoop:
    def __init__(self, args: argparse.Namespace, url: urllib.parse.SplitResult) -> None:
        self.args = args
        port = url.port or (443 if url.scheme == "https" else 80)
        addr = socket.getaddrinfo(url.hostname, port, type=socket.SOCK_STREAM)[0]
        self.family, self.addr = addr[0], addr[4]
        self.ctx: ssl.SSLContext | None = None
        if url.scheme == "https":
            self.ctx = ssl.create_default_context(cafile=args.cafile)
            if not args.cafile:
                self.ctx.check_hostname = False
                self.ctx.verify_mode = ssl.CERT_NONE
            elif not args.server_name:  # no SNI: the chain is checked, not the name (as before)
                self.ctx.check_hostname = False
        path = (url.path or "/") + (f"?{url.query}" if url.query else "")
        self.request = (
            f"GET {path} HTTP/1.1\r\nHost: {url.netloc}\r\nUser-Agent: bench-openloop\r\n"
            "Accept: application/json\r\n\r\n"
        ).encode()
        self.epoll = select.epoll()
        self.by_fd: dict[int, Conn] = {}
        self.conns = [Conn() for _ in range(args.connections)]
        self.idle: collections.deque[Conn] = collections.deque()  # FIFO, like waiting workers
        # (deadline, conn, token) in send order: deadlines only grow, so the head is the nearest.
        self.deadlines: collections.deque[tuple[float, Conn, int]] = collections.deque()
        self.rbuf = bytearray(RECV_SIZE)
        self.tokens = self.socket_errors = 0
        self.latency: list[float] = []  # scheduled -> done, seconds
        self.service: list[float] = []  # sent -> done, seconds
        self.by_second: collections.defaultdict[int, list[float]] = collections.defaultdict(list)
        self.t0 = self.started_at = 0.0  # the schedule's start: monotonic, wall clock
        self.status: dict[int, int] = {}

    def set_mask(self, c: Conn, mask: int) -> None:
        if c.mask != mask:
            self.epoll.modify(c.fd, mask)
            c.mask = mask

    def connect(self, c: Conn) -> None:
        """Start a non-blocking TCP connect; on_event goes on when the socket is writable."""
        sock = socket.socket(self.family, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as asyncio did
        err = sock.connect_ex(self.addr)
        if err not in (0, errno.EINPROGRESS):
            sock.close()
            raise OSError(err, os.strerror(err))
        c.sock, c.fd, c.state, c.mask = sock, sock.fileno(), CONNECTING, OUT
        self.epoll.register(c.fd, OUT)
        self.by_fd[c.fd] = c

    def close(self, c: Conn) -> None:
        if c.sock is not None:
            with contextlib.suppress(OSError):  # already closed if wrap_socket failed
                self.epoll.unregister(c.fd)
            del self.by_fd[c.fd]
            c.sock.close()
        c.sock, c.state, c.mask, c.out = None, CLOSED, 0, b""
        c.buf.clear()

    def drop(self, c: Conn) -> None:
        """Closed, broken or timed out: the request it carries (if any) is a socket error."""
        if c.busy:
            self.socket_errors += 1
            c.busy = False
            self.idle.append(c)
        self.close(c)

    def assign(self, c: Conn, scheduled: float) -> None:
        self.tokens += 1
        c.busy, c.scheduled, c.token = True, scheduled, self.tokens
        now = clock()  # the deadline runs from the send, or from the start of a reconnect
        self.deadlines.append((now + self.args.timeout, c, c.token))
        if c.state == OPEN:
            self.send(c, now)
            return
        try:
            self.connect(c)
        except OSError:
            self.drop(c)

    def send(self, c: Conn, now: float) -> None:
        c.sent, c.out = now, self.request
        self.flush(c)

    def flush(self, c: Conn) -> None:
        """Send what is left of the request (SSL_write takes all of it or nothing)."""
        try:
            c.out = c.out[c.sock.send(c.out) :]
        except ssl.SSLWantReadError:  # TLS must read first: on_event retries on EPOLLIN
            return self.set_mask(c, IN)
        except (ssl.SSLWantWriteError, BlockingIOError):
            pass  # socket buffer full (not with one small request): same bytes on EPOLLOUT
        except OSError:
            return self.drop(c)
        self.set_mask(c, IN | OUT if c.out else IN)

    def on_event(self, c: Conn) -> None:
        if c.state == OPEN:
            if c.out:
                self.flush(c)
            elif c.mask & OUT:  # a read that had to write first: retried below
                self.set_mask(c, IN)
            if c.sock is not None:
                self.read(c)
            return
        if c.state == CONNECTING:
            if c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                self.drop(c)
                return
            if self.ctx is not None:  # same fd: the epoll registration carries over
                try:
                    c.sock = self.ctx.wrap_socket(
                        c.sock,
                        server_hostname=self.args.server_name or None,
                        do_handshake_on_connect=False,
                    )
                except (OSError, ValueError):  # peer already gone, or a bad --server-name
                    return self.drop(c)
                c.state = HANDSHAKE
        if c.state == HANDSHAKE:
            try:
                c.sock.do_handshake()
            except ssl.SSLWantReadError:
                return self.set_mask(c, IN)
            except ssl.SSLWantWriteError:
                return self.set_mask(c, OUT)
            except OSError:  # certificate errors included
                return self.drop(c)
        c.state = OPEN
        if c.busy:
            self.send(c, clock())
        else:
            self.set_mask(c, IN)

    def read(self, c: Conn) -> None:
        # One read per event: level-triggered epoll reports what is left in the kernel buffer.
        try:
            n = c.sock.recv_into(self.rbuf)
        except (ssl.SSLWantReadError, BlockingIOError):
            return  # e.g. TLS 1.3 session tickets: records without application data
        except ssl.SSLWantWriteError:  # TLS must write first (a key update): retry on EPOLLOUT
            return self.set_mask(c, IN | OUT)
        except OSError:
            return self.drop(c)
        if n == 0:  # EOF; on an idle connection: reconnect at its next request
            return self.drop(c)
        c.buf += memoryview(self.rbuf)[:n]
        if not c.busy:
            return  # stray bytes wait for the next request, as in a stream reader
        try:
            parsed = parse_response(c.buf)
        except (ValueError, IndexError):
            return self.drop(c)
        if parsed is None:
            return
        done = clock()
        status, closes, end = parsed
        del c.buf[:end]
        self.latency.append(done - c.scheduled)
        self.by_second[int(c.scheduled - self.t0)].append(done - c.scheduled)
        self.service.append(done - c.sent)
        self.status[status] = self.status.get(status, 0) + 1
        c.busy = False
        if closes:
            self.close(c)
        self.idle.append(c)

    def poll(self, wait: float) -> None:
        for fd, _ in self.epoll.poll(max(wait, 0.0)):  # ms resolution, rounded up
            c = self.by_fd.get(fd)
            if c is None:  # closed earlier in this batch
                continue
            if c.state == OPEN and not c.out and c.mask == IN:
                self.read(c)  # the usual case, in short
            else:
                self.on_event(c)

    def run(self) -> dict[str, Any]:
        # Open every connection before the clock starts; one that fails stays closed and is
        # retried by the first request it takes.
        for c in self.conns:
            with contextlib.suppress(OSError):
                self.connect(c)
        limit = clock() + self.args.timeout
        while any(c.state in (CONNECTING, HANDSHAKE) for c in self.conns) and clock() < limit:
            self.poll(limit - clock())
        for c in self.conns:
            if c.state != OPEN:
                self.close(c)
        self.idle.extend(self.conns)

        total = int(self.args.rate * self.args.duration)
        interval = 1.0 / self.args.rate
        queue: collections.deque[float] = collections.deque()  # due, not on a connection yet
        deadlines, idle = self.deadlines, self.idle
        max_lag, i, stop = 0.0, 0, float("inf")
        t0 = self.t0 = clock() + 0.05
        self.started_at = time.time() + (t0 - clock())  # wall clock, to line up with logs
        while True:
            now = clock()
            while i < total and t0 + i * interval <= now:
                max_lag = max(max_lag, now - (t0 + i * interval))
                queue.append(t0 + i * interval)
                i += 1
                if i == total:  # as before: then at most duration + timeout to finish
                    stop = now + self.args.duration + self.args.timeout
            while deadlines:  # drop the entries of answered requests; expire overdue ones
                deadline, c, token = deadlines[0]
                if c.busy and c.token == token:
                    if deadline > now:
                        break
                    self.drop(c)
                deadlines.popleft()
            while queue and idle:
                self.assign(idle.popleft(), queue.popleft())
            if (i == total and not queue and len(idle) == len(self.conns)) or now >= stop:
                break
            wait = (t0 + i * interval if i < total else stop) - now
            self.poll(min(wait, deadlines[0][0] - now) if deadlines else wait)
        elapsed = clock() - t0
        for c in self.conns:
            self.close(c)
        return self.report(total, elapsed, max_lag)

    def report(self, total: int, elapsed: float, max_lag: float) -> dict[str, Any]:
        args, completed = self.args, len(self.latency)
        lost = total - completed - self.socket_errors  # still queued or in flight at the stop
        lat, svc = sorted(self.latency), sorted(self.service)

        def ms(value: float | None) -> float | None:
            return None if value is None else round(value * 1000, 3)

        non_2xx = sum(n for code, n in self.status.items() if not 200 <= code < 300)
        return {
            "tool": "bench/openloop.py (open loop, latency from scheduled time)",
            "url": args.url,
            "rate_offered": args.rate,
            "duration_s": args.duration,
            "connections": args.connections,
            "scheduled": total,
            "completed": completed,
            "elapsed_s": round(elapsed, 3),
            "rps": round(completed / elapsed, 1) if elapsed > 0 else None,
            "status": {str(k): v for k, v in sorted(self.status.items())},
            "errors_non_2xx": non_2xx,
            "errors_socket": self.socket_errors + max(lost, 0),
            "latency_ms": {
                "p50": ms(percentile(lat, 50)),
                "p90": ms(percentile(lat, 90)),
                "p99": ms(percentile(lat, 99)),
                "p99_9": ms(percentile(lat, 99.9)),
                "max": ms(lat[-1] if lat else None),
            },
            "service_time_ms": {
                "p50": ms(percentile(svc, 50)),
                "p99": ms(percentile(svc, 99)),
                "max": ms(svc[-1] if svc else None),
            },
            "scheduler_max_lag_ms": ms(max_lag),
            "started_at": round(self.started_at, 3),
            # Is the tail one stall (a worker restart, another tenant) or queueing throughout?
            "p99_by_second_ms": [
                ms(percentile(sorted(self.by_second[s]), 99)) for s in sorted(self.by_second)
            ],
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--rate", type=float, required=True, help="requests per second")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of schedule")
    parser.add_argument("--connections", type=int, default=32, help="keep-alive connections")
    parser.add_argument("--timeout", type=float, default=5.0, help="per-request timeout, s")
    parser.add_argument("--cafile", help="CA bundle to verify the server (default: no check)")
    parser.add_argument("--server-name", default="localhost", help="TLS server name (SNI)")
    args = parser.parse_args()
    if args.rate <= 0 or args.duration <= 0 or args.connections < 1:
        parser.error("rate, duration and connections must be positive")
    url = urllib.parse.urlsplit(args.url)
    if url.scheme not in {"http", "https"} or not url.hostname:
        raise SystemExit(f"unsupported URL: {args.url}")
    print(json.dumps(OpenLoop(args, url).run()))


if __name__ == "__main__":
    main()
