"""Fixtures of the adversarial suite: the integration suite's, reused, plus a few of its own.

The images, private network, per-run TLS certificates, `launcher` (hardened containers on
127.0.0.1 ports, removed at the end) and `stack` (API behind nginx with rate limits OFF and a
connection limit of 1000) come from tests/support/fixtures.py, imported here as in the
integration suite, so both build and run the stack the same way. Its hooks come along too: a
per-test time limit and the containers' logs attached to every failure.

Every local client reaches nginx from the same address (docker-proxy's), so all of them share one
rate-limit bucket: attacks that send a lot run against `stack` (limits off); the guessing-burst
test starts its own nginx with the image's default limits. Destructive drills (kill -9, SIGTERM,
restart) start their own API + nginx with `launcher` so that `stack` is never disturbed.

`figures` collects the numbers each attack measured; at the end of the session they are printed
and, when ADV_FIGURES is set, written there as JSON (docs/security.md quotes a real run).
"""

from __future__ import annotations

from typing import Any

from tests.support.figures import figures, print_figures  # noqa: F401  (fixture re-exported)
from tests.support.fixtures import (  # noqa: F401  (fixtures and hooks, re-exported)
    db_password,
    docker_client,
    images,
    launcher,
    network,
    pytest_collection_modifyitems,
    pytest_runtest_makereport,
    sqlite_stack,
    stack,
    tls,
)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    print_figures(terminalreporter, "adversarial figures", "ADV_FIGURES")
