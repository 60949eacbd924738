"""Draw the API's request rate and p99 latency, read from Prometheus's query API, as a PNG.

    .venv/bin/python scripts/metrics_graph.py --prometheus http://127.0.0.1:9090 \
        --minutes 10 --out docs/metrics-graph.png

Reads two range queries (``/api/v1/query_range``, one point every ``--step`` seconds) over the
last ``--minutes``: answers per second of every API instance together, and the 99th percentile of
their time to answer, both over a ``--window`` (the recorded rules use 5m; a short demonstration
reads better with 1m). Nothing here depends on Prometheus's web UI (Debian's build may lack its
graph page) nor on a plotting library: the picture is drawn into a pixel buffer and written as
a PNG with zlib, from the standard library only.

``--traffic SECONDS`` first sends that long a stepped load through nginx (``--base-url``,
``--ca``): GETs of one item and of the list, sign-ups, and some requests for missing items,
at 10, 30, 60 and then 20 requests per second, so the graph has something to show. It is what
made docs/metrics-graph.png (docs/operations.md says how).
"""

from __future__ import annotations

import argparse
import json
import math
import struct
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid
import zlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support import domain  # noqa: E402  (the sample domain's paths and bodies)

Point = tuple[float, float]  # (unix time, value)

# --- a 5x7 bitmap font: the characters the graph writes ------------------------------------------

_GLYPHS = {
    " ": ["00000"] * 7,
    "0": ["01110", "10001", "10011", "10101", "11001", "10001", "01110"],
    "1": ["00100", "01100", "00100", "00100", "00100", "00100", "01110"],
    "2": ["01110", "10001", "00001", "00010", "00100", "01000", "11111"],
    "3": ["11110", "00001", "00001", "01110", "00001", "00001", "11110"],
    "4": ["00010", "00110", "01010", "10010", "11111", "00010", "00010"],
    "5": ["11111", "10000", "11110", "00001", "00001", "10001", "01110"],
    "6": ["00110", "01000", "10000", "11110", "10001", "10001", "01110"],
    "7": ["11111", "00001", "00010", "00100", "01000", "01000", "01000"],
    "8": ["01110", "10001", "10001", "01110", "10001", "10001", "01110"],
    "9": ["01110", "10001", "10001", "01111", "00001", "00010", "01100"],
    ".": ["00000", "00000", "00000", "00000", "00000", "01100", "01100"],
    ",": ["00000", "00000", "00000", "00000", "01100", "00100", "01000"],
    ":": ["00000", "01100", "01100", "00000", "01100", "01100", "00000"],
    "-": ["00000", "00000", "00000", "11111", "00000", "00000", "00000"],
    "/": ["00001", "00010", "00010", "00100", "01000", "01000", "10000"],
    "(": ["00010", "00100", "01000", "01000", "01000", "00100", "00010"],
    ")": ["01000", "00100", "00010", "00010", "00010", "00100", "01000"],
    "%": ["11001", "11010", "00010", "00100", "01000", "01011", "10011"],
    "=": ["00000", "00000", "11111", "00000", "11111", "00000", "00000"],
    "a": ["00000", "00000", "01110", "00001", "01111", "10001", "01111"],
    "b": ["10000", "10000", "10110", "11001", "10001", "10001", "11110"],
    "c": ["00000", "00000", "01110", "10000", "10000", "10001", "01110"],
    "d": ["00001", "00001", "01101", "10011", "10001", "10001", "01111"],
    "e": ["00000", "00000", "01110", "10001", "11111", "10000", "01110"],
    "f": ["00110", "01001", "01000", "11100", "01000", "01000", "01000"],
    "g": ["00000", "01111", "10001", "10001", "01111", "00001", "01110"],
    "h": ["10000", "10000", "10110", "11001", "10001", "10001", "10001"],
    "i": ["00100", "00000", "01100", "00100", "00100", "00100", "01110"],
    "j": ["00010", "00000", "00110", "00010", "00010", "10010", "01100"],
    "k": ["10000", "10000", "10010", "10100", "11000", "10100", "10010"],
    "l": ["01100", "00100", "00100", "00100", "00100", "00100", "01110"],
    "m": ["00000", "00000", "11010", "10101", "10101", "10001", "10001"],
    "n": ["00000", "00000", "10110", "11001", "10001", "10001", "10001"],
    "o": ["00000", "00000", "01110", "10001", "10001", "10001", "01110"],
    "p": ["00000", "00000", "11110", "10001", "11110", "10000", "10000"],
    "q": ["00000", "00000", "01101", "10011", "01111", "00001", "00001"],
    "r": ["00000", "00000", "10110", "11001", "10000", "10000", "10000"],
    "s": ["00000", "00000", "01110", "10000", "01110", "00001", "11110"],
    "t": ["01000", "01000", "11100", "01000", "01000", "01001", "00110"],
    "u": ["00000", "00000", "10001", "10001", "10001", "10011", "01101"],
    "v": ["00000", "00000", "10001", "10001", "10001", "01010", "00100"],
    "w": ["00000", "00000", "10001", "10001", "10101", "10101", "01010"],
    "x": ["00000", "00000", "10001", "01010", "00100", "01010", "10001"],
    "y": ["00000", "00000", "10001", "10001", "01111", "00001", "01110"],
    "z": ["00000", "00000", "11111", "00010", "00100", "01000", "11111"],
    "A": ["01110", "10001", "10001", "11111", "10001", "10001", "10001"],
    "I": ["01110", "00100", "00100", "00100", "00100", "00100", "01110"],
    "P": ["11110", "10001", "10001", "11110", "10000", "10000", "10000"],
}

