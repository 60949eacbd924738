"""Scenario 3: an update to an image whose health check never passes is rolled back by Swarm on
its own (update_config failure_action: rollback), with 0 failed requests under load meanwhile.

The bad image is built inside every node from the API image with a HEALTHCHECK that always fails
(a release that cannot get healthy); the operator's `docker service update --image` starts a
task of it (start-first: the old ones keep serving), the task never becomes healthy, so never
enters DNS or nginx's rotation, and Swarm rolls the service back to the previous spec.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.support.containers import API_IMAGE
from tests.support.swarm import Endpoint, Swarm, run
from tests.support.waiting import wait_until
from tests.swarm.workload import Workload

BAD_IMAGE = API_IMAGE.rsplit(":", 1)[0] + ":swarm-unhealthy"
DOCKERFILE = """FROM {base}
HEALTHCHECK --interval=2s --timeout=2s --start-period=0s --retries=2 CMD ["false"]
"""


@pytest.mark.timeout(300)
def test_unhealthy_update_rolls_back(
    swarm: Swarm, endpoints: list[Endpoint], figures: dict[str, Any]
) -> None:
    before = swarm.inspect_service("api")["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]
    for node in swarm.nodes:
        # The node's CLI has no buildx: the classic builder, as in the project's own builds.
        run(
            ["docker", "exec", "-i", "-e", "DOCKER_BUILDKIT=0", node.name,
             "docker", "build", "-q", "-t", BAD_IMAGE, "-"],
            input=DOCKERFILE.format(base=before).encode(),
        )  # fmt: skip
    workload = Workload(endpoints[1], "rollback")
    with workload.load() as load:
        time.sleep(3)
        started = time.monotonic()
        swarm.manager.docker(
            "service", "update", "--detach", "--image", BAD_IMAGE, swarm.service("api")
        )
        wait_until(
            lambda: swarm.update_state("api") == "rollback_completed",
            240,
            interval=1,
            what="the update to roll back",
        )
        done = time.monotonic()
        time.sleep(3)
    status = swarm.inspect_service("api")["UpdateStatus"]
    bad = [t for t in swarm.tasks("api", all_states=True) if t.image == BAD_IMAGE]
    running = swarm.running("api")
    # Each bad task's container, as its node's engine saw it: started, and its health checks.
    seen = {}
    for task in bad:
        if task.container:
            out = swarm.node(task.node).docker("inspect", task.container, check=False).stdout
            state = json.loads(out)[0]["State"] if out.strip().startswith("[") else {}
            health = state.get("Health") or {}
            seen[task.id] = {
                "started_at": state.get("StartedAt"),
                "health": health.get("Status"),
                "failing_streak": health.get("FailingStreak"),
            }
    result = load.figures(since=started)
    figures["3. rollback"] = {
        "rollback_s": round(done - started, 1),
        "update_status": status,
        "bad_tasks": [f"{t.name} on {t.node}: {t.state}; {t.error}" for t in bad],
        "bad_containers": seen,
        **result,
    }
    assert status["State"] == "rollback_completed", status
    assert bad, "no task of the bad image was ever created"
    started_unhealthy = [
        s for s in seen.values()
        if s["started_at"] and not s["started_at"].startswith("0001") and s["failing_streak"]
    ]  # fmt: skip
    assert started_unhealthy, f"no bad task started and failed its health check: {bad} {seen}"
    assert len(running) == 3, running
    assert all(task.image == before for task in running), running
    assert not load.failures(), f"failed requests during the bad update: {result}"
