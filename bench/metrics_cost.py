"""M2on and M2off: measurement 2 with the API's metrics on and then off, each on a new container
(issue 16), in the same run.

The API records Prometheus metrics on every request unless ``METRICS_ENABLED=false``; compose
passes that setting to the api service. This recreates only the api container, first as the run
has it (metrics on), then with the setting off (the database and its seeded rows stay), checks
that each container really has what it should, and loads the same item directly through gunicorn
after each start. Both measurements sit in the same place (right after a start, one after the
other): measurement 2 itself cannot be the "on" side, because the same load costs less minutes
into a run than right after a start (~8% here, more than the effect being measured).

"M2on/M2off" in the report is the API's CPU per GET with metrics over without. CPU time still moves
by more than the 5% target between runs on this machine, so the figure that decides is
callgrind's (``bench/inprocess.py --instructions --metrics both``, docs/performance.md "Metrics'
cost"); this one shows the cost in the container, gunicorn's master included.

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

METRICS_KEYS = ("M2on", "M2off")
SETTING = "METRICS_ENABLED"


def metrics_already_off(env: dict[str, str]) -> bool:
    """Whether the run itself was started with metrics off (``--set METRICS_ENABLED=false``)."""
    return env.get(SETTING, "").strip().lower() in {"false", "0", "no", "off"}


def run_metrics_pair(
    args: argparse.Namespace,
    env: dict[str, str],
    ports: dict[str, int],
    resource_id: int,
    run_id: str,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Measure 2 on a new api container with metrics on, then on one with them off."""
    url = f"http://127.0.0.1:{ports['api']}{domain.resource_url(resource_id)}"
    measured: list[dict[str, Any]] = []
    info: dict[str, Any] = {}
    for key, enabled in (("M2on", True), ("M2off", False)):
        state = "on" if enabled else "off"
        variant = env if enabled else {**env, SETTING: "false"}
        log(f"{key}: recreating the api service with its metrics {state}")
        up_s = recreate_api(variant, f"the api with metrics {state}")
        containers = stack_containers(variant)
        config_env = docker_inspect(containers["api"], "{{json .Config.Env}}")
        if (f'"{SETTING}=false"' in config_env) == enabled:
            raise BenchError(f"the recreated api container does not have its metrics {state}")
        info[key] = {"up_to_healthy_s": up_s, "api_container": containers["api"][:12]}
        # A new meter: the api container has a new id (and cgroup) and its port a new docker-proxy.
        meter = CpuMeter(containers, ports)
        load, warm = wrk_load(args, url, run_id)
        title = f"GET item, gunicorn direct, new container, metrics {state}"
        measured.append(measure(key, title, meter, load, warm))
    return measured, info
