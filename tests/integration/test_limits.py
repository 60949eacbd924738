"""Resource limits: every container of every compose file, profile and Swarm stack file has a
memory limit and a process limit, each from a variable, and a CPU weight rather than a hard cap
(docs/deploy.md#resource-limits); the suite's own containers run with the compose values (one
definition: support/limits.py reads them from the compose files); the kernel enforces them.

The compose stack's containers (`make up`, `MONITORING=1 make up`) are checked where those stacks
run: test_make_up_postgres.py and test_monitoring.py. The OOM drill is test_oom.py.
"""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.support.containers import REPO
from tests.support.http import http_get
from tests.support.limits import (
    LIMIT_NAME,
    SWARM_FILES,
    SWARM_REQUIRED,
    Limits,
    applied_limits,
    compose_config,
    compose_limits,
    memory_bytes,
    swarm_config,
    without_limit_variables,
)
from tests.support.waiting import wait_until

# Every way the compose files are combined (the Makefile's DATABASE / MONITORING switches, `make
# dev`, `make bench`, production), each with the variables its files require.
PROD_ENV = {
    "API_IMAGE": "api:x",
    "NGINX_IMAGE": "nginx:x",
    "POSTGRES_IMAGE": "postgres:x",
    "SERVER_NAME": "example.com",
    "TLS_CERT_DIR": "/nonexistent",
    "DB_PASSWORD_FILE": "/nonexistent",
}
COMBINATIONS = {
    "make up": ("compose.yaml",),
    "DATABASE=postgres MONITORING=1 make up": (
        "compose.yaml",
        "compose.postgres.yaml",
        "compose.monitoring.yaml",
    ),
    "DATABASE=postgres make dev": ("compose.yaml", "compose.postgres.yaml", "compose.dev.yaml"),
    "make bench": ("compose.yaml", "bench/compose.bench.yaml"),
    "production": ("compose.prod.yaml", "compose.prod.postgres.yaml"),
    "production, monitoring": ("compose.prod.yaml", "compose.monitoring.yaml"),
}
# `${NAME:-default}` in a compose or stack file, for a limit's variable.
LIMIT_VARIABLE = re.compile(r"\$\{(" + LIMIT_NAME + r"):-([^}]+)\}")


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without any limit variable of the caller's, plus `extra`."""
    return {**without_limit_variables(), **PROD_ENV, **extra}


@pytest.mark.parametrize("files", COMBINATIONS.values(), ids=COMBINATIONS.keys())
def test_every_compose_service_has_memory_and_process_limits_and_no_cpu_cap(files):
    services = compose_config(*files, env=clean_env())["services"]
    assert services
    for name, service in services.items():
        limits = Limits.of(service)
        assert limits.memory >= 32 * 2**20, (name, limits)
        assert 16 <= limits.pids <= 1024, (name, limits)
        assert limits.cpu_shares in (256, 1024), (name, limits)
        # A weight under contention, never a hard CPU cap (docs/deploy.md says why).
        assert not service.get("cpus"), (name, service.get("cpus"))
        assert not service.get("cpu_quota"), (name, service.get("cpu_quota"))


def test_every_swarm_service_has_memory_and_process_limits():
    services = swarm_config()["services"]
    assert set(services) == {"db", "migrate", "api", "nginx", "prometheus", "alertmanager"}
    for name, service in services.items():
        limits = service["deploy"]["resources"]["limits"]
        assert memory_bytes(limits["memory"]) >= 32 * 2**20, (name, limits)
        assert 16 <= limits["pids"] <= 1024, (name, limits)
        assert "cpus" not in limits, (name, limits)


def test_each_limit_has_one_default_in_every_file():
    """A service's defaults are the same wherever it is defined: compose, production, Swarm."""
    files = sorted(REPO.glob("compose*.yaml")) + [REPO / f for f in SWARM_FILES]
    defaults: dict[str, set[str]] = {}
    for path in files:
        for name, default in LIMIT_VARIABLE.findall(path.read_text()):
            defaults.setdefault(name, set()).add(default)
    assert {name for name, values in defaults.items() if len(values) > 1} == set(), defaults
    # Swarm's process limits are numbers (pids-override.sh says why): the compose defaults.
    compose_files = ("compose.yaml", "compose.postgres.yaml", "compose.monitoring.yaml")
    compose = {
        name: Limits.of(service)
        for name, service in compose_config(*compose_files, env=clean_env())["services"].items()
    }
    swarm = swarm_config()["services"]
    for service in set(compose) & set(swarm):
        swarm_limits = swarm[service]["deploy"]["resources"]["limits"]
        assert swarm_limits["pids"] == compose[service].pids, service
        assert memory_bytes(swarm_limits["memory"]) == compose[service].memory, service


