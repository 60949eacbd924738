"""Where a running gunicorn worker spends its time, per kind of request (issue 15).

    .venv/bin/python bench/worker_profile.py [get] [page] [post] [--floor] [--raw DIR]
        [--duration 20] [--rate 250]

Brings up the bench stack (as ``make bench`` does: its own compose project and ports, rate limits
off), seeds it, and for each load: wrk through nginx (TLS, 64 connections, like measurements 3, 5
and 4), and meanwhile py-spy samples every gunicorn worker of the api container from the host.
Only the thread holding the GIL is sampled (``--gil``), so a sample is Python work being done,
not a thread waiting; ``--nonblocking`` leaves the workers running while they are read. Each
sample goes to the part of the request it belongs to (PARTS below) and the report prints each
part's share and its milliseconds of Python time per request (samples / rate / requests served
while sampling). ``--floor`` then swaps in the floor app (bench/floor.py) and profiles its GET
and sign-up the same way: what the API pays that any Flask app pays too. The stack is removed at
the end. It uses the bench's compose project and ports: not at the same time as ``make bench``.

What it cannot see: work done with the GIL released (SQLite's own C code, socket calls, the
kernel), which the bench's CPU per request includes. The shares are of the Python time.

Needs py-spy (in the dev lock) and the right to trace the workers (root, or CAP_SYS_PTRACE).
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import CERTS, ROOT, BenchError, domain, log, terminate_cleanly
from floor import FLOOR_COMPOSE, FLOOR_ITEM_PATH, check_mount_readable, wait_until_routed
from loadgen import ensure_tool
from measurements import wrk_load
from stack import compose_env, down, recreate_api, seed, stack_containers, start

# The bench's ports (bench/run.py), movable the same way.
PORTS = {
    "https": int(os.environ.get("BENCH_HTTPS_PORT", 18443)),
    "http": int(os.environ.get("BENCH_HTTP_PORT", 18080)),
    "api": int(os.environ.get("BENCH_API_PORT", 18000)),
}
PY_SPY = Path(sys.executable).parent / "py-spy"
LOADS = {
    "get": ("GET one item", "static"),
    "page": ("GET a page of 20 items", "static"),
    "post": ("POST a sign-up", "post_users"),
}

# The parts of a request, for the frames of our code and its libraries. The deepest frame that
# matches one of them names the sample; the frames of gunicorn and Flask name it only when no
# part below them does (they call everything).
PARTS = [
    ("email validation", r"email_validator|_normalise_email"),
    ("JSON body check (web/json_body)", r"api/web/json_body|StrictJSONProvider"),
    ("log line and request id", r"api/web/request_log|api/core/logging|logging/__init__"),
    ("metrics", r"api/web/metrics|prometheus_client"),
    ("Location header (url_for, iri_to_uri)", r"url_for|iri_to_uri"),
    ("API key (token, hash)", r"api/core/security"),
    ("Idempotency-Key", r"api/idempotency"),
    ("bearer auth", r"api/auth"),
    ("repeated query parameters check", r"api/web/query_args"),
    ("BEGIN IMMEDIATE", r"execute_driver_sql"),
    ("statements and rows (core/statements)", r"api/core/statements|api/repositories"),
    ("connection, pool, transaction (SQLAlchemy)", r"api/core/db|sqlalchemy/"),
    ("serialisation (pydantic, json_response, page)", r"model_dump_json|api/web/responses"),
    ("validation (flask-openapi3, pydantic)", r"flask_openapi3|pydantic"),
    ("the view (routes)", r"api/routes"),
    ("the floor app's view (raw sqlite3, jsonify)", r"floor_app"),
]
FRAMEWORK = [
    ("gunicorn: poller, parsing, response", r"gunicorn/"),
    ("Flask and Werkzeug: request cycle", r"flask/|werkzeug/"),
]
# The metrics middleware wraps the whole app: only its own lines are metrics.
WRAPPER = "_Middleware.__call__ ("


def classify(frames: list[str]) -> str:
    if frames[-1].startswith(WRAPPER):
        return "metrics"
    part = framework = None
    for frame in frames:
        if frame.startswith(WRAPPER):
            continue
        if "_Middleware._sample" in frame:
            return "metrics (gauge sampler thread)"
        if "_Flusher._run" in frame:
            return "log flusher thread"
        name = next((n for n, rx in PARTS if re.search(rx, frame)), None)
        if name:
            part = name
        elif not part:
            framework = next((n for n, rx in FRAMEWORK if re.search(rx, frame)), framework)
    return part or framework or "other"


def partition(raw: str) -> collections.Counter[str]:
    """py-spy's raw output (one ``frame;frame;... count`` line per stack) by part."""
    counts: collections.Counter[str] = collections.Counter()
    for line in raw.splitlines():
        stack, _, n = line.rpartition(" ")
        if stack and n.isdigit():
            counts[classify(stack.split(";"))] += int(n)
    return counts


