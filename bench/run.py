"""`make bench`: bring up the stack with rate limits off, load it, print one table (issue 6).

Run with the repository's virtualenv (standard library only):

    .venv/bin/python bench/run.py [--duration 10] [--set GUNICORN_WORKERS=3 ...] [--label NAME]
        [--db {sqlite,postgres,both}]

What it does, in order (everything is torn down at the end, also on failure or Ctrl-C):

1. Installs wrk (and h2load, optional) from Debian's packages when missing and running as root
   on Debian; otherwise stops and says what to install.
2. Builds and starts the stack as its own compose project (``flask-stack-bench``) with
   ``bench/compose.bench.yaml``: rate limits off, gunicorn published on 127.0.0.1:18000, nginx on
   127.0.0.1:18443/18080, images tagged ``:bench``. A developer's ``make up`` is not touched.
   ``--db postgres``: also ``compose.postgres.yaml`` (the db service, not published, and the
   API pointed at it) in every compose call, teardown included; needs ``secrets/db_password``
   (``make secrets``, run by the harness if missing).
3. Seeds a user and 25 public resources (through the API, so on either database), with the paths
   and bodies of the sample domain (tests/support/domain.py, imported through ``common.py``).
4. Runs the measurements of issue 6 (each after a short warm-up), reading the containers' cgroup
   CPU counters (and the host processes that carry the traffic) before and after each one.
5. M2on, M2off (``metrics_cost.py``): recreates only the api service, as it is and then with
   ``METRICS_ENABLED=false``, and runs 2 after each start: the API's CPU per GET with its metrics
   on and off in one run, measured alike (issue 16).
   The floor baseline (F2-F4, ``floor.py``): recreates only the api service with
   ``bench/compose.floor.yaml`` (a minimal Flask app on the same image, gunicorn.conf.py and
   nginx), waits until nginx routes to it, and runs 2, 3 and 4 again against it.
6. Measures image sizes, time from ``up`` to healthy, and a code-only rebuild of the API image
   (in a copy of services/api under /tmp: no tracked file is touched).
7. Writes ``bench/results/<UTC timestamp>-<database>.json`` (it records ``"database"``) and
   prints a markdown table with the ratios and the issue's targets, as facts (pass/fail is
   reported, never asserted).

``--db both`` runs 2-7 twice, SQLite then PostgreSQL, each on a fresh stack (M2, the floor and
the rebuild timing only in the first pass: none of them is about the database), writes one
results file per database under the same timestamp plus ``<timestamp>-comparison.json``, and
prints both tables and the comparison of ``compare.py`` (the API's and the db's CPU per request,
throughput and errors of 2, 4 and 5).

Only 127.0.0.1 receives traffic. Every run is bounded (``--duration`` seconds per measurement).

This file parses the arguments and runs the steps; the parts live next to it: ``stack.py``
(compose, seeding), ``cpu.py`` (CPU accounting), ``loadgen.py`` (wrk, h2load, openloop.py),
``measurements.py`` (the measurements), ``metrics_cost.py`` (M2), ``floor.py`` (the floor
baseline), ``images.py`` (sizes, rebuild), ``report.py`` (table), ``compare.py`` (SQLite vs
PostgreSQL).
Run as a script, this directory is on ``sys.path``, so they are imported by their plain names.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import compare
from common import (
    CERTS,
    DATABASES,
    DB_PASSWORD_FILE,
    PROJECT,
    RESULTS_DIR,
    ROOT,
    BenchError,
    log,
    terminate_cleanly,
)
from cpu import CpuMeter
from floor import FLOOR_KEYS, run_floor
from images import image_summary, measure_rebuild
from loadgen import ensure_tool
from measurements import run_measurements
from metrics_cost import METRICS_KEYS, metrics_already_off, run_metrics_pair
from report import markdown, ratios, targets
from stack import compose_env, count_in_logs, down, health_timeline, seed, stack_containers, start

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
        default=",".join([*API_KEYS, "M2", "F"]),
        help="measurements to run, comma-separated: "
        + ",".join(API_KEYS)
        + " (the API), M2 (2 on a new API container with metrics on, then off), F2,F3,F4 (the"
        " floor app; F = all three). M2 and then the floor run after the API's measurements, as"
        " each replaces the API's container. Default: all",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="environment for compose, e.g. GUNICORN_WORKERS=3 (repeatable)",
    )
    parser.add_argument(
        "--db",
        choices=[*DATABASES, "both"],
        default="sqlite",
        help="the API's database; both: a SQLite pass, then a PostgreSQL pass (fresh stack each;"
        " the floor and the rebuild timing in the first only) and a comparison. Default: sqlite",
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


def parse_only(value: str) -> set[str]:
    """``--only`` as a set of measurement keys; ``F`` stands for F2, F3 and F4, ``M2`` for M2on
    and M2off."""
    wanted: set[str] = set()
    for key in (k.strip() for k in value.split(",")):
        if key == "F":
            wanted.update(FLOOR_KEYS)
        elif key == "M2":
            wanted.update(METRICS_KEYS)
        elif key in API_KEYS or key in FLOOR_KEYS:
            wanted.add(key)
        elif key:
            known = ", ".join([*API_KEYS, "M2", *FLOOR_KEYS, "F"])
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


def prepare(args: argparse.Namespace, databases: list[str]) -> bool:
    """Tools, certificates and the database password; whether h2load is there for 3h2."""
    if not shutil.which("docker"):
        raise BenchError("docker is not installed (run `make bootstrap`)")
    ensure_tool("wrk", "wrk", required=True)
    have_h2load = "3h2" in parse_only(args.only) and ensure_tool(
        "h2load", "nghttp2-client", required=False
    )
    if not (CERTS / "server.pem").exists():
        log("certs/ missing: make certs")
        subprocess.run(["make", "certs"], cwd=ROOT, check=True)
    if "postgres" in databases and not DB_PASSWORD_FILE.exists():
        # compose.postgres.yaml mounts it into api and db; the bench's cluster is created anew
        # on each run (down -v), so any password works, but it must exist.
        log("secrets/db_password missing: make secrets")
        subprocess.run(["make", "secrets"], cwd=ROOT, check=True)
    return have_h2load


def run_pass(
    args: argparse.Namespace,
    database: str,
    stamp: str,
    wanted: set[str],
    have_h2load: bool,
    *,
    rebuild: bool,
    keep: bool,
) -> dict[str, Any]:
    """One stack on ``database``: up, seed, the ``wanted`` measurements, down. Its results."""
    overrides = parse_overrides(args.set)
    ports = {"https": args.https_port, "http": args.http_port, "api": args.api_port}
    env = compose_env(overrides, ports, database)
    run_id = uuid.uuid4().hex[:8]
    results: dict[str, Any] = {
        "timestamp": stamp,
        "database": database,
        "pass_started": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
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
            "compose_files": [
                str(Path(f).relative_to(ROOT)) for f in env["COMPOSE_FILE"].split(os.pathsep)
            ],
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
        log(f"project {PROJECT} on {DATABASES[database]}: clearing any leftovers")
        down(env, grace_s=5)
        results["startup"] = start(env)
        # api and nginx, and db on PostgreSQL: its CPU is part of every request's cost there.
        containers = stack_containers(env)
        results["startup"]["timeline"] = {s: health_timeline(c) for s, c in containers.items()}
        meter = CpuMeter(containers, ports)
        results["seed"] = seed(f"https://127.0.0.1:{ports['https']}", run_id)
        started_at = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        results["measurements"] = run_measurements(
            args, meter, env, ports, results["seed"]["resource_id"], run_id, wanted, have_h2load
        )
        results["api_errors_logged"] = count_in_logs(env, "api", started_at, '"level": "ERROR"')
        if "db" in containers:
            # A failed statement (a constraint, a timeout, too many connections) is logged by
            # the server even when the API turns it into a 4xx or retries it.
            results["db_errors_logged"] = sum(
                count_in_logs(env, "db", started_at, level) for level in ("ERROR:", "FATAL:")
            )
        results["images"] = image_summary(database)
        if wanted & set(METRICS_KEYS):
            if metrics_already_off(env):
                log("M2on/M2off skipped: this run has the API's metrics off already")
            else:
                pair, results["metrics_pair"] = run_metrics_pair(
                    args, env, ports, results["seed"]["resource_id"], run_id
                )
                results["measurements"] += pair
        # Last of the measurements: it replaces the API's container (and its logs, read above).
        if wanted & set(FLOOR_KEYS):
            floor, results["floor"] = run_floor(args, env, ports, run_id, wanted)
            results["measurements"] += floor
        if rebuild:
            log("timing a code-only rebuild of the API image (copy under /tmp)")
            results["rebuild"] = measure_rebuild(env)
    finally:
        if keep:
            serving = " (the api service runs the floor app)" if "floor" in results else ""
            files = " ".join(f"-f {f}" for f in results["config"]["compose_files"])
            log(
                f"--keep: stack left up{serving} (docker compose -p {PROJECT} {files} down -v"
                " to remove)"
            )
        else:
            log("tearing down")
            down(env, grace_s=10)

    results["ratios"] = ratios(results["measurements"])
    results["targets"] = targets(results)
    return results


def save(results: dict[str, Any], name: str) -> Path:
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    return path


def run(args: argparse.Namespace) -> None:
    """Every pass of ``--db``, each saved and printed as soon as it is done; then, for both
    databases, the comparison."""
    databases = list(DATABASES) if args.db == "both" else [args.db]
    wanted = parse_only(args.only)
    have_h2load = prepare(args, databases)
    # One timestamp for the whole run: the files of its passes sort and pair by it.
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    passes: dict[str, dict[str, Any]] = {}
    for i, database in enumerate(databases):
        first, last = i == 0, i == len(databases) - 1
        results = run_pass(
            args,
            database,
            stamp,
            # The floor app has its own SQLite file whatever the API runs on, the metrics' cost
            # is not the database's, and the rebuild times a build: once per run is enough.
            wanted if first else wanted - {*FLOOR_KEYS, *METRICS_KEYS},
            have_h2load,
            rebuild=first and not args.skip_rebuild,
            # Two stacks on the same ports cannot both stay up: --keep keeps the last.
            keep=args.keep and last,
        )
        passes[database] = results
        path = save(results, f"{stamp}-{database}")
        print(markdown(results))
        print(f"\nResults: {path.relative_to(ROOT)}\n", flush=True)
    if len(passes) == 2:
        rows = compare.comparison(passes["sqlite"], passes["postgres"])
        path = save(
            {
                "timestamp": stamp,
                "label": args.label,
                "results": [f"{stamp}-{database}.json" for database in passes],
                "rows": rows,
            },
            f"{stamp}-comparison",
        )
        print(compare.markdown(rows, passes["sqlite"], passes["postgres"]))
        print(f"\nComparison: {path.relative_to(ROOT)}")


def main() -> int:
    args = parse_args()
    try:
        with terminate_cleanly():
            run(args)
    except BenchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
