"""Scenario 6: the secrets (the database password, the TLS private key) appear in no `docker
inspect` output (services, secrets, nodes, every container in every node), in no container's
environment and in no image layer; and, as the positive control, the same search finds them in
the files under /run/secrets inside the tasks (readable by the service's uid only).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.containers import API_IMAGE, NGINX_IMAGE, POSTGRES_IMAGE, Tls
from tests.support.swarm import Swarm, Task, run


def secret_values(db_password: Path, tls: Tls) -> dict[str, str]:
    """What to look for: the password, and one line of the key's base64 body."""
    key_lines = (tls.directory / "server.key").read_text().splitlines()
    body = [line for line in key_lines if line and not line.startswith("-----")]
    return {"db_password": db_password.read_text().strip(), "tls_key": body[0]}


def found(values: dict[str, str], text: str | bytes) -> set[str]:
    """The names of the secrets whose value occurs in `text`."""
    data = text.encode() if isinstance(text, str) else text
    return {name for name, value in values.items() if value.encode() in data}


def search_stream(values: dict[str, str], args: list[str]) -> tuple[set[str], int]:
    """Search a command's (large) output as it streams; the secrets found and the bytes read."""
    needles = {name: value.encode() for name, value in values.items()}
    overlap = max(len(v) for v in needles.values())
    hits: set[str] = set()
    total = 0
    carry = b""
    with subprocess.Popen(args, stdout=subprocess.PIPE) as process:
        assert process.stdout is not None
        while chunk := process.stdout.read(1 << 20):
            total += len(chunk)
            window = carry + chunk
            hits |= {name for name, needle in needles.items() if needle in window}
            carry = window[-overlap:]
    assert process.returncode == 0, f"{args} failed"
    return hits, total


@pytest.mark.timeout(180)
def test_secrets_only_under_run_secrets(
    swarm: Swarm, db_password: Path, tls: Tls, figures: dict[str, Any]
) -> None:
    values = secret_values(db_password, tls)
    leaks: dict[str, set[str]] = {}

    def check(where: str, text: str | bytes) -> None:
        if hits := found(values, text):
            leaks[where] = hits

    manager = swarm.manager
    services = manager.docker("service", "ls", "-q").stdout.split()
    check("docker service inspect", manager.docker("service", "inspect", *services).stdout)
    secrets = manager.docker("secret", "ls", "-q").stdout.split()
    check("docker secret inspect", manager.docker("secret", "inspect", *secrets).stdout)
    node_names = [node.name for node in swarm.nodes]
    check("docker inspect (node containers)", run(["docker", "inspect", *node_names]).stdout)
    containers = 0
    for node in swarm.nodes:
        ids = node.docker("ps", "-aq").stdout.split()
        containers += len(ids)
        check(
            f"docker inspect (containers in {node.hostname})", node.docker("inspect", *ids).stdout
        )
        for container in node.docker("ps", "-q").stdout.split():
            env = node.docker("exec", container, "env").stdout
            check(f"environment of {container} in {node.hostname}", env)
        images = node.docker("images", "-q").stdout.split()
        check(f"docker image inspect in {node.hostname}", node.docker("inspect", *images).stdout)
        for image in set(images):
            history = node.docker("history", "--no-trunc", image).stdout
            check(f"docker history {image} in {node.hostname}", history)
    # Every layer of the images the stack runs, as a registry would hold them.
    layer_hits, layer_bytes = search_stream(
        values,
        ["docker", "exec", swarm.db_node.name, "docker", "save", API_IMAGE, NGINX_IMAGE,
         POSTGRES_IMAGE],
    )  # fmt: skip
    if layer_hits:
        leaks["image layers (docker save)"] = layer_hits

    # The positive control: the same search finds each value where it belongs, and only the
    # service's uid may read it.
    controls: dict[str, str] = {}
    for service, secret, owner in (
        ("api", "db_password", "10001"),
        ("db", "db_password", "10002"),
        ("nginx", "tls_key", "10001"),
    ):
        task: Task = swarm.running(service)[0]
        content = swarm.task_exec(task, "cat", f"/run/secrets/{secret}").stdout
        assert secret in found(values, content), f"{secret} not found in {service}'s task"
        mode = swarm.task_exec(task, "stat", "-c", "%a %u", f"/run/secrets/{secret}").stdout
        controls[f"{service}:/run/secrets/{secret}"] = mode.strip()
        assert mode.split() == ["400", owner], f"{service}'s {secret}: mode and owner {mode}"

    figures["6. secrets"] = {
        "containers_inspected": containers,
        "image_bytes_searched": layer_bytes,
        "found_under_run_secrets": controls,
        "leaks": {where: sorted(hits) for where, hits in leaks.items()},
    }
    assert not leaks, f"secret values found outside /run/secrets: {leaks}"
