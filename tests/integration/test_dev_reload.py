"""`make dev`: a saved source file changes the next responses within seconds, without a rebuild.

The stack runs as `make dev` runs it (compose.yaml + compose.dev.yaml, its own project, ports and
image tag) with DEV_SOURCE_DIR pointing at a copy of services/api/src, which the test edits.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid

from tests.support.containers import REPO, RUN_ID, free_port
from tests.support.http import http_get
from tests.support.waiting import wait_until

FILES = ["-f", "compose.yaml", "-f", "compose.dev.yaml"]


def test_an_edited_source_file_is_served_without_a_rebuild(tmp_path):
    source = tmp_path / "src"
    shutil.copytree(REPO / "services" / "api" / "src", source)
    https_port = free_port()
    project = f"flask-stack-itest-dev-{RUN_ID}"
    env = {
        **os.environ,
        "COMPOSE_PROJECT_NAME": project,
        "HTTPS_PORT": str(https_port),
        "HTTP_PORT": str(free_port()),
        "IMAGE_TAG": "itest",
        "DEV_SOURCE_DIR": str(source),
        "COMPOSE_BAKE": "false",
    }

    def compose(*args: str, timeout: int = 600) -> None:
        done = subprocess.run(
            ["docker", "compose", *FILES, *args],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert done.returncode == 0, f"compose {' '.join(args)}:\n{done.stdout}\n{done.stderr}"

    subprocess.run(["make", "certs"], cwd=REPO, check=True, capture_output=True, timeout=120)
    ca = str(REPO / "certs" / "ca.pem")
    url = f"https://localhost:{https_port}/healthz"
    try:
        compose("up", "--detach", "--build", "--wait")
        assert http_get(url, ca=ca).json() == {"status": "ok"}

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
