"""The measurements of issue 6: what each one loads, its warm-up, and the CPU it cost.

What they request is the sample domain's (tests/support/domain.py): one resource (2, 3, 3h2, 6),
a sign-up (4), a page of the resource list (5).
"""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Callable
from typing import Any

from common import domain, log
from cpu import CpuMeter, children_cpu
from loadgen import run_h2load, run_openloop, run_wrk
from stack import count_in_logs

Load = Callable[[], dict[str, Any]]
Warmup = Callable[[], Any]


def measure(
    key: str,
    title: str,
    meter: CpuMeter,
    load: Load,
    warmup: Warmup | None,
) -> dict[str, Any]:
    """Warm up, then run ``load`` between two CPU samples; add the CPU per 1,000 requests."""
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


def wrk_load(
    args: argparse.Namespace, url: str, run_id: str, mode: str = "static"
) -> tuple[Load, Warmup]:
    """wrk with the run's settings against ``url``: the measured load and its warm-up."""

    def load() -> dict[str, Any]:
        return run_wrk(
            url,
            threads=args.threads,
            connections=args.connections,
            duration=args.duration,
            mode=mode,
            run_id=run_id,
        )

    def warm() -> None:
        if args.warmup > 0:
            # Its own run id: post_users emails must not collide with the measured run's.
            run_wrk(
                url,
                threads=args.threads,
                connections=args.connections,
                duration=max(1, args.warmup),
                mode=mode,
                run_id=f"{run_id}w",
            )

    return load, warm


def run_measurements(
    args: argparse.Namespace,
    meter: CpuMeter,
    env: dict[str, str],
    ports: dict[str, int],
    resource_id: int,
    run_id: str,
    wanted: set[str],
    have_h2load: bool,
) -> list[dict[str, Any]]:
    """Run the ``wanted`` measurements in order; 6 needs the peak of 3 (or ``--rate``)."""
    https = f"https://127.0.0.1:{ports['https']}"
    direct = f"http://127.0.0.1:{ports['api']}"

    resource = domain.resource_url(resource_id)  # the seeded one (public)
    page = f"{domain.RESOURCES_PATH}?limit=20"

    def wrk(url: str, mode: str = "static") -> tuple[Load, Warmup]:
        return wrk_load(args, url, run_id, mode)

    plan = [
        ("1", "nginx static 200 (TLS)", *wrk(f"{https}/nginx-static")),
        ("2", "GET item, gunicorn direct", *wrk(direct + resource)),
        ("3", "GET item via nginx (TLS)", *wrk(https + resource)),
    ]

    measured: list[dict[str, Any]] = []
    for key, title, load, warm in plan:
        if key in wanted:
            measured.append(measure(key, title, meter, load, warm))
    # 6 right after 3: this machine's speed drifts within minutes, and "70% of the peak of 3"
    # only means that while the peak still holds.
    if "6" in wanted:
        peak = next((m["rps"] for m in measured if m["key"] == "3"), None)
        rate = args.rate or (peak * args.rate_fraction if peak else None)
        if rate:
            url = https + resource
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
    if have_h2load:
        measured.append(
            measure(
                "3h2",
                "GET item via nginx (HTTP/2)",
                meter,
                lambda: run_h2load(
                    https + resource,
                    connections=16,
                    streams=4,
                    duration=args.duration,
                ),
                None,
            )
        )
    if "4" in wanted:
        load, warm = wrk(https, mode="post_users")  # the path is the sign-up's (loadgen.py)
        # Only the log lines written during 4 (and its warm-up) are searched.
        since = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        title = f"POST {domain.USERS_PATH} via nginx (64 conns)"
        m4 = measure("4", title, meter, load, warm)
        m4["database_locked"] = count_in_logs(env, "api", since, "database is locked")
        measured.append(m4)
    if "5" in wanted:
        load, warm = wrk(https + page)
        measured.append(measure("5", f"GET {page} via nginx", meter, load, warm))
    order = ("1", "2", "3", "3h2", "4", "5", "6")  # the table keeps the order
    return sorted(measured, key=lambda m: order.index(m["key"]))
