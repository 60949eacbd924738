"""Image sizes of the :bench images and the time of a code-only rebuild of the API image."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from common import IMAGE_TAG, PROJECT, ROOT, BenchError
from stack import docker_inspect

# A tag of its own, so the rebuild never replaces the :bench images the run measured.
REBUILD_TAG = "bench-rebuild"


def image_size_mb(ref: str) -> float | None:
    try:
        return round(int(docker_inspect(ref, "{{.Size}}")) / 1e6, 1)
    except subprocess.CalledProcessError:
        return None


def image_summary(database: str) -> dict[str, Any]:
    """Sizes and short ids of the :bench images: api, nginx, and db on PostgreSQL."""
    images = {"api": "flask-stack-api", "nginx": "flask-stack-nginx"}
    if database == "postgres":
        images["db"] = "flask-stack-postgres"
    summary: dict[str, Any] = {}
    for name, repository in images.items():
        summary[f"{name}_mb"] = image_size_mb(f"{repository}:{IMAGE_TAG}")
        # The image ids tell whether two runs measured the same code.
        summary[f"{name}_id"] = docker_inspect(f"{repository}:{IMAGE_TAG}", "{{.Id}}")[7:19]
    return summary


def measure_rebuild(env: dict[str, str]) -> dict[str, Any]:
    """Time a rebuild of the API image after a code-only change, in a copy of its context."""
    with tempfile.TemporaryDirectory(prefix="bench-rebuild-") as tmp:
        context = Path(tmp) / "api"
        shutil.copytree(
            ROOT / "services" / "api",
            context,
            ignore=shutil.ignore_patterns(".venv", "__pycache__", ".pytest_cache", "var"),
        )
        compose_file = Path(tmp) / "compose.yaml"
        compose_file.write_text(
            "services:\n"
            "  api:\n"
            f"    build: {{context: {context}, args: {{BASE_IMAGE: "
            f"'{env.get('BASE_IMAGE', 'debian:trixie-slim')}'}}}}\n"
            f"    image: flask-stack-api:{REBUILD_TAG}\n"
            "    pull_policy: build\n"
        )
        cmd = ["docker", "compose", "-p", f"{PROJECT}-rebuild", "-f", str(compose_file)]
        cmd += ["build", "api"]

        def timed_build() -> float:
            started = time.monotonic()
            out = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if out.returncode != 0:
                raise BenchError(f"rebuild failed: {out.stderr.strip()[-1500:]}")
            return round(time.monotonic() - started, 2)

        try:
            unchanged = timed_build()  # same content as the :bench image: cache only
            target = context / "src" / "api" / "__init__.py"
            with target.open("a") as f:
                f.write(f"\n# bench: code-only change {uuid.uuid4().hex}\n")
            changed = timed_build()
        finally:
            subprocess.run(
                ["docker", "image", "rm", f"flask-stack-api:{REBUILD_TAG}"], capture_output=True
            )
    return {
        "method": "docker compose build api, copy of services/api with one line appended to "
        "src/api/__init__.py (build cache warm)",
        "no_change_s": unchanged,
        "code_change_s": changed,
    }
