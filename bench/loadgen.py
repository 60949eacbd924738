"""Load generators: wrk (closed loop), h2load (HTTP/2) and bench/openloop.py (fixed rate).

Each runs for a bounded time against 127.0.0.1 and returns the same shape of dict: requests, rps,
latency in ms, errors_non_2xx, errors_socket (and the tool's raw figures where it gives them).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from common import BENCH_DIR, CERTS, BenchError, domain, log

WRK_SCRIPT = BENCH_DIR / "wrk" / "bench.lua"
OPENLOOP = BENCH_DIR / "openloop.py"
# What bench.lua's post_users mode sends: a sign-up, the sample domain's path and body, "{unique}"
# in the body replaced by a token of its own for each request. The floor app (F4) serves the same
# sign-up path.
SIGN_UP = {
    "BENCH_WRK_PATH": domain.USERS_PATH,
    "BENCH_WRK_BODY": json.dumps(
        domain.user_body("Bench User", "bench-{unique}@example.com"), separators=(",", ":")
    ),
}


def _is_debian_root() -> bool:
    return (
        Path("/etc/debian_version").exists() and os.geteuid() == 0 and bool(shutil.which("apt-get"))
    )


def ensure_tool(binary: str, package: str, *, required: bool) -> bool:
    """Make ``binary`` available: install Debian ``package`` if missing and we may; else say so."""
    if shutil.which(binary):
        return True
    if _is_debian_root():
        log(f"{binary} missing: apt-get install {package}")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", package]
        if subprocess.run(cmd, env=env, capture_output=True).returncode != 0:
            # The package lists may be missing or stale on a fresh machine.
            subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True)
            subprocess.run(cmd, env=env, capture_output=True)
        if shutil.which(binary):
            return True
    message = (
        f"{binary} is not installed. Install the `{package}` package "
        f"(Debian/Ubuntu: sudo apt-get install {package}; macOS: brew install {binary})."
    )
    if required:
        raise BenchError(message)
    log(f"{message} Skipping what needs it.")
    return False


def run_wrk(
    url: str, *, threads: int, connections: int, duration: float, mode: str, run_id: str
) -> dict[str, Any]:
    env = {**os.environ, **SIGN_UP, "BENCH_WRK_MODE": mode, "BENCH_RUN_ID": run_id}
    cmd = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{round(duration)}s",
        "--timeout",
        "5s",
        "-s",
        str(WRK_SCRIPT),
        url,
    ]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=duration + 60)
    match = re.search(r"^BENCH_JSON (\{.*\})$", out.stdout, re.MULTILINE)
    if out.returncode != 0 or not match:
        raise BenchError(f"wrk failed ({out.returncode}): {out.stderr.strip() or out.stdout}")
    raw = json.loads(match.group(1))
    seconds = raw["duration_us"] / 1e6
    socket_errors = sum(raw[k] for k in ("errors_connect", "errors_read", "errors_write"))
    socket_errors += raw["errors_timeout"]
    return {
        "tool": f"wrk -t{threads} -c{connections} (closed loop)",
        "requests": raw["requests"],
        "rps": round(raw["requests"] / seconds, 1),
        "p50_ms": round(raw["lat_p50_us"] / 1000, 2),
        "p90_ms": round(raw["lat_p90_us"] / 1000, 2),
        "p99_ms": round(raw["lat_p99_us"] / 1000, 2),
        "max_ms": round(raw["lat_max_us"] / 1000, 2),
        # wrk counts answers with status >= 400 (no 1xx/3xx is expected from these endpoints).
        "errors_non_2xx": raw["errors_status"],
        "errors_socket": socket_errors,
        "raw": raw,
    }


def run_h2load(url: str, *, connections: int, streams: int, duration: float) -> dict[str, Any]:
    cmd = [
        "h2load",
        "-t1",
        f"-c{connections}",
        f"-m{streams}",
        f"-D{round(duration)}",
        url,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    text = out.stdout
    rps = re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", text)
    reqs = re.search(
        r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
        r"(\d+) errored, (\d+) timeout",
        text,
    )
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
    timing = re.search(
        r"time for request:\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)", text
    )
    if out.returncode != 0 or not (rps and reqs and codes):
        raise BenchError(f"h2load failed ({out.returncode}): {out.stderr.strip() or text}")

    def to_ms(value: str, unit: str) -> float:
        return round(float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit], 2)

    done = int(reqs.group(3))
    return {
        "tool": f"h2load -t1 -c{connections} -m{streams} (HTTP/2, closed loop)",
        "requests": done,
        "rps": float(rps.group(1)),
        # h2load prints no percentiles: mean and max of the request time instead.
        "p50_ms": None,
        "p99_ms": None,
        "mean_ms": to_ms(timing.group(5), timing.group(6)) if timing else None,
        "max_ms": to_ms(timing.group(3), timing.group(4)) if timing else None,
        # Count the other status classes: with -D, answers that land as the clock runs out are in
        # the 2xx count but not in "done", so done - 2xx can go negative.
        "errors_non_2xx": sum(int(codes.group(i)) for i in (2, 3, 4)),
        "errors_socket": int(reqs.group(6)) + int(reqs.group(7)),
    }


def run_openloop(url: str, *, rate: float, duration: float, connections: int) -> dict[str, Any]:
    cmd = [
        sys.executable,
        str(OPENLOOP),
        url,
        "--rate",
        f"{rate:.1f}",
        "--duration",
        str(duration),
        "--connections",
        str(connections),
        "--cafile",
        str(CERTS / "ca.pem"),
    ]
    # An overloaded run drains for up to duration + its request timeout after the last
    # scheduled request, so it may take about twice the duration.
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=2 * duration + 60)
    if out.returncode != 0:
        raise BenchError(f"openloop failed ({out.returncode}): {out.stderr.strip()}")
    raw = json.loads(out.stdout)
    lat = raw["latency_ms"]
    return {
        "tool": f"bench/openloop.py {rate:.0f} req/s, {connections} conns (open loop)",
        "requests": raw["completed"],
        "rps": raw["rps"],
        "p50_ms": lat["p50"],
        "p90_ms": lat["p90"],
        "p99_ms": lat["p99"],
        "max_ms": lat["max"],
        "errors_non_2xx": raw["errors_non_2xx"],
        "errors_socket": raw["errors_socket"],
        "raw": raw,
    }
