"""The containers' resource limits, read from the compose files: one definition for both.

compose.yaml, compose.postgres.yaml and compose.monitoring.yaml set each service's memory limit,
process limit and CPU weight (`mem_limit`, `pids_limit`, `cpu_shares`, each from a variable with a
default; docs/deploy.md#resource-limits). The suites start their own containers with the same
values, taken from `docker compose config` (the files merged, the variables resolved from the
environment and any .env, as `make up` would), never from numbers of their own.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]

# The files whose services the suites start containers of: the api and nginx (compose.yaml), db
# (compose.postgres.yaml); compose.monitoring.yaml's are checked against their compose containers.
COMPOSE_FILES = ("compose.yaml", "compose.postgres.yaml", "compose.monitoring.yaml")
SWARM_FILES = ("deploy/swarm/stack.yaml", "deploy/swarm/monitoring.yaml")
# The variables a limit is read from: API_MEM_LIMIT, DB_PIDS_LIMIT, PROMETHEUS_CPU_SHARES, ...
LIMIT_NAME = r"[A-Z_]+_(?:MEM_LIMIT|PIDS_LIMIT|CPU_SHARES)"
# What the stack files require, for `docker stack config` (no file is read).
SWARM_REQUIRED = {
    "API_IMAGE": "api:x",
    "NGINX_IMAGE": "nginx:x",
    "POSTGRES_IMAGE": "postgres:x",
    "PROMETHEUS_IMAGE": "prometheus:x",
    "ALERTMANAGER_IMAGE": "alertmanager:x",
    "SERVER_NAME": "example.com",
    "DB_PASSWORD_FILE": "/nonexistent",
    "TLS_CERT_FILE": "/nonexistent",
    "TLS_KEY_FILE": "/nonexistent",
}


@dataclass(frozen=True)
class Limits:
    memory: int  # bytes (HostConfig.Memory)
    pids: int  # processes and threads (HostConfig.PidsLimit)
    cpu_shares: int  # relative CPU weight under contention (HostConfig.CpuShares); no hard cap

    def run_kwargs(self) -> dict[str, Any]:
        """docker-py's `containers.run` arguments for these limits."""
        return {"mem_limit": self.memory, "pids_limit": self.pids, "cpu_shares": self.cpu_shares}

    @classmethod
    def of(cls, service: dict[str, Any]) -> Limits:
        return cls(
            memory=int(service["mem_limit"]),
            pids=int(service["pids_limit"]),
            cpu_shares=int(service["cpu_shares"]),
        )


def compose_config(*files: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """`docker compose -f ... config --format json`: the merged model, variables resolved."""
    args = ["docker", "compose"]
    for name in files:
        args += ["-f", name]
    done = subprocess.run(
        [*args, "config", "--format", "json"],
        cwd=REPO,
        env=env if env is not None else dict(os.environ),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(
            f"`{' '.join(args)} config` failed ({done.returncode}): {done.stderr.strip()}"
        )
    return json.loads(done.stdout)


@functools.cache
def compose_limits() -> dict[str, Limits]:
    """Each service's limits in the compose files, e.g. ``compose_limits()["api"].memory``."""
    services = compose_config(*COMPOSE_FILES)["services"]
    return {name: Limits.of(service) for name, service in services.items()}


def applied_limits(attrs: dict[str, Any]) -> Limits:
    """The limits a container runs with, from its `docker inspect` attributes."""
    host = attrs["HostConfig"]
    return Limits(memory=host["Memory"], pids=host["PidsLimit"] or 0, cpu_shares=host["CpuShares"])


def without_limit_variables(env: dict[str, str] | None = None) -> dict[str, str]:
    """`env` (default: this process's) without any limit variable: the files' defaults apply."""
    source = os.environ if env is None else env
    return {k: v for k, v in source.items() if not re.fullmatch(LIMIT_NAME, k)}


def swarm_config(*extra_files: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """`docker stack config` of the Swarm files (no swarm needed): the services as deployed, by
    default with the files' own defaults."""
    args = ["docker", "stack", "config"]
    for name in (*SWARM_FILES, *extra_files):
        args += ["-c", name]
    done = subprocess.run(
        args,
        cwd=REPO,
        env=env if env is not None else {**without_limit_variables(), **SWARM_REQUIRED},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(f"`{' '.join(args)}` failed: {done.stderr.strip()}")
    return yaml.safe_load(done.stdout)


def memory_bytes(text: str | int) -> int:
    """`512m`, `1g`, `536870912` (as compose and Swarm write a memory size) -> bytes."""
    match = re.fullmatch(r"(\d+)([kmg]?)b?", str(text).strip().lower())
    if match is None:
        raise ValueError(f"not a memory size: {text!r}")
    return int(match.group(1)) * 1024 ** " kmg".index(match.group(2) or " ")
