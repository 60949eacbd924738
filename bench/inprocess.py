"""The API's own cost per request, without HTTP server, proxy or Docker: the app's share of 2-5.

Calls the WSGI app (``api.create_app()``, the same middleware and hooks as in the image, with
nginx's forwarding headers) directly, on a throwaway SQLite file (or the database of
``--database-url``), and prints what one request costs. Two ways to count, because this
machine's CPU time per request moves by +-30% between runs (other tenants, frequency):

- default: CPU seconds (``time.process_time``) per request, best of 5 batches;
- ``--instructions``: instructions per request under ``valgrind --tool=callgrind``, which are
  the same from run to run. The script runs itself twice under valgrind (``--n`` and 5x ``--n``
  requests) and divides the difference by the extra requests, so start-up is not counted.
  Slow (about a minute per kind); needs valgrind.

    .venv/bin/python bench/inprocess.py                       # get, post, page: ms of CPU
    .venv/bin/python bench/inprocess.py --instructions get    # instructions per GET
    .venv/bin/python bench/inprocess.py --instructions --metrics both get   # with and without

``--metrics`` (``on``, the default as in the image; ``off``; ``both``, one after the other and
the difference) sets METRICS_ENABLED. With metrics on, the values go to prometheus_client's
multiprocess files in a temporary directory, as in a gunicorn worker (each value written to its
memory-mapped file), not to the in-process registry a bare app uses.

Kinds: ``get`` (GET of one resource), ``post`` (a sign-up, unique emails), ``page`` (GET of the
resource list, limit=20, of 25 public resources): the sample domain's paths and bodies, from
tests/support/domain.py. The log goes to /dev/null.

``--database-url`` runs the same on a database server, e.g. the stack's PostgreSQL image started
by hand (the password as the API reads it, from a file):

    DATABASE_PASSWORD_FILE=secrets/db_password .venv/bin/python bench/inprocess.py \
        --database-url postgresql+psycopg://api@<db address>:5432/api

The schema is migrated as the image does; every run adds its own owner, items and users (names
carry a token of the run), so runs can share one database. The CPU counted is this process's
only: the server's share, and the wait for it, are not in the figure.
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from typing import Any

# This runs on the host, with the virtualenv's editable install of the API (no Docker, no image),
# itself as a script (bench/ on sys.path, also under valgrind): common.py puts the repository root
# on sys.path and hands over the sample domain (tests/support/domain.py, standard library only).
from common import domain

KINDS = ("get", "post", "page")
FORWARDED = {
    "REMOTE_ADDR": "172.18.0.3",
    "HTTP_HOST": "localhost",
    "HTTP_X_REAL_IP": "172.18.0.1",
    "HTTP_X_FORWARDED_FOR": "172.18.0.1",
    "HTTP_X_FORWARDED_PROTO": "https",
    "HTTP_X_FORWARDED_HOST": "localhost",
    "HTTP_X_FORWARDED_PORT": "8443",
    "HTTP_X_REQUEST_ID": "0123456789abcdef0123456789abcdef",
}


def make_app(database_url: str | None, metrics: bool = True) -> Any:
    """A fresh app on ``database_url`` (default: a fresh SQLite file), migrated like the image
    does, its log going to /dev/null; with ``metrics``, recording them as a gunicorn worker does
    (multiprocess files in a temporary directory), else with METRICS_ENABLED=false."""
    os.environ["DATABASE_URL"] = (
        database_url or f"sqlite:///{tempfile.mkdtemp(prefix='inprocess-')}/api.db"
    )
    os.environ["METRICS_ENABLED"] = "true" if metrics else "false"
    if metrics and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        # Before anything imports prometheus_client, which reads it once.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="inprocess-metrics-")
    from api import create_app
    from api.core.config import load_settings
    from api.migrate import upgrade

    settings = load_settings()
    upgrade(settings)
    app = create_app(settings)
    devnull = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
    for handler in logging.getLogger("api").handlers:
        handler.setStream(devnull)  # type: ignore[attr-defined]
    return app


def wsgi_caller(app: Any) -> Callable[..., tuple[str, bytes]]:
    """``call(method, path, body=None, query="", **headers)`` -> (status, body), straight into
    ``app`` with nginx's forwarding headers."""

    def call(method: str, path: str, body: Any = None, query: str = "", **headers: str):
        data = json.dumps(body).encode() if body is not None else b""
        environ = {
            "REQUEST_METHOD": method,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "SERVER_NAME": "api",
            "SERVER_PORT": "8000",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(data),
            "wsgi.errors": sys.stderr,
            "wsgi.version": (1, 0),
            "wsgi.multithread": True,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
            "CONTENT_LENGTH": str(len(data)),
            **FORWARDED,
            **{f"HTTP_{k.upper()}": v for k, v in headers.items()},
        }
        if body is not None:
            environ["CONTENT_TYPE"] = "application/json"
        status: list[str] = []
        payload = b"".join(app(environ, lambda s, _h, _e=None: status.append(s)))
        return status[0], payload

    return call


