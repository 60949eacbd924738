"""The Swarm suite (issue 14, "The proof"): deploy/swarm/stack.yaml on a 3-node Docker-in-Docker
swarm built on this machine (tests/support/swarm.py), then the scenarios, in file order:

- test_a_limits.py        0. each service and task has the stack file's memory and process limits
- test_a_spread.py        1. replicas on several nodes; every node's nginx reaches all of them
- test_b_secrets.py       6. secrets in no inspect output, environment or image layer
- test_c_migrations.py    5. several migration runs at once: exactly one applies the revisions
- test_d_rolling_update.py 2. rolling update under open-loop load: 0 failed requests
- test_e_rollback.py      3. an update that never gets healthy is rolled back: 0 failed requests
- test_f_node_failure.py  4. a worker node killed under load: a short failure window, no write lost
- test_g_monitoring.py    7. (issue 16) monitoring.yaml deployed with the stack: Prometheus scrapes
                             every API replica, found through tasks.api

The images come from the shared fixtures (tests/support/fixtures.py: flask-stack-api:test, ...),
the TLS certificate from its per-run CA, the database password from its per-run secret; the node
image (tests/swarm/node) is built here. `swarm` is session-scoped: one swarm for all scenarios,
removed at the end whatever happened. On a failure, what the swarm says (nodes, services, every
task with its error, the services' logs) is attached to the report. No Docker: every test fails.
`figures` are printed at the end (SWARM_FIGURES=path also writes them as JSON).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.support import fixtures as shared
from tests.support.containers import API_IMAGE, NGINX_IMAGE, POSTGRES_IMAGE, Tls
from tests.support.figures import figures, print_figures  # noqa: F401  (fixture re-exported)
from tests.support.swarm import NODE_DIR, NODE_IMAGE, Endpoint, Swarm

# Rate limits raised for the load tests: every local client reaches nginx from the same address
# (docker-proxy's), so they all share one bucket.
LOAD_LIMITS = {
    "RATE_LIMIT_API": "2000r/s",
    "RATE_LIMIT_API_BURST": "2000",
    "RATE_LIMIT_AUTH": "600r/m",
    "RATE_LIMIT_AUTH_BURST": "100",
    "CONN_LIMIT_PER_IP": "1000",
}

# The shared fixtures and hook this suite uses (tests/support/fixtures.py documents them).
docker_client = shared.docker_client
images = shared.images
tls = shared.tls
db_password = shared.db_password
pytest_collection_modifyitems = shared.pytest_collection_modifyitems

_SWARMS: list[Swarm] = []


@pytest.fixture(scope="session")
def swarm(
    docker_client: docker.DockerClient,
    images: dict[str, str],
    tls: Tls,
    db_password: Path,
) -> Iterator[Swarm]:
    """A 3-node swarm (node1 manager + database, node2 and node3 workers) running the stack."""
    shared._build(NODE_DIR, NODE_IMAGE)
    cluster = Swarm()
    _SWARMS.append(cluster)
    try:
        cluster.start(3)
        cluster.load_images([API_IMAGE, NGINX_IMAGE], cluster.nodes)
        cluster.load_images([POSTGRES_IMAGE], [cluster.db_node])
        manager = cluster.manager
        files = {
            "DB_PASSWORD_FILE": cluster.copy_into(manager, db_password, "db_password"),
            "TLS_CERT_FILE": cluster.copy_into(manager, tls.directory / "server.pem", "tls.pem"),
            "TLS_KEY_FILE": cluster.copy_into(manager, tls.directory / "server.key", "tls.key"),
        }
        cluster.deploy(
            API_IMAGE=API_IMAGE,
            NGINX_IMAGE=NGINX_IMAGE,
            POSTGRES_IMAGE=POSTGRES_IMAGE,
            SERVER_NAME="localhost",
            # The port nginx publishes on each node; each node container publishes it on its own
            # 127.0.0.1 port here (redirects name 8443, which only matters to the redirect test
            # of the integration suite).
            HTTPS_PORT="8443",
            HTTP_PORT="8080",
            **files,
            **LOAD_LIMITS,
        )
        cluster.wait_running("api", 3, timeout=240)
        cluster.wait_ready(tls.ca, timeout=120)
        yield cluster
    except BaseException:
        print(cluster.diagnostics())
        raise
    finally:
        _SWARMS.remove(cluster)
        cluster.cleanup()


@pytest.fixture(scope="session")
def endpoints(swarm: Swarm, tls: Tls) -> list[Endpoint]:
    """Each node's nginx over HTTPS on its own 127.0.0.1 port (node1, node2, node3)."""
    return [swarm.endpoint(node, tls.ca) for node in swarm.nodes]


@pytest.fixture(scope="session")
def scratch() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="flask-stack-swarm-"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """On failure, attach what the swarm says (services, tasks and their errors, logs)."""
    report = yield
    if report.failed and report.when in ("setup", "call"):
        for cluster in _SWARMS:
            try:
                text = cluster.diagnostics()
            except Exception as exc:
                text = f"(could not ask the swarm: {exc!r})"
            report.sections.append(("what the swarm says", text))
    return report


def pytest_terminal_summary(terminalreporter: Any) -> None:
    print_figures(terminalreporter, "swarm figures", "SWARM_FIGURES")
