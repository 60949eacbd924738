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
5. Measures image sizes, time from ``up`` to healthy, and a code-only rebuild of the API image
   (in a copy of services/api under /tmp: no tracked file is touched).
6. Writes ``bench/results/<UTC timestamp>.json`` and prints a markdown table with the ratios and
   the issue's targets, as facts (pass/fail is reported, never asserted).

Only 127.0.0.1 receives traffic. Every run is bounded (``--duration`` seconds per measurement).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import re
import resource
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
PROJECT = "flask-stack-bench"
COMPOSE_FILES = [ROOT / "compose.yaml", BENCH_DIR / "compose.bench.yaml"]
WRK_SCRIPT = BENCH_DIR / "wrk" / "bench.lua"
OPENLOOP = BENCH_DIR / "openloop.py"
RESULTS_DIR = BENCH_DIR / "results"
CERTS = ROOT / "certs"
IMAGE_TAG = "bench"
REBUILD_TAG = "bench-rebuild"
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Targets of issue 6. Reported, never asserted.
TARGET_RATIO_3_2 = 0.85
TARGET_WRITES = 1500.0
TARGET_P99_MS = 25.0
TARGET_API_MB = 200.0
TARGET_NGINX_MB = 150.0
TARGET_REBUILD_S = 15.0


def log(message: str) -> None:
    print(f"==> bench: {message}", file=sys.stderr, flush=True)


class BenchError(Exception):
    """A clear, expected failure (missing tool, stack did not start, ...)."""


# --- tools ----------------------------------------------------------------------------------


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


# --- compose --------------------------------------------------------------------------------


def compose_env(overrides: dict[str, str], ports: dict[str, int]) -> dict[str, str]:
    env = dict(os.environ)
    # Same defaults as the Makefile: Debian's old buildx (if any) cannot do Bake, and nginx must
    # be able to read certs/server.key (handed to uid 10001 by certs.py when run as root).
    env.setdefault("COMPOSE_BAKE", "false")
    if "NGINX_USER" not in env:
        env["NGINX_USER"] = "10001:10001" if os.geteuid() == 0 else f"{os.getuid()}:{os.getgid()}"
    env.update(
        {
            "HTTPS_PORT": str(ports["https"]),
            "HTTP_PORT": str(ports["http"]),
            "BENCH_API_PORT": str(ports["api"]),
            "BIND_ADDRESS": "127.0.0.1",
            "IMAGE_TAG": IMAGE_TAG,
        }
    )
    env.update(overrides)
    return env


def compose(env: dict[str, str], *args: str, check: bool = True, capture: bool = False):
    cmd = ["docker", "compose", "-p", PROJECT]
    for f in COMPOSE_FILES:
        cmd += ["-f", str(f)]
    cmd += list(args)
    result = subprocess.run(cmd, env=env, cwd=ROOT, text=True, capture_output=capture)
    if check and result.returncode != 0:
        detail = (result.stderr or "").strip()[-2000:] if capture else ""
        raise BenchError(f"`docker compose {' '.join(args)}` failed ({result.returncode}) {detail}")
    return result


def container_id(env: dict[str, str], service: str) -> str:
    out = compose(env, "ps", "-q", service, capture=True).stdout.strip()
    if not out:
        raise BenchError(f"no container for service {service}")
    return out.splitlines()[0]


def docker_inspect(ref: str, fmt: str) -> str:
    return subprocess.run(
        ["docker", "inspect", "-f", fmt, ref], capture_output=True, text=True, check=True
    ).stdout.strip()


# --- CPU accounting ---------------------------------------------------------------------------


