"""The suites' fixtures (a pytest plugin): the production images, run as in production, over HTTPS.

Both suites' conftest.py import them from here, hooks included.

Everything is session-scoped so the images are built and the stack started once per run:

``docker_client``
    docker-py client. With no Docker engine every test FAILS with a message saying so; the suite
    never skips.
``images``
    ``services/api/`` and ``nginx/`` built with testcontainers' ``DockerImage`` (docker-py, the
    legacy builder, layer cache reused) and tagged ``flask-stack-api:test`` and
    ``flask-stack-nginx:test``. The images are kept after the run so the next build is quick.
``network``
    a private bridge network (testcontainers ``Network``) that every container joins. (compose
    splits it in two, the API's side ``internal``; one network here, because the dedicated APIs
    of the buffering and graceful-stop tests publish a port, which an internal network cannot.)
``tls``
    a CA and an ECDSA server certificate for ``localhost``/``127.0.0.1`` made with trustme for
    this run only, in a temporary directory mounted read-only at ``/etc/nginx/certs``. The key is
    mode 0600 and readable by the uid nginx runs as: when the suite runs as root the files are
    chowned to 10001 (the images' user); otherwise nginx runs as the suite's own uid:gid.
``launcher``
    starts hardened containers exactly as production runs them (read-only root filesystem, a
    tmpfs at /tmp, ``cap_drop ALL``, ``no-new-privileges``, a non-root user, and each service's
    memory limit, process limit and CPU weight read from the compose files: support/limits.py),
    with ports published on 127.0.0.1 only (free host ports picked per run), and removes every
    container, volume and network it made at the end of the session, whatever happened.
``db_password``
    a random database password for the run, in a file both the database and the API can read.
``stack``
    the API (network alias ``api``, a Docker volume at /data, 3 gunicorn workers) behind an nginx
    whose rate limits are switched off so that no test can be throttled by another. Ready when
    ``/healthz`` and ``/readyz`` answer 200 through nginx over HTTPS, polled with a deadline.
    Tests that stop or recreate the API restore it (``Stack.ensure_running``) before they end.
``postgres_stack``
    the same on PostgreSQL (the project's image, alias ``db``, password from ``db_password``).
    The API contract and persistence modules run every test on both (``DATABASES``).

Tests that need their own containers (strict rate limits, a one-worker API for the buffering test,
a graceful-stop victim) start them with ``launcher`` in their module.

When a test fails, the last lines of every container's log are attached to its report.
"""

from __future__ import annotations

import os

# Set before testcontainers is imported: its configuration is read at import time. This host has
# a /.dockerenv, so testcontainers would aim at the bridge gateway; the reaper (Ryuk) image cannot
# be pulled here, so the fixtures remove what they start themselves. Harmless elsewhere.
os.environ.setdefault("TESTCONTAINERS_HOST_OVERRIDE", "127.0.0.1")
os.environ.setdefault("TESTCONTAINERS_CONNECTION_MODE", "docker_host")
os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest
import trustme
from testcontainers.core.image import DockerImage
from testcontainers.core.network import Network

from .containers import (
    _LAUNCHERS,
    API_IMAGE,
    DEFAULT_TEST_TIMEOUT,
    LABELS,
    NGINX_IMAGE,
    POSTGRES_IMAGE,
    REPO,
    Launcher,
    Stack,
    Tls,
    git_revision,
    tail,
    write_db_secret,
)


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    problem = None
    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:
        problem = f"{type(exc).__name__}: {exc}"
    if problem is not None:
        pytest.fail(
            "NO DOCKER: the integration suite needs a running Docker engine and could not reach "
            f"one ({problem}). Start Docker (on this project's machines `make bootstrap` "
            "installs and starts it) and run the suite again.",
            pytrace=False,
        )
    yield client
    client.close()


def _build(
    path: Path, tag: str, buildargs: dict[str, str] | None = None, dockerfile: str = "Dockerfile"
) -> None:
    """Build the image ``tag`` from the context ``path`` (its ``dockerfile``, relative to it)."""
    if not (path / dockerfile).is_file():
        pytest.fail(f"{path / dockerfile} does not exist: cannot build {tag}", pytrace=False)
    try:
        DockerImage(
            path=str(path),
            tag=tag,
            dockerfile_path=dockerfile,
            clean_up=False,
            forcerm=True,
            buildargs=buildargs or {},
        ).build()
    except docker.errors.BuildError as exc:
        log = "".join(
            str(chunk.get("stream") or chunk.get("error") or "") for chunk in exc.build_log
        )
        pytest.fail(f"building {tag} from {path} failed: {exc}\n{tail(log, 80)}", pytrace=False)


