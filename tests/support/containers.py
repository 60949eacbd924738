"""The containers the suites run: images, hardened services, stacks.

Plain classes and constants; the pytest fixtures that create them live in fixtures.py.
"""

# fixtures.py sets the TESTCONTAINERS_* variables before anything imports testcontainers.

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors
import requests
from testcontainers.core.container import DockerContainer
from testcontainers.core.network import Network

from . import domain
from .http import HttpsClient, new_session
from .limits import Limits, compose_limits
from .waiting import Fatal, wait_until

REPO = Path(__file__).resolve().parents[2]
API_IMAGE = "flask-stack-api:test"
NGINX_IMAGE = "flask-stack-nginx:test"
POSTGRES_IMAGE = "flask-stack-postgres:test"
IMAGE_USER = "10001:10001"  # the uid:gid the API and nginx images run as
POSTGRES_USER = "10002:10002"  # and the PostgreSQL image
RUN_ID = uuid.uuid4().hex[:8]
LABELS = {"flask-stack.itest-run": RUN_ID}
# Paths that must answer 200 through nginx before the stack counts as ready.
READY_PATHS = ("/healthz", "/readyz")
DEFAULT_TEST_TIMEOUT = 240  # seconds per test function (fixture set-up has its own deadlines)


def git_revision() -> str:
    """The checkout's revision as the Makefile passes it to the API image (GIT_REV)."""
    done = subprocess.run(
        ["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO, capture_output=True, text=True
    )
    return done.stdout.strip() if done.returncode == 0 else "unknown"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now, to publish a container port on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --------------------------------------------------------------------------------------------
# Containers


class Service:
    """One hardened container, which a test may stop, restart or re-create with the same config."""

    def __init__(
        self,
        client: docker.DockerClient,
        name: str,
        image: str,
        *,
        network: Network,
        user: str,
        env: dict[str, str] | None = None,
        aliases: tuple[str, ...] = (),
        volumes: tuple[tuple[str, str, str], ...] = (),
        publish: tuple[int, ...] = (),
        limits: Limits | None = None,
    ) -> None:
        self.client = client
        self.name = name
        self.image = image
        self.network = network
        self.user = user
        self.env = dict(env or {})
        self.aliases = aliases
        self.volumes = volumes
        # Memory, process and CPU limits, as compose gives the same service (support/limits.py).
        self.limits = limits
        # Host ports are picked once, so they stay the same across restarts and re-creations.
        self.host_ports = {port: free_port() for port in publish}
        self._tc: DockerContainer | None = None
        self.last_logs = ""

    def start(self) -> Service:
        """Create and start a new container from the configuration."""
        tc = DockerContainer(
            self.image,
            name=self.name,
            env=dict(self.env),
            network=self.network,
            network_aliases=list(self.aliases) or None,
            user=self.user,
            read_only=True,
            cap_drop=["ALL"],
            security_opt=["no-new-privileges:true"],
            init=True,  # as compose.yaml: an init as PID 1 forwards signals to the server
            labels=dict(LABELS),
            **(self.limits.run_kwargs() if self.limits is not None else {}),
        )
        tc.with_tmpfs_mount("/tmp")
        for source, target, mode in self.volumes:
            tc.with_volume_mapping(source, target, mode)
        for port, host_port in self.host_ports.items():
            # docker-py's (host_ip, host_port) form: published on the loopback interface only.
            tc.ports[f"{port}/tcp"] = ("127.0.0.1", host_port)  # type: ignore[assignment]
        self._tc = tc
        tc.start()
        return self

    @property
    def container(self) -> Any:
        """The docker-py Container (attributes refreshed)."""
        assert self._tc is not None, f"{self.name} was never started"
        container = self._tc.get_wrapped_container()
        container.reload()
        return container

    @property
    def exists(self) -> bool:
        return self._tc is not None

    def status(self) -> str:
        return self.container.status

    def logs(self) -> str:
        if self._tc is None:
            return self.last_logs
        try:
            return self.container.logs(stdout=True, stderr=True).decode(errors="replace")
        except docker.errors.NotFound:
            return self.last_logs

    def stop(self, timeout: int = 30) -> None:
        """`docker stop`: SIGTERM, then SIGKILL after `timeout` seconds."""
        self.container.stop(timeout=timeout)

    def start_again(self) -> None:
        """`docker start` the existing (stopped) container."""
        self.container.start()

    def restart(self, timeout: int = 30) -> None:
        self.container.restart(timeout=timeout)

    def remove(self) -> None:
        """Remove the container (its named volumes stay)."""
        if self._tc is None:
            return
        self.last_logs = self.logs()
        with contextlib.suppress(docker.errors.NotFound):
            self._tc.get_wrapped_container().remove(force=True, v=True)
        self._tc = None

    def recreate(self) -> None:
        """Remove the container and start a fresh one from the same image and configuration."""
        self.remove()
        self.start()

    def ip(self) -> str:
        return self.container.attrs["NetworkSettings"]["Networks"][self.network.name]["IPAddress"]

    def exec(self, cmd: list[str], user: str = "") -> tuple[int, str]:
        code, output = self.container.exec_run(cmd, user=user)
        return code, output.decode(errors="replace")

    def host_port(self, port: int) -> int:
        return self.host_ports[port]

    def check_alive(self) -> None:
        """Raise Fatal (stop waiting) if the container has exited."""
        container = self.container
        if container.status in ("exited", "dead"):
            state = container.attrs["State"]
            raise Fatal(
                f"container {self.name} {container.status} (exit code {state.get('ExitCode')}):\n"
                + tail(self.logs(), 60)
            )


def tail(text: str, lines: int) -> str:
    return "\n".join(text.splitlines()[-lines:])


class Launcher:
    """Starts the suite's containers and volumes and removes all of them at the end."""

    def __init__(
        self, client: docker.DockerClient, network: Network, tls: Tls, db_password: Path
    ) -> None:
        self.client = client
        self.network = network
        self.tls = tls
        # The database password file, mounted where compose mounts its secret.
        self.db_secret = (str(db_password), "/run/secrets/db_password", "ro")
        self.services: list[Service] = []
        self.volumes: list[str] = []

    def volume(self, purpose: str) -> str:
        name = f"itest-{RUN_ID}-{purpose}"
        self.client.volumes.create(name=name, labels=dict(LABELS))
        self.volumes.append(name)
        return name

    def postgres(self, name: str, *, alias: str) -> Service:
        """A PostgreSQL container (network alias `alias`) with its own data volume."""
        volume = self.volume(f"{name}-data")
        service = Service(
            self.client,
            f"itest-{RUN_ID}-{name}",
            POSTGRES_IMAGE,
            network=self.network,
            user=POSTGRES_USER,
            env={"POSTGRES_PASSWORD_FILE": "/run/secrets/db_password"},
            aliases=(alias,),
            volumes=(
                (volume, "/var/lib/postgresql/data", "rw"),
                self.db_secret,
            ),
            limits=compose_limits()["db"],
        )
        self.services.append(service)
        return service.start()

    def api(
        self,
        name: str,
        *,
        env: dict[str, str] | None = None,
        aliases: tuple[str, ...] = (),
        publish: bool = False,
        database: str | None = None,
    ) -> Service:
        """An API container with its own data volume; `publish` exposes :8000 on 127.0.0.1.

        `database` is the network alias of a `postgres` container to use instead of SQLite.
        """
        volume = self.volume(f"{name}-data")
        volumes: tuple[tuple[str, str, str], ...] = ((volume, "/data", "rw"),)
        base_env = {"LOG_LEVEL": "info"}
        if database is not None:
            volumes += (self.db_secret,)
            base_env |= {
                "DATABASE_URL": f"postgresql+psycopg://api@{database}:5432/api",
                "DATABASE_PASSWORD_FILE": "/run/secrets/db_password",
            }
        service = Service(
            self.client,
            f"itest-{RUN_ID}-{name}",
            API_IMAGE,
            network=self.network,
            user=IMAGE_USER,
            env={**base_env, **(env or {})},
            aliases=aliases,
            volumes=volumes,
            publish=(8000,) if publish else (),
            limits=compose_limits()["api"],
        )
        self.services.append(service)
        return service.start()

    def nginx(self, name: str, *, upstream: str, env: dict[str, str] | None = None) -> Service:
        """An nginx in front of `upstream`, with the run's certificates, publishing 8443/8080."""
        service = Service(
            self.client,
            f"itest-{RUN_ID}-{name}",
            NGINX_IMAGE,
            network=self.network,
            user=self.tls.nginx_user,
            volumes=((str(self.tls.directory), "/etc/nginx/certs", "ro"),),
            publish=(8443, 8080),
            limits=compose_limits()["nginx"],
        )
        service.env = {
            "API_UPSTREAM": upstream,
            "SERVER_NAME": "localhost",
            "PUBLIC_HTTPS_PORT": str(service.host_port(8443)),
            **(env or {}),
        }
        self.services.append(service)
        return service.start()

    def stack(self, api: Service, nginx: Service, db: Service | None = None) -> Stack:
        """A Stack view of `nginx` in front of `api` (waits until it is ready)."""
        view = Stack(api=api, nginx=nginx, ca=self.tls.ca, db=db)
        view.wait_ready()
        return view

    def cleanup(self) -> None:
        errors = []
        for service in reversed(self.services):
            try:
                service.remove()
            except Exception as exc:  # keep removing the rest
                errors.append(f"{service.name}: {exc!r}")
        for volume in self.volumes:
            try:
                self.client.volumes.get(volume).remove(force=True)
            except docker.errors.NotFound:
                pass
            except Exception as exc:
                errors.append(f"volume {volume}: {exc!r}")
        if errors:
            raise RuntimeError("cleanup failed: " + "; ".join(errors))


# Every Launcher of the session, so the failure hook can print their containers' logs.
_LAUNCHERS: list[Launcher] = []


def write_db_secret(directory: Path) -> Path:
    """A random database password in ``directory/db_password``, for this run only; its path.

    The directory is private to the host user (0700) and the file readable by any uid (0644):
    the file alone is bind-mounted, with its own mode, and both the database (uid 10002) and the
    API (10001) must read it. Compose does the same with `secrets/` (see the Makefile).
    """
    directory.chmod(0o700)
    secret = directory / "db_password"
    secret.write_text(secrets.token_urlsafe(32) + "\n")
    secret.chmod(0o644)
    return secret


@dataclass
class Tls:
    directory: Path
    ca: Path  # the CA certificate clients trust (requests' verify=)
    nginx_user: str

    @classmethod
    def write(cls, directory: Path, *, ca_pem: bytes, chain_pem: bytes, key_pem: bytes) -> Tls:
        """Lay out ``ca.pem``, ``server.pem`` and ``server.key`` for the nginx container.

        The key is 0600 from creation on and, when running as root, owned by the image's uid,
        so only nginx can read it through the bind mount.
        """
        directory.chmod(0o755)  # the container user must be able to enter the directory
        ca = directory / "ca.pem"
        ca.write_bytes(ca_pem)
        chain = directory / "server.pem"
        chain.write_bytes(chain_pem)
        key = directory / "server.key"
        key.touch(mode=0o600)
        key.write_bytes(key_pem)
        for path in (ca, chain):
            path.chmod(0o644)
        if os.geteuid() == 0:
            uid, gid = (int(part) for part in IMAGE_USER.split(":"))
            os.chown(key, uid, gid)
            nginx_user = IMAGE_USER
        else:
            nginx_user = f"{os.getuid()}:{os.getgid()}"
        return cls(directory=directory, ca=ca, nginx_user=nginx_user)


@dataclass
class Stack(HttpsClient):
    """An nginx in front of an API, reached over HTTPS at https://localhost:<port>."""

    api: Service
    nginx: Service
    ca: Path
    # The PostgreSQL container, when the API does not use SQLite.
    db: Service | None = None
    sessions: list[requests.Session] = field(default_factory=list)

    @property
    def https_port(self) -> int:
        return self.nginx.host_port(8443)

    @property
    def http_port(self) -> int:
        return self.nginx.host_port(8080)

    @property
    def base_url(self) -> str:
        return f"https://localhost:{self.https_port}"

    @property
    def http_url(self) -> str:
        return f"http://localhost:{self.http_port}"

    def session(self) -> requests.Session:
        """A requests Session that verifies the server against the run's CA."""
        session = new_session(str(self.ca))
        self.sessions.append(session)
        return session

    def is_ready(self) -> bool:
        for service in (self.db, self.api, self.nginx):
            if service is not None:
                service.check_alive()
        for path in READY_PATHS:
            response = self.get(path, timeout=5)
            if response.status_code != 200:
                return False
        return True

    def wait_ready(self, timeout: float = 90) -> None:
        wait_until(self.is_ready, timeout, interval=0.3, what=f"{self.base_url} to be ready")

    def ensure_running(self) -> None:
        """Bring the database and the API back (start, or re-create if gone); wait until ready."""
        for service in (self.db, self.api):
            if service is None:
                continue
            if not service.exists:
                service.start()
            elif service.status() != "running":
                service.start_again()
        self.wait_ready()

    def create_user(self, name: str = "Test User", email: str | None = None) -> dict[str, Any]:
        """Sign up a user through this stack (support/domain.py)."""
        return domain.create_user(self, name, email)


def own_stack(launcher: Launcher, name: str, *, api_env: dict[str, str], nginx_env: dict[str, str]):
    """An API + nginx pair of a test's own (for drills that stop, kill or flood them)."""
    api = launcher.api(name, aliases=(name,), env=api_env)
    nginx = launcher.nginx(f"{name}-nginx", upstream=f"{name}:8000", env=nginx_env)
    return launcher.stack(api, nginx)
