"""Scenario 2: a rolling update of the API under steady open-loop load through one node's nginx
(reads and authenticated writes, at least 50 requests/s for at least 30 s, rate limits raised):
0 failed requests (429, 5xx, connection errors and timeouts all count); the load covers the whole
update; every task ends on the new version.

The update is what an operator does for a release: a new image tag (here the same image tagged
anew inside every node, as a registry pull would give it) and `docker stack deploy` again with
API_IMAGE set to it. The stack's update_config (one at a time, start-first, a monitor window) and
the drain (SHUTDOWN_DRAIN_SECONDS, longer than nginx's re-resolve interval) do the rest.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.support.containers import API_IMAGE
from tests.support.swarm import Endpoint, Swarm
from tests.support.waiting import wait_until
from tests.swarm.workload import RATE, Workload

NEW_IMAGE = API_IMAGE.rsplit(":", 1)[0] + ":swarm-v2"
MIN_SECONDS = 30
SETTLE = 5  # seconds of load before the update and after it


@pytest.mark.timeout(300)
def test_rolling_update_loses_nothing(
    swarm: Swarm, endpoints: list[Endpoint], figures: dict[str, Any]
) -> None:
    for node in swarm.nodes:
        node.docker("tag", API_IMAGE, NEW_IMAGE)
    through = swarm.nodes[1]
    workload = Workload(endpoints[1], "update")
    with workload.load() as load:
        time.sleep(SETTLE)
        update_started = time.monotonic()
        swarm.deploy(API_IMAGE=NEW_IMAGE)

        def updated() -> bool:
            tasks = swarm.running("api")
            return (
                swarm.update_state("api") == "completed"
                and len(tasks) == 3
                and all(task.image == NEW_IMAGE for task in tasks)
            )

        wait_until(updated, 200, interval=1, what=f"every API task on {NEW_IMAGE}")
        update_done = time.monotonic()
        time.sleep(max(SETTLE, MIN_SECONDS - (time.monotonic() - load.started)))
    status = swarm.inspect_service("api")["UpdateStatus"]
    result = load.figures(since=update_started)
    figures["2. rolling update"] = {
        "through": through.hostname,
        "update_s": round(update_done - update_started, 1),
        "update_status": status,
        "load_before_update_s": round(update_started - load.started, 1),
        "load_after_update_s": round(load.stopped - update_done, 1),
        **result,
        **workload.check_writes(load),
    }
    assert load.started < update_started, "the load did not start before the update"
    assert load.stopped > update_done, "the load did not outlast the update"
    assert result["duration_s"] >= MIN_SECONDS, result
    assert result["rate_per_s"] >= 50, result
    assert result["rate_per_s"] >= RATE * 0.9, result
    assert not load.failures(), f"failed requests during the update: {result}"