def worker_pids(api_container: str) -> list[int]:
    """Host pids of the gunicorn workers: the children of gunicorn's master."""
    out = subprocess.run(
        ["docker", "top", api_container, "-eo", "pid,ppid,args"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()[1:]
    procs = [(int(p), int(pp), args) for p, pp, args in (line.split(None, 2) for line in out)]
    gunicorn = {p: pp for p, pp, args in procs if "gunicorn" in args}
    # A worker has no children and gunicorn's master for a parent. (The master's own parent may
    # name gunicorn in its arguments too: an init or an entrypoint that started it.)
    parents = set(gunicorn.values())
    workers = sorted(p for p, pp in gunicorn.items() if p not in parents and pp in gunicorn)
    if not workers:
        raise BenchError(f"no gunicorn workers in the api container: {out}")
    return workers


def profile(
    args: argparse.Namespace, name: str, url: str, mode: str, workers: list[int]
) -> tuple[collections.Counter[str], float]:
    """Load ``url`` with wrk and sample ``workers`` meanwhile: the samples by part, and the
    milliseconds of Python time one sample stands for per request."""
    # wrk runs a few seconds longer than the sampling, which starts once its connections are up.
    load_args = argparse.Namespace(threads=2, connections=64, duration=args.duration + 6)
    load, _ = wrk_load(load_args, url, uuid.uuid4().hex[:8], mode)
    command = [str(PY_SPY), "record", "--gil", "--nonblocking", "--format", "raw"]
    command += ["--rate", str(args.rate), "--duration", str(round(args.duration))]
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(max_workers=1) as pool:
        wrk = pool.submit(load)
        time.sleep(3)
        raw_dir = args.raw or Path(tmp)
        raw_dir.mkdir(parents=True, exist_ok=True)
        outputs = [raw_dir / f"{name}-{pid}.txt" for pid in workers]
        spies = [
            subprocess.Popen(
                [*command, "--pid", str(pid), "-o", str(out)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            for pid, out in zip(workers, outputs, strict=True)
        ]
        for spy in spies:
            _, err = spy.communicate(timeout=args.duration + 60)
            if spy.returncode != 0:
                raise BenchError(f"py-spy failed ({spy.returncode}): {err.strip()[-500:]}")
        result = wrk.result(timeout=args.duration + 120)
        errors = result["errors_non_2xx"] + result["errors_socket"]
        log(f"   {result['rps']} req/s, {errors} errors")
        if errors:
            raise BenchError(f"{errors} requests failed: the profile would not be of the answer")
        counts = partition("\n".join(out.read_text() for out in outputs))
    # Each sample is 1/rate s of one worker's Python time; the requests served while sampling
    # are the load's rate over the sampled seconds.
    ms_per_sample = 1000 / args.rate / (result["rps"] * args.duration)
    return counts, ms_per_sample


def report(title: str, counts: collections.Counter[str], ms_per_sample: float) -> str:
    total = sum(counts.values()) or 1
    lines = [
        f"\n### {title}: {total:,} samples with the GIL held,"
        f" {total * ms_per_sample:.3f} ms of Python time per request",
        "",
        "| ms per request | share | part |",
        "|---:|---:|---|",
    ]
    lines += [
        f"| {n * ms_per_sample:.3f} | {n / total * 100:.1f}% | {part} |"
        for part, n in counts.most_common()
    ]
    return "\n".join(lines)


def profile_floor(args: argparse.Namespace, env: dict[str, str]) -> None:
    """Swap the floor app in for the api service and profile its ``get`` and ``post``."""
    check_mount_readable()
    log("floor: recreating the api service with bench/floor/floor_app.py")
    recreate_api(env, "the floor app", [FLOOR_COMPOSE])
    https = f"https://127.0.0.1:{PORTS['https']}"
    item = https + FLOOR_ITEM_PATH
    wait_until_routed([item])
    workers = worker_pids(stack_containers(env)["api"])
    for name, url in (("get", item), ("post", https)):
        if name in args.loads:
            title, mode = LOADS[name]
            log(f"floor {name}: {title}, sampling for {args.duration:.0f} s")
            counts, ms_per_sample = profile(args, f"floor-{name}", url, mode, workers)
            print(report(f"floor: {title}", counts, ms_per_sample), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("loads", nargs="*", help=f"any of {', '.join(LOADS)} (default: all)")
    parser.add_argument(
        "--floor", action="store_true", help="then the floor app's GET and sign-up (get, post)"
    )
    parser.add_argument("--duration", type=float, default=20.0, help="seconds sampled per load")
    parser.add_argument(
        "--raw", type=Path, help="keep py-spy's samples here (one file per load and worker)"
    )
    parser.add_argument("--rate", type=int, default=250, help="samples per second per worker")
    args = parser.parse_args()
    args.loads = args.loads or list(LOADS)
    try:
        if unknown := set(args.loads) - set(LOADS):
            raise BenchError(f"unknown loads {sorted(unknown)}: choose from {', '.join(LOADS)}")
        if not PY_SPY.exists():
            raise BenchError(f"{PY_SPY} is missing (make venv installs it)")
        ensure_tool("wrk", "wrk", required=True)
        if not (CERTS / "server.pem").exists():
            subprocess.run(["make", "certs"], cwd=ROOT, check=True)
        env = compose_env({}, PORTS, "sqlite")
        with terminate_cleanly():
            try:
                down(env, grace_s=5)
                start(env)
                seeded = seed(f"https://127.0.0.1:{PORTS['https']}", uuid.uuid4().hex[:8])
                workers = worker_pids(stack_containers(env)["api"])
                log(f"gunicorn workers (host pids): {workers}")
                https = f"https://127.0.0.1:{PORTS['https']}"
                urls = {
                    "get": https + domain.resource_url(seeded["resource_id"]),
                    "page": f"{https}{domain.RESOURCES_PATH}?limit=20",
                    "post": https,  # the sign-up's path is in bench/wrk/bench.lua
                }
                for name in args.loads:
                    title, mode = LOADS[name]
                    log(f"{name}: {title}, sampling for {args.duration:.0f} s")
                    print(
                        report(title, *profile(args, name, urls[name], mode, workers)), flush=True
                    )
                if args.floor:
                    profile_floor(args, env)
            finally:
                log("tearing down")
                down(env, grace_s=10)
    except BenchError as exc:
        print(f"profile: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