def cgroup_cpu_path(full_id: str) -> Path | None:
    """The file holding a container's total CPU time (cgroup v1 or v2)."""
    candidates = [
        Path(f"/sys/fs/cgroup/cpuacct/docker/{full_id}/cpuacct.usage"),  # v1, cgroupfs
        Path(f"/sys/fs/cgroup/cpu,cpuacct/docker/{full_id}/cpuacct.usage"),
        Path(f"/sys/fs/cgroup/cpuacct/system.slice/docker-{full_id}.scope/cpuacct.usage"),
        Path(f"/sys/fs/cgroup/system.slice/docker-{full_id}.scope/cpu.stat"),  # v2, systemd
        Path(f"/sys/fs/cgroup/docker/{full_id}/cpu.stat"),  # v2, cgroupfs
    ]
    return next((p for p in candidates if p.exists()), None)


def read_cgroup_cpu(path: Path) -> float:
    """Seconds of CPU used by the cgroup so far."""
    text = path.read_text()
    if path.name == "cpuacct.usage":
        return int(text) / 1e9
    usage = re.search(r"^usage_usec (\d+)$", text, re.MULTILINE)
    return int(usage.group(1)) / 1e6 if usage else 0.0


def proc_cpu(pid: int) -> float:
    """utime + stime of one process, seconds (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def find_pids(comm: str, cmdline_has: str = "") -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != comm:
                continue
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if cmdline_has in cmdline:
            pids.append(int(entry.name))
    return pids


def host_busy_cpu() -> float:
    """Seconds all CPUs of the host spent not idle (from /proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / CLK_TCK


class CpuMeter:
    """Before/after CPU seconds of the stack's containers and of the host processes that carry
    the benchmark's traffic: docker-proxy (Docker's userland proxy for ports published on
    127.0.0.1), dockerd (reads the containers' log lines), the containerd shims.
    """

    def __init__(self, containers: dict[str, str], ports: dict[str, int]) -> None:
        self.cgroups: dict[str, Path] = {}
        self.shims: list[int] = []
        for name, cid in containers.items():
            full = docker_inspect(cid, "{{.Id}}")
            path = cgroup_cpu_path(full)
            if path is None:
                log(f"no cgroup CPU counter found for {name} ({full[:12]}); CPU column empty")
            else:
                self.cgroups[name] = path
            pid = int(docker_inspect(cid, "{{.State.Pid}}"))
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                self.shims.append(int(stat[1]))  # parent of the container's PID 1
        self.proxies = [
            pid
            for port in ports.values()
            for pid in find_pids("docker-proxy", f"-host-port {port} ")
        ]
        self.dockerd = find_pids("dockerd")

    def sample(self) -> dict[str, float]:
        values = {name: read_cgroup_cpu(path) for name, path in self.cgroups.items()}
        values["docker-proxy"] = sum(proc_cpu(p) for p in self.proxies)
        values["dockerd"] = sum(proc_cpu(p) for p in self.dockerd)
        values["shims"] = sum(proc_cpu(p) for p in self.shims)
        values["host_busy"] = host_busy_cpu()
        return values

    @staticmethod
    def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
        return {k: round(after[k] - before[k], 3) for k in before if k in after}


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# --- HTTP helpers (seeding, readiness) ----------------------------------------------------------


def tls_context() -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(CERTS / "ca.pem"))