Color = tuple[int, int, int]
WHITE: Color = (255, 255, 255)
INK: Color = (40, 40, 40)
GRID: Color = (225, 225, 225)
AXIS: Color = (150, 150, 150)
BLUE: Color = (31, 119, 180)
ORANGE: Color = (230, 120, 20)


class Canvas:
    """An RGB pixel buffer with what a line graph needs, written out as a PNG."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.pixels = bytearray(WHITE * (width * height))

    def dot(self, x: int, y: int, color: Color) -> None:
        if 0 <= x < self.width and 0 <= y < self.height:
            i = 3 * (y * self.width + x)
            self.pixels[i : i + 3] = bytes(color)

    def rect(self, x0: int, y0: int, x1: int, y1: int, color: Color) -> None:
        for y in range(max(0, y0), min(self.height, y1 + 1)):
            for x in range(max(0, x0), min(self.width, x1 + 1)):
                self.dot(x, y, color)

    def line(
        self, x0: float, y0: float, x1: float, y1: float, color: Color, width: int = 1
    ) -> None:
        steps = max(1, math.ceil(max(abs(x1 - x0), abs(y1 - y0))))
        half = width // 2
        for step in range(steps + 1):
            x = round(x0 + (x1 - x0) * step / steps)
            y = round(y0 + (y1 - y0) * step / steps)
            self.rect(x - half, y - half, x - half + width - 1, y - half + width - 1, color)

    def text(self, x: int, y: int, text: str, color: Color = INK, scale: int = 2) -> int:
        """Write ``text`` with its top left at (x, y); the width it took."""
        for n, char in enumerate(text):
            glyph = _GLYPHS.get(char, _GLYPHS[" "])
            left = x + n * 6 * scale
            for row, bits in enumerate(glyph):
                for col, bit in enumerate(bits):
                    if bit == "1":
                        self.rect(
                            left + col * scale,
                            y + row * scale,
                            left + (col + 1) * scale - 1,
                            y + (row + 1) * scale - 1,
                            color,
                        )
        return len(text) * 6 * scale

    def png(self) -> bytes:
        def chunk(kind: bytes, data: bytes) -> bytes:
            body = kind + data
            return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

        stride = 3 * self.width
        raw = b"".join(
            b"\x00" + bytes(self.pixels[y * stride : (y + 1) * stride]) for y in range(self.height)
        )
        header = struct.pack(">IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0)
        return (
            b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(raw, 9))
            + chunk(b"IEND", b"")
        )


def nice_ticks(top: float, count: int = 5) -> list[float]:
    """Round values from 0 to at least ``top`` for the y axis."""
    raw = max(top, 1e-9) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    return [step * i for i in range(count + 2) if step * (i - 1) < top]


def label(value: float) -> str:
    return f"{value:g}" if value >= 1 or value == 0 else f"{value:.2g}"


def panel(
    canvas: Canvas,
    top: int,
    height: int,
    title: str,
    series: Sequence[Point],
    start: float,
    end: float,
    color: Color,
) -> None:
    left, right = 90, canvas.width - 30
    bottom = top + height
    canvas.text(left, top - 28, title)
    values = [v for _, v in series]
    ticks = nice_ticks(max(values, default=1.0) or 1.0)
    ymax = ticks[-1]

    def y_of(v: float) -> float:
        return bottom - (v / ymax) * height

    def x_of(t: float) -> float:
        return left + (t - start) / (end - start) * (right - left)

    for tick in ticks:
        y = round(y_of(tick))
        canvas.line(left, y, right, y, GRID)
        text = label(tick)
        canvas.text(left - 10 - len(text) * 12, y - 7, text)
    minutes = int((end - start) // 60)
    for minute in range(minutes + 1):
        x = round(x_of(start + 60 * minute))
        canvas.line(x, bottom, x, bottom + 5, AXIS)
        canvas.text(x - 6 * len(str(minute)), bottom + 10, str(minute))
    canvas.line(left, top, left, bottom, AXIS)
    canvas.line(left, bottom, right, bottom, AXIS)
    previous: Point | None = None
    for t, v in series:
        point = (x_of(t), y_of(v))
        if previous is not None:
            canvas.line(*previous, *point, color, width=3)
        previous = point


def render(
    rate: Sequence[Point], p99: Sequence[Point], start: float, end: float, window: str
) -> bytes:
    canvas = Canvas(960, 640)
    panel(canvas, 60, 200, f"API answers per second (rate over {window})", rate, start, end, BLUE)
    panel(canvas, 370, 200, f"API p99 latency, ms (over {window})", p99, start, end, ORANGE)
    canvas.text(canvas.width // 2 - 130, 612, "minutes since the start", AXIS)
    return canvas.png()


# --- Prometheus ---------------------------------------------------------------------------------


def query_range(prometheus: str, expr: str, start: float, end: float, step: float) -> list[Point]:
    """One series' points (NaN points left out); empty when the query yields none."""
    params = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step})
    with urllib.request.urlopen(f"{prometheus}/api/v1/query_range?{params}", timeout=30) as r:
        body = json.load(r)
    if body.get("status") != "success":
        raise SystemExit(f"Prometheus refused {expr!r}: {body}")
    result = body["data"]["result"]
    if len(result) > 1:
        raise SystemExit(f"{expr!r} yields {len(result)} series, expected one")
    points = [(float(t), float(v)) for t, v in result[0]["values"]] if result else []
    return [(t, v) for t, v in points if not math.isnan(v)]


