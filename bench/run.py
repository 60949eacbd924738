"""`make bench`: bring up the stack with rate limits off, load it, print one table (issue 6).

Run with the repository's virtualenv (standard library only):

    .venv/bin/python bench/run.py [--duration 10] [--set GUNICORN_WORKERS=3 ...] [--label NAME]

What it does, in order (everything is torn down at the end, also on failure or Ctrl-C):

1. Installs wrk (and h2load, optional) from Debian's packages when missing and running as root
   on Debian; otherwise stops and says what to install.
2. Builds and starts the stack as its own compose project (``flask-stack-bench``) with
   ``bench/compose.bench.yaml``: rate limits off, gunicorn published on 127.0.0.1:18000, nginx on
   127.0.0.1:18443/18080, images tagged ``:bench``. A developer's ``make up`` is not touched.
3. Seeds a user and 25 public items.
4. Runs the measurements of issue 6 (each after a short warm-up), reading the containers' cgroup
   CPU counters (and the host processes that carry the traffic) before and after each one.
5. The floor baseline (F2-F4, ``floor.py``): recreates only the api service with
   ``bench/compose.floor.yaml`` (a minimal Flask app on the same image, gunicorn.conf.py and
   nginx), waits until nginx routes to it, and runs 2, 3 and 4 again against it.
6. Measures image sizes, time from ``up`` to healthy, and a code-only rebuild of the API image
   (in a copy of services/api under /tmp: no tracked file is touched).
7. Writes ``bench/results/<UTC timestamp>.json`` and prints a markdown table with the ratios and
   the issue's targets, as facts (pass/fail is reported, never asserted).

Only 127.0.0.1 receives traffic. Every run is bounded (``--duration`` seconds per measurement).

This file parses the arguments and runs the steps; the parts live next to it: ``stack.py``
(compose, seeding), ``cpu.py`` (CPU accounting), ``loadgen.py`` (wrk, h2load, openloop.py),
``measurements.py`` (the measurements), ``floor.py`` (the floor baseline), ``images.py`` (sizes,
rebuild), ``report.py`` (table).
Run as a script, this directory is on ``sys.path``, so they are imported by their plain names.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

from common import CERTS, PROJECT, RESULTS_DIR, ROOT, BenchError, log
from cpu import CpuMeter
from floor import FLOOR_KEYS, run_floor
from images import image_summary, measure_rebuild
from loadgen import ensure_tool
from measurements import run_measurements
from report import markdown, ratios, targets
from stack import compose_env, container_id, count_in_logs, down, health_timeline, seed, start

# The API's measurements, in the order they run (measurements.py); the floor's are FLOOR_KEYS.
API_KEYS = ("1", "2", "3", "3h2", "4", "5", "6")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Benchmark the stack (issue 6).")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up before each")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (the host has 2 CPUs)")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections")
    parser.add_argument(
        "--rate-fraction", type=float, default=0.7, help="measurement 6: share of the peak of 3"
    )
    parser.add_argument("--rate", type=float, help="measurement 6: fixed rate instead")
    parser.add_argument(
        "--openloop-connections", type=int, default=32, help="measurement 6: connections"
    )
    parser.add_argument(
        "--only",
        default=",".join([*API_KEYS, "F"]),
        help="measurements to run, comma-separated: "
        + ",".join(API_KEYS)
        + " (the API), F2,F3,F4 (the floor app; F = all three). The floor runs after the API's"
        " measurements, as it replaces the API's container. Default: all",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="environment for compose, e.g. GUNICORN_WORKERS=3 (repeatable)",
    )
    parser.add_argument("--label", default="default", help="name of this variant in the results")
    parser.add_argument("--skip-rebuild", action="store_true", help="skip the rebuild timing")
    parser.add_argument("--keep", action="store_true", help="leave the stack up afterwards")
    parser.add_argument(
        "--https-port", type=int, default=int(os.environ.get("BENCH_HTTPS_PORT", 18443))
    )
    parser.add_argument(
        "--http-port", type=int, default=int(os.environ.get("BENCH_HTTP_PORT", 18080))
    )
    parser.add_argument(
        "--api-port", type=int, default=int(os.environ.get("BENCH_API_PORT", 18000))
    )
    return parser.parse_args()


def git_rev() -> str:
    out = subprocess.run(
        ["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True
    )
    return out.stdout.strip() or "unknown"


@contextlib.contextmanager
def terminate_cleanly() -> Iterator[None]:
    """Turn SIGTERM/SIGHUP into SystemExit so `finally` blocks (the teardown) run."""

    def handler(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def parse_only(value: str) -> set[str]:
    """``--only`` as a set of measurement keys; ``F`` stands for F2, F3 and F4."""
    wanted: set[str] = set()
    for key in (k.strip() for k in value.split(",")):
        if key == "F":
            wanted.update(FLOOR_KEYS)
        elif key in API_KEYS or key in FLOOR_KEYS:
            wanted.add(key)
        elif key:
            known = ", ".join([*API_KEYS, *FLOOR_KEYS, "F"])
            raise BenchError(f"--only: unknown measurement {key!r} (known: {known})")
    return wanted


def parse_overrides(items: list[str]) -> dict[str, str]:
    """``--set KEY=VALUE`` values as a dict (keys are environment variable names)."""
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not re.fullmatch(r"[A-Z_][A-Z0-9_]*", key):
            raise BenchError(f"--set {item!r}: expected KEY=VALUE")
        overrides[key] = value
    return overrides


def run(args: argparse.Namespace) -> dict[str, Any]:
    wanted = parse_only(args.only)
    overrides = parse_overrides(args.set)
    ports = {"https": args.https_port, "http": args.http_port, "api": args.api_port}
    if not shutil.which("docker"):
        raise BenchError("docker is not installed (run `make bootstrap`)")
    ensure_tool("wrk", "wrk", required=True)
    have_h2load = "3h2" in wanted and ensure_tool("h2load", "nghttp2-client", required=False)
    if not (CERTS / "server.pem").exists():
        log("certs/ missing: make certs")
        subprocess.run(["make", "certs"], cwd=ROOT, check=True)

    env = compose_env(overrides, ports)
    run_id = uuid.uuid4().hex[:8]
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    results: dict[str, Any] = {
        "timestamp": stamp,
        "label": args.label,
        "git": git_rev(),
        "settings": overrides,
        "config": {
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "wrk_threads": args.threads,
            "wrk_connections": args.connections,
            "rate_fraction": args.rate_fraction,
            "ports": ports,
        },
        "host": {
            "cpus": os.cpu_count(),
            "kernel": platform.release(),
            "loadavg_before": " ".join(f"{x:.2f}" for x in os.getloadavg()),
            "docker": subprocess.run(
                ["docker", "version", "-f", "{{.Server.Version}}"], capture_output=True, text=True
            ).stdout.strip(),
        },
        "measurements": [],
        "startup": {},
        "images": {},
    }

    try:
        log(f"project {PROJECT}: clearing any leftovers")
        down(env, grace_s=5)
        results["startup"] = start(env)
        containers = {s: container_id(env, s) for s in ("api", "nginx")}
        results["startup"]["timeline"] = {s: health_timeline(c) for s, c in containers.items()}
        meter = CpuMeter(containers, ports)
        results["seed"] = seed(f"https://127.0.0.1:{ports['https']}", run_id)
        started_at = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        results["measurements"] = run_measurements(
            args, meter, env, ports, results["seed"]["item_id"], run_id, wanted, have_h2load
        )
        results["api_errors_logged"] = count_in_logs(env, "api", started_at, '"level": "ERROR"')
        results["images"] = image_summary()
        # Last of the measurements: it replaces the API's container (and its logs, read above).
        if wanted & set(FLOOR_KEYS):
            floor, results["floor"] = run_floor(args, env, ports, run_id, wanted)
            results["measurements"] += floor
        if not args.skip_rebuild:
            log("timing a code-only rebuild of the API image (copy under /tmp)")
            results["rebuild"] = measure_rebuild(env)
    finally:
        if args.keep:
            serving = " (the api service runs the floor app)" if "floor" in results else ""
            log(f"--keep: stack left up{serving} (docker compose -p {PROJECT} down -v to remove)")
        else:
            log("tearing down")
            down(env, grace_s=10)

    results["ratios"] = ratios(results["measurements"])
    results["targets"] = targets(results)
    return results


def main() -> int:
    args = parse_args()
    try:
        with terminate_cleanly():
            results = run(args)
    except BenchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 1
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{results['timestamp']}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(markdown(results))
    print(f"\nResults: {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