def make_client(database_url: str | None, metrics: bool = True) -> Callable[..., tuple[str, bytes]]:
    """A WSGI caller for a fresh app on ``database_url`` (default: a fresh SQLite file),
    migrated like the image does."""
    return wsgi_caller(make_app(database_url, metrics))


def workload(
    kind: str, database_url: str | None = None, metrics: bool = True
) -> Callable[[], None]:
    call = make_client(database_url, metrics)
    # Unique per run: a database given with --database-url may hold earlier runs' users.
    token = uuid.uuid4().hex[:8]
    owner = domain.user_body("Owner", f"owner-{token}@example.com")
    _, body = call("POST", domain.USERS_PATH, owner)
    auth = {"authorization": f"Bearer {json.loads(body)['api_key']}"}
    ids = []
    for i in range(25):
        resource = domain.resource_body(f"item {i}", public=True)
        _, body = call("POST", domain.RESOURCES_PATH, resource, **auth)
        ids.append(json.loads(body)["id"])
    emails = (f"user-{token}-{n}@example.com" for n in itertools.count())
    one_resource = domain.resource_url(ids[0])

    def one() -> None:
        if kind == "get":
            status, _ = call("GET", one_resource)
        elif kind == "post":
            status, _ = call("POST", domain.USERS_PATH, domain.user_body("Bench", next(emails)))
        else:
            status, _ = call("GET", domain.RESOURCES_PATH, query="limit=20")
        if not status.startswith("20"):
            raise SystemExit(f"{kind}: unexpected {status}")

    return one


def cpu_ms(kind: str, n: int, database_url: str | None, metrics: bool) -> float:
    one = workload(kind, database_url, metrics)
    for _ in range(200):  # warm caches (statement cache, schema, imports)
        one()
    best = float("inf")
    for _ in range(5):
        started = time.process_time()
        for _ in range(n):
            one()
        best = min(best, (time.process_time() - started) / n)
    return best * 1000


def instructions(kind: str, n: int, database_url: str | None, metrics: bool) -> int:
    if not shutil.which("valgrind"):
        raise SystemExit("--instructions needs valgrind (apt-get install valgrind)")

    def total(requests: int) -> int:
        cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
        cmd += [sys.executable, __file__, "--run", kind, "--n", str(requests)]
        cmd += ["--metrics", "on" if metrics else "off"]
        if database_url:
            cmd += ["--database-url", database_url]
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stderr
        return int(re.search(r"Collected : (\d+)", out).group(1))  # type: ignore[union-attr]

    return round((total(5 * n) - total(n)) / (4 * n))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kinds", nargs="*", metavar="KIND", help=f"any of {', '.join(KINDS)}")
    parser.add_argument("--instructions", action="store_true", help="count with callgrind")
    parser.add_argument("--n", type=int, default=None, help="requests per batch")
    parser.add_argument(
        "--database-url", help="DATABASE_URL to run on (default: a throwaway SQLite file)"
    )
    parser.add_argument(
        "--metrics",
        choices=("on", "off", "both"),
        default="on",
        help="METRICS_ENABLED (default on, as in the image); both: each, and the difference",
    )
    parser.add_argument("--run", choices=KINDS, help=argparse.SUPPRESS)  # one valgrind pass
    args = parser.parse_args()
    if unknown := set(args.kinds) - set(KINDS):
        parser.error(f"unknown kind(s): {', '.join(sorted(unknown))}")
    url = args.database_url
    if args.run:
        one = workload(args.run, url, args.metrics == "on")
        for _ in range(args.n):
            one()
        return
    if args.metrics == "both" and not args.instructions:
        # One process imports prometheus_client once, in the mode of the first app: each
        # setting gets a process of its own.
        for setting in ("on", "off"):
            argv = [arg for arg in sys.argv[1:] if arg not in ("--metrics", "both")]
            subprocess.run([sys.executable, __file__, *argv, "--metrics", setting], check=True)
        return
    settings = (True, False) if args.metrics == "both" else (args.metrics == "on",)
    for kind in args.kinds or KINDS:
        figures = {}
        for metrics in settings:
            label = f"{kind} (metrics {'on' if metrics else 'off'})"
            if args.instructions:
                figures[metrics] = instructions(kind, args.n or 100, url, metrics)
                print(f"{label}: {figures[metrics]:,} instructions per request", flush=True)
            else:
                ms = cpu_ms(kind, args.n or 2000, url, metrics)
                print(f"{label}: {ms:.3f} ms of CPU per request", flush=True)
        if len(figures) == 2:
            on, off = figures[True], figures[False]
            print(f"{kind}: metrics cost {on - off:,} instructions, {(on - off) / off:.1%}")


if __name__ == "__main__":
    main()
