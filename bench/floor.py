"""The floor baseline, F2-F4: measurements 2-4 again, against a minimal Flask app.

``bench/floor/floor_app.py`` (raw sqlite3, no validation, no logging, no SQLAlchemy) is served by
the same API image, gunicorn.conf.py and nginx (TLS) as the real API: ``bench/compose.floor.yaml``
recreates only the api service with another command. What any Flask + gunicorn app reaches on
this machine on the same path is then in the same report as the API's 2-4, so "4/F4" says how
much of the reachable write throughput the API gets.

The real API is gone once this runs (its container is replaced), so it comes after everything
that needs the API and its logs. Teardown is unchanged: the override adds no service, network or
volume, and `down -v` finds the recreated container by the project's label.
"""

from __future__ import annotations

import argparse
import json
import stat
import time
import urllib.error
import urllib.request
from typing import Any

from common import BENCH_DIR, BenchError, log
from cpu import CpuMeter
from measurements import measure, wrk_load
from stack import count_in_logs, recreate_api, stack_containers, tls_context

FLOOR_DIR = BENCH_DIR / "floor"
FLOOR_COMPOSE = BENCH_DIR / "compose.floor.yaml"
FLOOR_KEYS = ("F2", "F3", "F4")
FLOOR_ITEM = 1  # seeded by floor_app.py itself at import
# The floor app's own routes (floor_app.py), the sample domain's paths hard-coded.
FLOOR_ITEM_PATH = f"/api/items/{FLOOR_ITEM}"
# Set by floor_app.py on its answers; the real API never sends it.
FLOOR_HEADER = "X-Bench-Floor"
# nginx re-resolves the api name every 5 s (API_RESOLVE_INTERVAL) and then reloads; a minute
# leaves room for a busy machine without hanging the run.
ROUTE_DEADLINE_S = 60.0


def check_mount_readable() -> None:
    """The container's uid 10001 reads bench/floor as "other": fail clearly if it could not."""
    for path in [FLOOR_DIR, *FLOOR_DIR.iterdir()]:
        if path.name == "__pycache__":
            continue
        mode = path.stat().st_mode
        need = stat.S_IROTH | (stat.S_IXOTH if path.is_dir() else 0)
        if mode & need != need:
            raise BenchError(
                f"{path} is not readable by other users (mode {stat.filemode(mode)}); the floor"
                f" app runs as uid 10001 in the container: chmod -R o+rX {FLOOR_DIR}"
            )


def floor_answers(url: str) -> tuple[bool, str]:
    """Whether ``url`` (GET item 1) is answered by the floor app; plus what was seen, for errors."""
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    context = tls_context() if url.startswith("https:") else None
    try:
        with urllib.request.urlopen(request, timeout=5, context=context) as response:
            body = json.loads(response.read() or b"null")
            is_floor = response.headers.get(FLOOR_HEADER) == "1"
            ok = is_floor and isinstance(body, dict) and body.get("id") == FLOOR_ITEM
            return ok, f"{response.status}, {FLOOR_HEADER}: {response.headers.get(FLOOR_HEADER)}"
    except urllib.error.HTTPError as exc:  # e.g. 502 while nginx still points at the old address
        return False, f"HTTP {exc.code}"
    except (OSError, ValueError) as exc:  # refused/reset/timeout, or not JSON
        return False, f"{type(exc).__name__}: {exc}"


def wait_until_routed(urls: list[str], deadline_s: float = ROUTE_DEADLINE_S) -> float:
    """Poll until every URL is answered by the floor app; return the seconds it took.

    Through nginx this is the real condition (not a sleep): its watcher has re-resolved the api
    name and reloaded, or the new container took the old address. One answer per URL is enough:
    after a reload only the new nginx workers accept connections, and the address stays put.
    """
    started = time.monotonic()
    pending = list(urls)
    seen = ""
    while pending:
        ok, seen = floor_answers(pending[0])
        if ok:
            pending.pop(0)
            continue
        if time.monotonic() - started > deadline_s:
            raise BenchError(
                f"{pending[0]} not answered by the floor app after {deadline_s:.0f} s"
                f" (last: {seen})"
            )
        time.sleep(0.25)
    return round(time.monotonic() - started, 2)


def run_floor(
    args: argparse.Namespace,
    env: dict[str, str],
    ports: dict[str, int],
    run_id: str,
    wanted: set[str],
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Swap the API for the floor app, then measure the ``wanted`` of F2, F3, F4.

    Returns the measurements and facts about the swap (times, the new container).
    """
    https = f"https://127.0.0.1:{ports['https']}"
    direct = f"http://127.0.0.1:{ports['api']}"
    item_path = FLOOR_ITEM_PATH
    check_mount_readable()
    log("floor: recreating the api service with bench/floor/floor_app.py")
    info: dict[str, Any] = {"up_to_healthy_s": recreate_api(env, "the floor app", [FLOOR_COMPOSE])}
    log("floor: waiting until gunicorn and nginx route to the floor app")
    info["routed_after_s"] = wait_until_routed([direct + item_path, https + item_path])
    containers = stack_containers(env)
    info["api_container"] = containers["api"][:12]
    # A new meter: the api container has a new id (and cgroup), its published port a new
    # docker-proxy process, and the container a new shim. On PostgreSQL the db stays in it,
    # idle: the floor app has its own SQLite file.
    meter = CpuMeter(containers, ports)

    measured: list[dict[str, Any]] = []
    if "F2" in wanted:
        load, warm = wrk_load(args, direct + item_path, run_id)
        measured.append(measure("F2", "floor: GET item, gunicorn direct", meter, load, warm))
    if "F3" in wanted:
        load, warm = wrk_load(args, https + item_path, run_id)
        measured.append(measure("F3", "floor: GET item via nginx (TLS)", meter, load, warm))
    if "F4" in wanted:
        # A fresh database (floor.sqlite3), so the run id of 4 gives unique emails here too.
        load, warm = wrk_load(args, https, run_id, mode="post_users")
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        title = f"floor: POST /api/users via nginx ({args.connections} conns)"
        m = measure("F4", title, meter, load, warm)
        # The floor logs nothing itself, but a lock error would surface as a 500's traceback.
        m["database_locked"] = count_in_logs(env, "api", since, "database is locked")
        measured.append(m)
    return measured, info