@pytest.fixture(scope="session")
def images(docker_client: docker.DockerClient) -> dict[str, str]:
    """Build the three images once (layer cache reused); they are kept for the next run."""
    # The revision the API reports in api_build_info, as `make images` passes it.
    _build(REPO / "services" / "api", API_IMAGE, {"GIT_REVISION": git_revision()})
    _build(REPO / "nginx", NGINX_IMAGE)
    _build(REPO / "postgres", POSTGRES_IMAGE)
    return {"api": API_IMAGE, "nginx": NGINX_IMAGE, "postgres": POSTGRES_IMAGE}


@pytest.fixture(scope="session")
def network(docker_client: docker.DockerClient) -> Iterator[Network]:
    net = Network(docker_network_kw={"labels": dict(LABELS)}).create()
    yield net
    net.remove()


@pytest.fixture(scope="session")
def tls() -> Iterator[Tls]:
    """A per-run CA and server certificate; the key readable only by nginx's uid."""
    directory = Path(tempfile.mkdtemp(prefix="flask-stack-itest-certs-"))
    ca = trustme.CA(key_type=trustme.KeyType.ECDSA, organization_name="flask-stack itest CA")
    leaf = ca.issue_cert("localhost", "127.0.0.1", key_type=trustme.KeyType.ECDSA)
    yield Tls.write(
        directory,
        ca_pem=ca.cert_pem.bytes(),
        chain_pem=b"".join(blob.bytes() for blob in leaf.cert_chain_pems),
        key_pem=leaf.private_key_pem.bytes(),
    )
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def db_password() -> Iterator[Path]:
    """A random database password for this run, in a private temporary directory."""
    directory = Path(tempfile.mkdtemp(prefix="flask-stack-itest-secrets-"))
    yield write_db_secret(directory)
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def launcher(
    docker_client: docker.DockerClient,
    images: dict[str, str],
    network: Network,
    tls: Tls,
    db_password: Path,
) -> Iterator[Launcher]:
    launch = Launcher(docker_client, network, tls, db_password)
    _LAUNCHERS.append(launch)
    try:
        yield launch
    finally:
        launch.cleanup()


@pytest.fixture(scope="session")
def sqlite_stack(launcher: Launcher, tls: Tls) -> Iterator[Stack]:
    """The shared stack: API (alias `api`, SQLite) + nginx with rate limits off."""
    api = launcher.api(
        "api",
        aliases=("api",),
        env={"GUNICORN_WORKERS": "3", "GUNICORN_GRACEFUL_TIMEOUT": "20"},
    )
    nginx = launcher.nginx(
        "nginx",
        upstream="api:8000",
        env={"RATE_LIMIT_ENABLED": "false", "CONN_LIMIT_PER_IP": "1000"},
    )
    main = Stack(api=api, nginx=nginx, ca=tls.ca)
    main.wait_ready(timeout=120)
    yield main
    for session in main.sessions:
        session.close()


@pytest.fixture(scope="session")
def postgres_stack(launcher: Launcher, tls: Tls) -> Iterator[Stack]:
    """The same stack on PostgreSQL: db (alias `db`) + API (alias `api-pg`) + nginx."""
    db = launcher.postgres("db", alias="db")
    api = launcher.api(
        "api-pg",
        aliases=("api-pg",),
        database="db",
        env={"GUNICORN_WORKERS": "3", "GUNICORN_GRACEFUL_TIMEOUT": "20"},
    )
    nginx = launcher.nginx(
        "nginx-pg",
        upstream="api-pg:8000",
        env={"RATE_LIMIT_ENABLED": "false", "CONN_LIMIT_PER_IP": "1000"},
    )
    view = Stack(api=api, nginx=nginx, ca=tls.ca, db=db)
    view.wait_ready(timeout=120)
    yield view
    for session in view.sessions:
        session.close()


@pytest.fixture(scope="session")
def stack(sqlite_stack: Stack) -> Stack:
    """The stack most tests use: the SQLite one."""
    return sqlite_stack


# The databases the API supports; modules whose tests must hold on each of them override `stack`
# with `@pytest.fixture(params=DATABASES)` and `on_database` (test_api_contract.py shows how).
DATABASES = ("sqlite", "postgres")


def on_database(request: pytest.FixtureRequest) -> Stack:
    """The session's stack on the database ``request.param`` names.

    By name rather than as an argument: a parametrized fixture that takes the fixture it
    overrides makes pytest set that one up again for every parameter.
    """
    return request.getfixturevalue(f"{request.param}_stack")


# --------------------------------------------------------------------------------------------
# Hooks


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Bound every test function's run time (fixture set-up, e.g. image builds, is not counted)."""
    for item in items:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(DEFAULT_TEST_TIMEOUT, func_only=True))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """On failure, attach the tail of every container's log to the test's report."""
    report = yield
    if report.failed and report.when in ("setup", "call"):
        for launch in _LAUNCHERS:
            for service in launch.services:
                if not service.exists:
                    continue
                try:
                    text = tail(service.logs(), 80)
                except Exception as exc:
                    text = f"(could not read logs: {exc!r})"
                report.sections.append((f"container log: {service.name}", text or "(empty)"))
    return report