# --- traffic ------------------------------------------------------------------------------------


def traffic(base_url: str, ca: str, seconds: float) -> None:
    """A stepped open-loop load through nginx (see the module docstring)."""
    import requests  # the virtualenv's; only this part needs it

    def new_session() -> requests.Session:
        session = requests.Session()
        session.verify = ca
        session.trust_env = False  # or REQUESTS_CA_BUNDLE would replace `verify`
        return session

    session = new_session()
    owner = session.post(
        base_url + domain.USERS_PATH,
        json=domain.user_body("Graph", f"graph-{uuid.uuid4().hex}@example.com"),
    ).json()
    auth = {"Authorization": f"Bearer {owner['api_key']}"}
    item = session.post(
        base_url + domain.RESOURCES_PATH,
        json=domain.resource_body("graph", public=True),
        headers=auth,
    ).json()
    stop_at = time.monotonic() + seconds
    rates = (10, 30, 60, 20)
    local = threading.local()

    def one(n: int) -> None:
        if not hasattr(local, "session"):  # one keep-alive session per thread
            local.session = new_session()
        s = local.session
        kind = n % 10
        if kind < 6:
            s.get(base_url + domain.resource_url(item["id"]), timeout=10)
        elif kind < 8:
            s.get(base_url + domain.RESOURCES_PATH, params={"limit": 20}, timeout=10)
        elif kind == 8:
            body = domain.user_body("Load", f"load-{uuid.uuid4().hex}@example.com")
            s.post(base_url + domain.USERS_PATH, json=body, timeout=10)
        else:
            s.get(base_url + domain.resource_url(900_000_000 + n), timeout=10)

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=16) as pool:
        n = 0
        while (now := time.monotonic()) < stop_at:
            phase = min(int((now - started) / (seconds / len(rates))), len(rates) - 1)
            n += 1
            pool.submit(one, n)
            time.sleep(1 / rates[phase])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prometheus", default="http://127.0.0.1:9090")
    parser.add_argument("--minutes", type=float, default=10, help="how far back (default 10)")
    parser.add_argument("--step", type=float, default=5, help="seconds between points")
    parser.add_argument("--window", default="1m", help="rate() window (the rules use 5m)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "metrics-graph.png")
    parser.add_argument("--traffic", type=float, default=0, help="seconds of load to send first")
    parser.add_argument("--base-url", default="https://localhost:8443")
    parser.add_argument("--ca", default=str(REPO / "certs" / "ca.pem"))
    args = parser.parse_args()

    if args.traffic:
        traffic(args.base_url, args.ca, args.traffic)
        time.sleep(5)  # a scrape after the last request
    end = time.time()
    start = end - 60 * args.minutes
    w = args.window
    rate = query_range(
        args.prometheus,
        f'sum(rate(api_http_requests_total{{job="api"}}[{w}]))',
        start,
        end,
        args.step,
    )
    p99 = query_range(
        args.prometheus,
        "1000 * histogram_quantile(0.99, sum by (le) "
        f'(rate(api_http_request_duration_seconds_bucket{{job="api"}}[{w}])))',
        start,
        end,
        args.step,
    )
    if not rate:
        raise SystemExit("no api_http_requests_total in that time: is Prometheus scraping the API?")
    args.out.write_bytes(render(rate, p99, start, end, w))
    print(f"wrote {args.out} ({len(rate)} and {len(p99)} points)")


if __name__ == "__main__":
    main()
