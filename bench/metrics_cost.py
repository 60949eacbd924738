"""M2: measurement 2 again with the API's metrics switched off (issue 16), in the same run.

The API records Prometheus metrics on every request unless ``METRICS_ENABLED=false``; compose
passes that setting to the api service. This recreates only the api container with it (the
database and its seeded rows stay), checks that the new container really has it, and loads the
same item directly through gunicorn. "2/M2" in the report is then the API's CPU per GET with
metrics over without. CPU time moves by more than the 5% target between runs on this machine, so
the figure that decides is callgrind's (``bench/inprocess.py --instructions --metrics both``,
docs/performance.md "Metrics' cost"); this one shows the cost in the container, gunicorn's master
and its scrapes included.

It runs after the API's measurements (it replaces their container) and before the floor's (which
replaces this one).
"""

from __future__ import annotations

import argparse
from typing import Any

from common import BenchError, domain, log
from cpu import CpuMeter
from measurements import measure, wrk_load
from stack import docker_inspect, recreate_api, stack_containers

METRICS_KEYS = ("M2",)
SETTING = "METRICS_ENABLED"


def metrics_already_off(env: dict[str, str]) -> bool:
    """Whether the run itself was started with metrics off (``--set METRICS_ENABLED=false``)."""
    return env.get(SETTING, "").strip().lower() in {"false", "0", "no", "off"}


def run_metrics_off(
    args: argparse.Namespace,
    env: dict[str, str],
    ports: dict[str, int],
    resource_id: int,
    run_id: str,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Recreate the api with metrics off and measure M2; the measurement and facts about it."""
    off = {**env, SETTING: "false"}
    log(f"M2: recreating the api service with {SETTING}=false")
    info: dict[str, Any] = {"up_to_healthy_s": recreate_api(off, "the api with metrics off")}
    containers = stack_containers(off)
    config_env = docker_inspect(containers["api"], "{{json .Config.Env}}")
    if f'"{SETTING}=false"' not in config_env:
        raise BenchError(f"the recreated api container does not have {SETTING}=false")
    info["api_container"] = containers["api"][:12]
    # A new meter: the api container has a new id (and cgroup) and its port a new docker-proxy.
    meter = CpuMeter(containers, ports)
    url = f"http://127.0.0.1:{ports['api']}{domain.resource_url(resource_id)}"
    load, warm = wrk_load(args, url, run_id)
    title = "GET item, gunicorn direct, metrics off"
    return [measure("M2", title, meter, load, warm)], info
