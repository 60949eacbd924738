"""`DATABASE=postgres make up`, exactly as the README gives it, in a compose project of its own."""

from __future__ import annotations

import json
import os
import subprocess

from tests.support.containers import REPO, RUN_ID, free_port
from tests.support.domain import USERS_PATH, user_body
from tests.support.http import http_get, new_session
from tests.support.limits import Limits, applied_limits, compose_config
from tests.support.waiting import wait_until


def test_database_postgres_make_up_runs_the_stack_on_postgresql(docker_client):
    project = f"flask-stack-itest-{RUN_ID}"
    https_port = free_port()
    env = {
        **os.environ,
        "DATABASE": "postgres",
        # Not the developer's stack: its own project, ports and image tag.
        "COMPOSE_PROJECT_NAME": project,
        "HTTPS_PORT": str(https_port),
        "HTTP_PORT": str(free_port()),
        "IMAGE_TAG": "itest",
    }

    def make(*targets: str) -> str:
        done = subprocess.run(
            ["make", *targets], cwd=REPO, env=env, capture_output=True, text=True, timeout=900
        )
        assert done.returncode == 0, f"make {' '.join(targets)}:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    try:
        make("up")
        base = f"https://localhost:{https_port}"
        ca = str(REPO / "certs" / "ca.pem")
        ready = wait_until(
            lambda: http_get(f"{base}/readyz", ca=ca).status_code == 200, 60, what="/readyz"
        )
        assert ready
        with new_session(ca) as session:
            created = session.post(
                base + USERS_PATH,
                json=user_body("On Postgres"),
                timeout=10,
            )
        assert created.status_code == 201, created.text

        services = {
            json.loads(line)["Service"]
            for line in subprocess.run(
                ["docker", "compose", "-p", project, "ps", "--format", "json"],
                cwd=REPO,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.splitlines()
        }
        assert services == {"api", "nginx", "db"}
        assert "db" in make("ps")

        # The API found its password in the secret file: no container's environment holds it.
        password = (REPO / "secrets" / "db_password").read_text().strip()
        containers = docker_client.containers.list(
            filters={"label": f"com.docker.compose.project={project}"}
        )
        for container in containers:
            assert not any(password in entry for entry in container.attrs["Config"]["Env"])

        # Each container runs with its service's limits as compose resolves them.
        config = compose_config("compose.yaml", "compose.postgres.yaml", env=env)["services"]
        for container in containers:
            service = container.labels["com.docker.compose.service"]
            assert applied_limits(container.attrs) == Limits.of(config[service]), service
    finally:
        subprocess.run(
            [
                "docker",
                "compose",
                "-p",
                project,
                "-f",
                "compose.yaml",
                "-f",
                "compose.postgres.yaml",
                "down",
                "--volumes",
                "--remove-orphans",
            ],
            cwd=REPO,
            env=env,
            capture_output=True,
            timeout=300,
        )
