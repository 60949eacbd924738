"""Open-loop, constant-rate HTTP/1.1 load generator (the closest honest stand-in for wrk2 here).

wrk is closed-loop: each connection sends its next request only after the previous answer, so a
slow server is offered less load and its stalls hide from the percentiles ("coordinated
omission"). wrk2 fixes that but is not packaged in Debian. This script does what wrk2 does:

- request i is *scheduled* at ``t0 + i / rate``, whatever happened before;
- a pool of keep-alive connections takes scheduled requests from a queue; when all connections
  are busy the request waits in the queue, and that wait counts;
- latency is measured from the scheduled time to the last byte of the answer, so a stall of the
  server shows up in every request scheduled during it.

It also reports the service time (send to last byte) and how late the scheduler itself woke up,
so a generator that cannot keep up is visible rather than blamed on the server. Standard library
only; prints one JSON object on stdout. Targets 127.0.0.1 (or any URL given; bench/run.py only
gives 127.0.0.1).
"""

import argparse
import asyncio
import json
import ssl
import time
import urllib.parse

READ_LIMIT = 1 << 20


def percentile(sorted_values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile of an ascending list (None when empty)."""
    if not sorted_values:
        return None
    rank = max(1, round(pct / 100 * len(sorted_values) + 0.5 - 1e-9))
    return sorted_values[min(rank, len(sorted_values)) - 1]


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one HTTP/1.1 response; return (status, server_closes)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = 0
    chunked = False
    closes = False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        value = value.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value:
            chunked = True
        elif name == b"connection" and value == b"close":
            closes = True
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length:
        await reader.readexactly(length)
    return status, closes


class Stats:
    def __init__(self) -> None:
        self.latency: list[float] = []  # scheduled -> done, seconds
        self.service: list[float] = []  # sent -> done, seconds
        self.status: dict[int, int] = {}
        self.socket_errors = 0
        self.completed = 0


async def main_async(args: argparse.Namespace) -> dict:
    url = urllib.parse.urlsplit(args.url)
    if url.scheme not in {"http", "https"} or not url.hostname:
        raise SystemExit(f"unsupported URL: {args.url}")
    port = url.port or (443 if url.scheme == "https" else 80)
    path = (url.path or "/") + (f"?{url.query}" if url.query else "")
    ctx: ssl.SSLContext | None = None
    if url.scheme == "https":
        if args.cafile:
            ctx = ssl.create_default_context(cafile=args.cafile)
        else:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
    host_header = url.netloc
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: bench-openloop\r\n"
        "Accept: application/json\r\n\r\n"
    ).encode()

    async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection(
            url.hostname,
            port,
            ssl=ctx,
            server_hostname=args.server_name if ctx else None,
            limit=READ_LIMIT,
        )

    stats = Stats()
    queue: asyncio.Queue[float | None] = asyncio.Queue()
    # Open every connection (TLS handshake included) before the clock starts.
    conns = await asyncio.gather(*(connect() for _ in range(args.connections)))

    async def worker(conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None) -> None:
        while True:
            scheduled = await queue.get()
            if scheduled is None:
                break
            try:
                if conn is None:
                    conn = await connect()
                reader, writer = conn
                sent = time.perf_counter()
                writer.write(request)
                status, closes = await asyncio.wait_for(read_response(reader), args.timeout)
                done = time.perf_counter()
                stats.latency.append(done - scheduled)
                stats.service.append(done - sent)
                stats.status[status] = stats.status.get(status, 0) + 1
                stats.completed += 1
                if closes:
                    writer.close()
                    conn = None
            except (OSError, EOFError, ValueError, TimeoutError, asyncio.IncompleteReadError):
                stats.socket_errors += 1
                if conn is not None:
                    conn[1].close()
                conn = None
        if conn is not None:
            conn[1].close()

    workers = [asyncio.create_task(worker(conn)) for conn in conns]
    total = int(args.rate * args.duration)
    interval = 1.0 / args.rate
    max_lag = 0.0
    t0 = time.perf_counter() + 0.05
    for i in range(total):
        scheduled = t0 + i * interval
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            max_lag = max(max_lag, -delay)
        queue.put_nowait(scheduled)
    for _ in workers:
        queue.put_nowait(None)
    try:
        await asyncio.wait_for(asyncio.gather(*workers), args.duration + args.timeout)
    except TimeoutError:
        for task in workers:
            task.cancel()
    elapsed = time.perf_counter() - t0
    lost = total - stats.completed - stats.socket_errors

    lat = sorted(stats.latency)
    svc = sorted(stats.service)

    def ms(value: float | None) -> float | None:
        return None if value is None else round(value * 1000, 3)

    non_2xx = sum(n for code, n in stats.status.items() if not 200 <= code < 300)
    return {
        "tool": "bench/openloop.py (open loop, latency from scheduled time)",
        "url": args.url,
        "rate_offered": args.rate,
        "duration_s": args.duration,
        "connections": args.connections,
        "scheduled": total,
        "completed": stats.completed,
        "elapsed_s": round(elapsed, 3),
        "rps": round(stats.completed / elapsed, 1) if elapsed > 0 else None,
        "status": {str(k): v for k, v in sorted(stats.status.items())},
        "errors_non_2xx": non_2xx,
        "errors_socket": stats.socket_errors + max(lost, 0),
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
    print(json.dumps(asyncio.run(main_async(args))))


if __name__ == "__main__":
    main()