def http_json(
    method: str, url: str, body: dict | None = None, token: str | None = None
) -> tuple[int, Any]:
    headers = {"Accept": "application/json"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    context = tls_context() if url.startswith("https:") else None
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def seed(base: str, run_id: str, n_items: int = 25) -> dict[str, Any]:
    status, user = http_json(
        "POST", f"{base}/api/users", {"name": "Bench Seed", "email": f"seed-{run_id}@example.com"}
    )
    if status != 201:
        raise BenchError(f"seeding: POST /api/users answered {status}: {user}")
    token = user["api_key"]
    ids = []
    for i in range(n_items):
        status, item = http_json(
            "POST",
            f"{base}/api/items",
            {"name": f"bench item {i}", "is_public": True},
            token=token,
        )
        if status != 201:
            raise BenchError(f"seeding: POST /api/items answered {status}: {item}")
        ids.append(item["id"])
    status, page = http_json("GET", f"{base}/api/items?limit=20")
    if status != 200 or len(page.get("items", [])) != 20:
        raise BenchError(f"seeding: GET /api/items?limit=20 gave {status}, not a page of 20")
    return {"user_id": user["id"], "item_id": ids[0], "item_ids": len(ids)}


# --- load generators --------------------------------------------------------------------------


def run_wrk(
    url: str, *, threads: int, connections: int, duration: float, mode: str, run_id: str
) -> dict[str, Any]:
    env = {**os.environ, "BENCH_WRK_MODE": mode, "BENCH_RUN_ID": run_id}
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
        "errors_non_2xx": done - int(codes.group(1)),
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
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
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


# --- measurements ------------------------------------------------------------------------------


def measure(
    key: str,
    title: str,
    meter: CpuMeter,
    load: Any,
    warmup: Any | None,
) -> dict[str, Any]:
    log(f"{key}. {title}")
    if warmup is not None:
        warmup()
    before = meter.sample()
    gen_before = children_cpu()
    result = load()
    gen_cpu = children_cpu() - gen_before
    cpu = CpuMeter.delta(before, meter.sample())
    cpu["generator"] = round(gen_cpu, 3)
    accounted = sum(v for k, v in cpu.items() if k != "host_busy")
    cpu["other_host"] = round(max(cpu.get("host_busy", 0.0) - accounted, 0.0), 3)
    n = result["requests"] or 1
    result.update(
        {
            "key": key,
            "title": title,
            "cpu_s": cpu,
            "cpu_s_per_1k": {k: round(v / n * 1000, 4) for k, v in cpu.items()},
        }
    )
    result["errors_total"] = result["errors_non_2xx"] + result["errors_socket"]
    log(
        f"   {result['rps']} req/s, p50 {result.get('p50_ms')} ms, p99 {result.get('p99_ms')}"
        f" ms, errors {result['errors_total']}"
    )
    return result


def count_in_logs(env: dict[str, str], service: str, since: str, needle: str) -> int:
    out = compose(env, "logs", "--no-color", "--since", since, service, capture=True, check=False)
    return (out.stdout + out.stderr).count(needle)


def health_timeline(cid: str) -> dict[str, Any]:
    """When the container started and when its first passing health probe ended."""
    state = json.loads(docker_inspect(cid, "{{json .State}}"))
    probes = (state.get("Health") or {}).get("Log") or []
    healthy = next((p["End"] for p in probes if p.get("ExitCode") == 0), None)
    return {"started": state.get("StartedAt"), "first_healthy_probe": healthy}


# --- images and build times --------------------------------------------------------------------


def image_size_mb(ref: str) -> float | None:
    try:
        return round(int(docker_inspect(ref, "{{.Size}}")) / 1e6, 1)
    except subprocess.CalledProcessError:
        return None


def measure_rebuild(env: dict[str, str]) -> dict[str, Any]:
    """Time a rebuild of the API image after a code-only change, in a copy of its context."""
    with tempfile.TemporaryDirectory(prefix="bench-rebuild-") as tmp:
        context = Path(tmp) / "api"
        shutil.copytree(
            ROOT / "services" / "api",
            context,
            ignore=shutil.ignore_patterns(".venv", "__pycache__", ".pytest_cache", "var"),
        )
        compose_file = Path(tmp) / "compose.yaml"
        compose_file.write_text(
            "services:\n"
            "  api:\n"
            f"    build: {{context: {context}, args: {{BASE_IMAGE: "
            f"'{env.get('BASE_IMAGE', 'debian:trixie-slim')}'}}}}\n"
            f"    image: flask-stack-api:{REBUILD_TAG}\n"
            "    pull_policy: build\n"
        )
        cmd = ["docker", "compose", "-p", f"{PROJECT}-rebuild", "-f", str(compose_file)]
        cmd += ["build", "api"]

        def timed_build() -> float:
            started = time.monotonic()
            out = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if out.returncode != 0:
                raise BenchError(f"rebuild failed: {out.stderr.strip()[-1500:]}")
            return round(time.monotonic() - started, 2)

        try:
            unchanged = timed_build()  # same content as the :bench image: cache only
            target = context / "src" / "api" / "__init__.py"
            with target.open("a") as f:
                f.write(f"\n# bench: code-only change {uuid.uuid4().hex}\n")
            changed = timed_build()
        finally:
            subprocess.run(
                ["docker", "image", "rm", f"flask-stack-api:{REBUILD_TAG}"], capture_output=True
            )
    return {
        "method": "docker compose build api, copy of services/api with one line appended to "
        "src/api/__init__.py (build cache warm)",
        "no_change_s": unchanged,
        "code_change_s": changed,
    }


# --- report ---------------------------------------------------------------------------------


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "FAIL")


