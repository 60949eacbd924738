"""`make dev`: a saved source file changes the next responses within seconds, without a rebuild.

The stack runs as `make dev` and `DATABASE=postgres make dev` run it (compose.yaml, on PostgreSQL
compose.postgres.yaml, then compose.dev.yaml; its own project, ports and image tag), with
DEV_SOURCE_DIR pointing at a copy of services/api/src, which the test edits.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid

import pytest

from tests.support.containers import REPO, RUN_ID, free_port
from tests.support.http import http_get
from tests.support.waiting import wait_until

FILES = {
    "sqlite": ["-f", "compose.yaml", "-f", "compose.dev.yaml"],
    "postgres": ["-f", "compose.yaml", "-f", "compose.postgres.yaml", "-f", "compose.dev.yaml"],
}


@pytest.mark.parametrize("database", sorted(FILES))
def test_an_edited_source_file_is_served_without_a_rebuild(tmp_path, database):
    source = tmp_path / "src"
    shutil.copytree(REPO / "services" / "api" / "src", source)
    https_port = free_port()
    project = f"flask-stack-itest-dev-{database}-{RUN_ID}"
    env = {
        **os.environ,
        "COMPOSE_PROJECT_NAME": project,
        "HTTPS_PORT": str(https_port),
        "HTTP_PORT": str(free_port()),
        "IMAGE_TAG": "itest",
        "DEV_SOURCE_DIR": str(source),
        "COMPOSE_BAKE": "false",
    }

    def compose(*args: str, timeout: int = 600) -> str:
        done = subprocess.run(
            ["docker", "compose", *FILES[database], *args],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert done.returncode == 0, f"compose {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    subprocess.run(
        ["make", "certs", "secrets"], cwd=REPO, check=True, capture_output=True, timeout=120
    )
    ca = str(REPO / "certs" / "ca.pem")
    url = f"https://localhost:{https_port}/healthz"
    try:
        compose("up", "--detach", "--build", "--wait")
        assert http_get(url, ca=ca).json() == {"status": "ok"}
        ready = f"https://localhost:{https_port}/readyz"
        assert http_get(ready, ca=ca).status_code == 200  # the database is there and migrated
        url_in_api = compose("exec", "-T", "api", "printenv", "DATABASE_URL").strip()
        assert url_in_api.startswith("postgresql" if database == "postgres" else "sqlite")

        token = uuid.uuid4().hex
        health = source / "api" / "routes" / "health.py"
        text = health.read_text()
        assert 'return jsonify(status="ok")' in text
        health.write_text(
            text.replace('return jsonify(status="ok")', f'return jsonify(status="{token}")')
        )

        served = wait_until(
            lambda: http_get(url, ca=ca).json().get("status") == token,
            30,
            interval=0.5,
            what="the edited /healthz to be served",
        )
        assert served
    finally:
        compose("down", "--volumes", "--remove-orphans", timeout=300)
