"""What every part of the bench harness shares: where things are, the sample domain, logging, the
expected error, and a teardown that also runs on SIGTERM."""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
CERTS = ROOT / "certs"
# Own compose project and image tag, so a developer's `make up` (flask-stack, :dev) is untouched.
PROJECT = "flask-stack-bench"
IMAGE_TAG = "bench"
# The API's database (`--db`), as named in results and file names, and as printed in tables.
DATABASES = {"sqlite": "SQLite", "postgres": "PostgreSQL"}
# Written by `make secrets`; compose.postgres.yaml mounts it into the api and db containers.
DB_PASSWORD_FILE = ROOT / "secrets" / "db_password"

# The sample domain's paths and bodies, from tests/support/domain.py like the test suites': it is
# the one file besides the API's own that changes with the resource. The bench runs as scripts
# (`python bench/run.py`, `python bench/inprocess.py`), so only bench/ is on sys.path: the
# repository root is added here, the one place, and every part imports `domain` from this module.
sys.path.insert(0, str(ROOT))
from tests.support import domain as domain  # noqa: E402  (re-exported)


def log(message: str) -> None:
    """Progress on stderr, so stdout carries only the report."""
    print(f"==> bench: {message}", file=sys.stderr, flush=True)


class BenchError(Exception):
    """A clear, expected failure (missing tool, stack did not start, ...)."""


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
