"""Scenario 0: the stack's resource limits reach every task. Each service's spec, and each running
container on the nodes, has the memory and process limits that deploy/swarm/stack.yaml gives it,
which are compose.yaml's (tests/integration/test_limits.py checks the files against each other):
`docker stack deploy` (the nodes' CLI 26) applies `pids` and the memory read from a variable.
"""

from __future__ import annotations

import json

from tests.support.limits import memory_bytes, swarm_config
from tests.support.swarm import Swarm


def test_every_service_and_task_has_the_stack_files_limits(swarm: Swarm) -> None:
    services = swarm_config()["services"]
    for service in ("api", "nginx", "db", "migrate"):
        limits = services[service]["deploy"]["resources"]["limits"]
        memory, pids = memory_bytes(limits["memory"]), limits["pids"]
        spec = swarm.inspect_service(service)["Spec"]["TaskTemplate"]["Resources"]["Limits"]
        assert (spec["MemoryBytes"], spec["Pids"]) == (memory, pids), (service, spec)
        if service == "migrate":
            continue  # a job: its task has run and exited
        tasks = swarm.running(service)
        assert tasks, service
        for task in tasks:
            inspect = swarm.node(task.node).docker("inspect", task.container).stdout
            host = json.loads(inspect)[0]["HostConfig"]
            assert (host["Memory"], host["PidsLimit"]) == (memory, pids), (service, task.node)
