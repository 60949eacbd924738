"""Scenario 4: a worker node holding an API replica (not the database node, not the manager) is
killed under load aimed at the other worker's nginx: Swarm reschedules the replica, traffic
recovers, the failed requests fall in a short window (target: under 2 s), clients retry their
failed writes with the same Idempotency-Key, and every acknowledged write is stored exactly once.

The kill is `docker kill` of the node's container: its engine and every task on it vanish at
once, with no stop signal and no FIN on their connections, as when a host loses power. nginx
then meets connect timeouts (1 s, then the next upstream) until its watcher drops the dead
task's address from `tasks.api`, i.e. until Swarm marks the node down.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.support.swarm import Endpoint, Swarm
from tests.support.waiting import wait_until
from tests.swarm.workload import Workload

TARGET_WINDOW_S = 2.0  # the issue's target for the failures' window
MAX_WINDOW_S = 6.0  # what this test fails on (a shared 2-core machine has jitter)
RECOVERED_S = 10  # seconds of load, with no failure, after the replica is replaced
WRITE_ATTEMPTS = 30  # a failed write is sent again with its key, for up to ~60 s


@pytest.mark.timeout(300)
def test_worker_node_killed_under_load(
    swarm: Swarm, endpoints: list[Endpoint], figures: dict[str, Any]
) -> None:
    workers = swarm.nodes[1:]
    api_nodes = {task.node for task in swarm.running("api")}
    victim = next(node for node in reversed(workers) if node.hostname in api_nodes)
    survivor = next(node for node in workers if node is not victim)
    assert victim is not swarm.db_node
    assert victim is not swarm.manager
    endpoint = endpoints[swarm.nodes.index(survivor)]
    workload = Workload(endpoint, "nodefail", write_attempts=WRITE_ATTEMPTS)
    with workload.load() as load:
        time.sleep(5)
        killed = swarm.kill(victim)

        def rescheduled() -> list[str]:
            tasks = swarm.running("api")
            nodes = [task.node for task in tasks]
            return len(tasks) == 3 and victim.hostname not in nodes and nodes

        wait_until(rescheduled, 120, interval=1, what="the API replica to be rescheduled")
        replaced = time.monotonic()
        down = swarm.manager.docker(
            "node", "inspect", "--format", "{{.Status.State}}", victim.hostname
        ).stdout.strip()
        time.sleep(RECOVERED_S)
    result = load.figures(since=killed)
    late = [a for a in load.failures() if a.due > replaced]
    figures["4. node failure"] = {
        "killed": victim.hostname,
        "through": survivor.hostname,
        "victim_state": down,
        "replaced_after_s": round(replaced - killed, 1),
        "target_window_s": TARGET_WINDOW_S,
        **result,
        **workload.check_writes(load),
    }
    assert down == "down", f"{victim.hostname} is {down}"
    assert result["rate_per_s"] >= 50, result
    assert not late, f"failures after the replica was replaced: {late[:5]}"
    assert result.get("failure_window_s", 0) <= MAX_WINDOW_S, result
    assert result["failed_writes_in_the_end"] == 0, result  # every write retried to success