def markdown(results: dict[str, Any]) -> str:
    cols = ["api", "nginx", "docker-proxy", "dockerd", "generator", "other_host"]
    lines = [
        f"### flask-stack benchmark {results['timestamp']} ({results['label']})",
        "",
        "| # | measurement | req/s | p50 ms | p99 ms | errors | CPU s/1k req: "
        + " / ".join(cols)
        + " |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for m in results["measurements"]:
        per_1k = m["cpu_s_per_1k"]
        cpu = " / ".join(fmt(per_1k.get(c), 3) for c in cols)
        p50 = m.get("p50_ms")
        p99 = m.get("p99_ms")
        if p50 is None and m.get("mean_ms") is not None:
            p50, p99 = f"mean {m['mean_ms']}", f"max {m['max_ms']}"
        lines.append(
            f"| {m['key']} | {m['title']} | {fmt(m['rps'])} | {fmt(p50, 2)} | {fmt(p99, 2)} "
            f"| {m['errors_total']} | {cpu} |"
        )
    for m in results["measurements"]:
        if m["key"] == "6":
            lines.append(
                f"\n6 at {fmt(m['rate_offered'])} req/s offered: p50 {fmt(m['p50_ms'], 2)} / p90 "
                f"{fmt(m['p90_ms'], 2)} / p99 {fmt(m['p99_ms'], 2)} / max {fmt(m['max_ms'], 2)} ms"
                " (from the scheduled time)."
            )
    r = results["ratios"]
    lines += [
        "",
        f"Ratios: 3/2 = {fmt(r.get('3/2'), 3)}, 3/1 = {fmt(r.get('3/1'), 3)}.",
        "",
        "| target (issue 6) | value | result |",
        "|---|---|---|",
    ]
    for t in results["targets"]:
        lines.append(f"| {t['target']} | {t['value']} | {verdict(t['pass'])} |")
    s = results["startup"]
    lines += [
        "",
        f"Images: api {fmt(results['images'].get('api_mb'))} MB, nginx "
        f"{fmt(results['images'].get('nginx_mb'))} MB. Build (cache warm) {fmt(s.get('build_s'))}"
        f" s; `up` to healthy {fmt(s.get('up_to_healthy_s'))} s.",
        f"Host: {results['host']['cpus']} CPUs shared by the stack and the load generator; "
        f"load average before the run {results['host']['loadavg_before']}. `other_host`: CPU "
        "that the host spent on anything else during the run (noise, if not ~0).",
    ]
    return "\n".join(lines)


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    by_key = {m["key"]: m for m in results["measurements"]}
    out: list[dict[str, Any]] = []
    ratio = results["ratios"].get("3/2")
    out.append(
        {
            "target": f"3/2 >= {TARGET_RATIO_3_2}",
            "value": fmt(ratio, 3),
            "pass": None if ratio is None else ratio >= TARGET_RATIO_3_2,
        }
    )
    m4 = by_key.get("4")
    if m4:
        locked = m4.get("database_locked", 0)
        out.append(
            {
                "target": f"4: >= {TARGET_WRITES:,.0f} writes/s, 0 errors, no 'database is locked'",
                "value": f"{fmt(m4['rps'])}/s, {m4['errors_total']} errors, {locked} locked",
                "pass": m4["rps"] >= TARGET_WRITES and m4["errors_total"] == 0 and locked == 0,
            }
        )
    m6 = by_key.get("6")
    if m6:
        out.append(
            {
                "target": f"6: p99 <= {TARGET_P99_MS:.0f} ms at 70% of peak, 0 errors",
                "value": f"p99 {fmt(m6['p99_ms'], 2)} ms at {fmt(m6['rate_offered'])} req/s, "
                f"{m6['errors_total']} errors",
                "pass": m6["p99_ms"] is not None
                and m6["p99_ms"] <= TARGET_P99_MS
                and m6["errors_total"] == 0,
            }
        )
    for key in ("1", "2", "3", "5"):
        m = by_key.get(key)
        if m:
            out.append(
                {
                    "target": f"{key}: 0 errors",
                    "value": str(m["errors_total"]),
                    "pass": m["errors_total"] == 0,
                }
            )
    images = results["images"]
    for name, limit in (("api", TARGET_API_MB), ("nginx", TARGET_NGINX_MB)):
        size = images.get(f"{name}_mb")
        out.append(
            {
                "target": f"{name} image <= {limit:.0f} MB",
                "value": f"{fmt(size)} MB",
                "pass": None if size is None else size <= limit,
            }
        )
    rebuild = results.get("rebuild") or {}
    changed = rebuild.get("code_change_s")
    out.append(
        {
            "target": f"code-only API rebuild <= {TARGET_REBUILD_S:.0f} s",
            "value": f"{fmt(changed)} s" if changed is not None else "not measured",
            "pass": None if changed is None else changed <= TARGET_REBUILD_S,
        }
    )
    return out


# --- main -------------------------------------------------------------------------------------


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
        "--only", default="1,2,3,3h2,4,5,6", help="measurements to run (comma-separated)"
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


def run(args: argparse.Namespace) -> dict[str, Any]:
    wanted = {k.strip() for k in args.only.split(",") if k.strip()}
    overrides = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not re.fullmatch(r"[A-Z_][A-Z0-9_]*", key):
            raise BenchError(f"--set {item!r}: expected KEY=VALUE")
        overrides[key] = value
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

    https = f"https://127.0.0.1:{ports['https']}"
    direct = f"http://127.0.0.1:{ports['api']}"
    try:
        log(f"project {PROJECT}: clearing any leftovers")
        compose(env, "down", "-v", "--remove-orphans", "-t", "5", capture=True, check=False)
        log("building images (tag :bench)")
        started = time.monotonic()
        compose(env, "build", capture=True)
        results["startup"]["build_s"] = round(time.monotonic() - started, 2)
        log("starting the stack and waiting until healthy")
        started = time.monotonic()
        up = compose(env, "up", "-d", "--wait", capture=True, check=False)
        results["startup"]["up_to_healthy_s"] = round(time.monotonic() - started, 2)
        if up.returncode != 0:
            logs = compose(env, "logs", "--no-color", "--tail", "30", capture=True, check=False)
            raise BenchError(f"the stack did not become healthy:\n{up.stderr}\n{logs.stdout}")

        containers = {s: container_id(env, s) for s in ("api", "nginx")}
        results["startup"]["timeline"] = {s: health_timeline(c) for s, c in containers.items()}
        meter = CpuMeter(containers, ports)
        results["seed"] = seed(https, run_id)
        item = results["seed"]["item_id"]
        started_at = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

        def wrk(url: str, mode: str = "static", connections: int | None = None):
            c = connections or args.connections

            def load() -> dict[str, Any]:
                return run_wrk(
                    url,
                    threads=args.threads,
                    connections=c,
                    duration=args.duration,
                    mode=mode,
                    run_id=run_id,
                )

            def warm() -> None:
                if args.warmup > 0:
                    run_wrk(
                        url,
                        threads=args.threads,
                        connections=c,
                        duration=max(1, args.warmup),
                        mode=mode,
                        run_id=f"{run_id}w",
                    )

            return load, warm

        plan = [
            ("1", "nginx static 200 (TLS)", *wrk(f"{https}/nginx-static")),
            ("2", "GET item, gunicorn direct", *wrk(f"{direct}/api/items/{item}")),
            ("3", "GET item via nginx (TLS)", *wrk(f"{https}/api/items/{item}")),
        ]
        measured = results["measurements"]
        for key, title, load, warm in plan:
            if key in wanted:
                measured.append(measure(key, title, meter, load, warm))
        if have_h2load:
            measured.append(
                measure(
                    "3h2",
                    "GET item via nginx (HTTP/2)",
                    meter,
                    lambda: run_h2load(
                        f"{https}/api/items/{item}",
                        connections=16,
                        streams=4,
                        duration=args.duration,
                    ),
                    None,
                )
            )
        if "4" in wanted:
            load, warm = wrk(https, mode="post_users")
            since = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            m4 = measure("4", "POST /api/users via nginx (64 conns)", meter, load, warm)
            m4["database_locked"] = count_in_logs(env, "api", since, "database is locked")
            measured.append(m4)
        if "5" in wanted:
            load, warm = wrk(f"{https}/api/items?limit=20")
            measured.append(measure("5", "GET /api/items?limit=20 via nginx", meter, load, warm))
        if "6" in wanted:
            peak = next((m["rps"] for m in measured if m["key"] == "3"), None)
            rate = args.rate or (peak * args.rate_fraction if peak else None)
            if rate:
                url = f"{https}/api/items/{item}"
                m6 = measure(
                    "6",
                    f"GET item via nginx at {rate:.0f} req/s (open loop)",
                    meter,
                    lambda: run_openloop(
                        url,
                        rate=rate,
                        duration=args.duration,
                        connections=args.openloop_connections,
                    ),
                    lambda: run_openloop(
                        url,
                        rate=rate,
                        duration=max(1.0, args.warmup),
                        connections=args.openloop_connections,
                    ),
                )
                m6["rate_offered"] = round(rate, 1)
                measured.append(m6)
            else:
                log("6 skipped: needs 3 (or --rate)")
        results["api_errors_logged"] = count_in_logs(env, "api", started_at, '"level": "ERROR"')

        results["images"] = {
            "api_mb": image_size_mb(f"flask-stack-api:{IMAGE_TAG}"),
            "nginx_mb": image_size_mb(f"flask-stack-nginx:{IMAGE_TAG}"),
            # The image ids tell whether two runs measured the same code.
            "api_id": docker_inspect(f"flask-stack-api:{IMAGE_TAG}", "{{.Id}}")[7:19],
            "nginx_id": docker_inspect(f"flask-stack-nginx:{IMAGE_TAG}", "{{.Id}}")[7:19],
        }
        if not args.skip_rebuild:
            log("timing a code-only rebuild of the API image (copy under /tmp)")
            results["rebuild"] = measure_rebuild(env)
    finally:
        if args.keep:
            log(f"--keep: stack left up (docker compose -p {PROJECT} down -v to remove)")
        else:
            log("tearing down")
            compose(env, "down", "-v", "--remove-orphans", "-t", "10", capture=True, check=False)

    by_key = {m["key"]: m for m in results["measurements"]}
    ratios: dict[str, float | None] = {}
    if "3" in by_key and "2" in by_key:
        ratios["3/2"] = round(by_key["3"]["rps"] / by_key["2"]["rps"], 3)
    if "3" in by_key and "1" in by_key:
        ratios["3/1"] = round(by_key["3"]["rps"] / by_key["1"]["rps"], 3)
    results["ratios"] = ratios
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