def test_a_variable_overrides_each_limit(tmp_path):
    names = set()
    for path in [*REPO.glob("compose*.yaml"), *(REPO / f for f in SWARM_FILES)]:
        names |= {name for name, _ in LIMIT_VARIABLE.findall(path.read_text())}
    assert len(names) >= 15, names
    swarm_services = ["api", "nginx", "db", "migrate", "prometheus", "alertmanager"]
    names |= {f"{service.upper()}_PIDS_LIMIT" for service in swarm_services}
    overrides = {
        name: "96m" if name.endswith("_MEM_LIMIT") else "77" if "PIDS" in name else "512"
        for name in names
    }
    merged = COMBINATIONS["DATABASE=postgres MONITORING=1 make up"]
    for service_name, service in compose_config(*merged, env=clean_env(**overrides))[
        "services"
    ].items():
        assert Limits.of(service) == Limits(96 * 2**20, 77, 512), service_name

    # Swarm: memory straight from the variables; processes through pids-override.sh.
    pids = REPO / "deploy" / "swarm" / "pids-override.sh"
    env = clean_env(**SWARM_REQUIRED, **overrides)
    override = subprocess.run(
        [str(pids), *swarm_services], env=env, capture_output=True, text=True, check=True
    ).stdout
    path = tmp_path / "pids.yaml"
    path.write_text(override)
    services = swarm_config(str(path), env=env)["services"]
    for name in swarm_services:
        limits = services[name]["deploy"]["resources"]["limits"]
        assert (memory_bytes(limits["memory"]), limits["pids"]) == (96 * 2**20, 77), name


def cgroup_value(service, v1: str, v2: str) -> int | None:
    """A cgroup file as the container itself sees it (v1 or v2 layout); None for "max"."""
    code, text = service.exec(["sh", "-c", f"cat /sys/fs/cgroup/{v1} || cat /sys/fs/cgroup/{v2}"])
    assert code == 0, text
    value = text.strip().splitlines()[-1]
    return None if value == "max" else int(value)


def test_the_suites_containers_run_with_the_compose_limits(postgres_stack):
    limits = compose_limits()
    for name, service in (
        ("api", postgres_stack.api),
        ("nginx", postgres_stack.nginx),
        ("db", postgres_stack.db),
    ):
        assert applied_limits(service.container.attrs) == limits[name], name
        # What the kernel enforces, read inside the container.
        memory = cgroup_value(service, "memory/memory.limit_in_bytes", "memory.max")
        assert memory == limits[name].memory, (name, memory)
        assert cgroup_value(service, "pids/pids.max", "pids.max") == limits[name].pids, name


def test_a_runaway_process_stops_at_the_process_limit_and_the_api_keeps_answering(
    launcher, figures
):
    api = launcher.api("pids-api", aliases=("pids-api",), publish=True)
    url = f"http://127.0.0.1:{api.host_port(8000)}/readyz"
    wait_until(lambda: http_get(url, timeout=5).status_code == 200, 60, what="the API to answer")
    limit = compose_limits()["api"].pids
    # Threads until the kernel refuses one (each is a task the pids controller counts).
    code, output = api.exec(
        [
            "python3",
            "-c",
            "import threading, time\n"
            "event, count = threading.Event(), 0\n"
            "try:\n"
            "    while count < 100000:\n"
            "        threading.Thread(target=event.wait, daemon=True).start(); count += 1\n"
            "except RuntimeError as exc:\n"
            "    print(count, exc)\n"
            "event.set()\n",
        ]
    )
    assert code == 0, output
    started, _, error = output.strip().partition(" ")
    assert "can't start new thread" in error, output
    assert 0 < int(started) < limit, (started, limit)
    # Everything else in the container (init, gunicorn's master and workers) was already running
    # and keeps serving once the runaway is gone.
    assert http_get(url, timeout=5).status_code == 200
    figures["process limit"] = {"api_pids_limit": limit, "runaway_threads_started": int(started)}
    api.remove()
