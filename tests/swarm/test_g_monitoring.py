"""Scenario 7 (issue 16): the monitoring stack file deployed with the stack, as
`MONITORING=1 make swarm-deploy` does: Prometheus, on the node labelled for it, finds every API
task through `tasks.api` and scrapes each one, wherever it runs.

Last, after the node failure: the replicas then run where Swarm rescheduled them, and Prometheus
must have followed. Each replica is identified by its address on the stack's overlay network
(`docker inspect` of its task's container) and must be an `up` target of the api job, with its own
build info and readiness; requests sent through every node's nginx are then counted, summed over
the replicas, exactly, by route template.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.support import fixtures as shared
from tests.support.containers import REPO, git_revision
from tests.support.swarm import Endpoint, Swarm, Task
from tests.support.waiting import wait_until

PROMETHEUS_IMAGE = "flask-stack-prometheus:test"
ALERTMANAGER_IMAGE = "flask-stack-alertmanager:test"
METRICS_PORT = 9100
REQUESTS_PER_NODE = 15


def query(swarm: Swarm, prometheus: Task, expr: str) -> list[dict[str, Any]]:
    """An instant query, asked from inside the Prometheus task (nothing is published)."""
    out = swarm.task_exec(
        prometheus, "promtool", "query", "instant", "-o", "json", "http://127.0.0.1:9090", expr
    ).stdout
    return json.loads(out) if out.strip() else []


@pytest.mark.timeout(420)
def test_prometheus_scrapes_every_api_replica(
    swarm: Swarm, endpoints: list[Endpoint], figures: dict[str, Any]
) -> None:
    monitoring = REPO / "monitoring"
    shared._build(monitoring, PROMETHEUS_IMAGE, dockerfile="prometheus/Dockerfile")
    shared._build(monitoring, ALERTMANAGER_IMAGE, dockerfile="alertmanager/Dockerfile")
    node = swarm.manager  # never killed by the other scenarios
    swarm.load_images([PROMETHEUS_IMAGE, ALERTMANAGER_IMAGE], [node])
    swarm.deploy_monitoring(
        node,
        PROMETHEUS_IMAGE=PROMETHEUS_IMAGE,
        ALERTMANAGER_IMAGE=ALERTMANAGER_IMAGE,
        PROMETHEUS_SCRAPE_INTERVAL="2s",
        PROMETHEUS_EVALUATION_INTERVAL="2s",
    )
    [prometheus] = swarm.wait_running("prometheus", 1, timeout=120)
    assert prometheus.node == node.hostname

    replicas = swarm.task_addresses("api")
    assert len(replicas) == 3, replicas
    expected = {f"{address}:{METRICS_PORT}" for address in replicas}

    def scraped() -> set[str] | None:
        up = query(swarm, prometheus, 'up{job="api"} == 1')
        instances = {series["metric"]["instance"] for series in up}
        return instances if instances == expected else None

    wait_until(scraped, 90, interval=2, what=f"every API replica scraped: {sorted(expected)}")

    version = re.search(
        r'^version = "(.*)"', (REPO / "services/api/pyproject.toml").read_text(), re.M
    )
    assert version is not None
    build = query(swarm, prometheus, "api_build_info")
    assert {s["metric"]["instance"] for s in build} == expected
    assert {(s["metric"]["version"], s["metric"]["revision"]) for s in build} == {
        (version.group(1), git_revision())
    }
    wait_until(
        lambda: (
            {s["metric"]["instance"] for s in query(swarm, prometheus, "api_ready == 1")}
            == expected
        ),
        30,
        interval=2,
        what="api_ready 1 on every replica",
    )

    # Requests through every node's nginx, to a route only this test uses (a user that does not
    # exist: 404), counted by the replicas that answered them and summed by Prometheus.
    selector = 'api_http_requests_total{route="/api/users/<int:user_id>", status="404"}'

    def counted() -> dict[str, float]:
        return {
            s["metric"]["instance"]: float(s["value"][1])
            for s in query(swarm, prometheus, f"sum by (instance) ({selector})")
        }

    # Through every node that is still in the swarm: the node-failure scenario leaves its victim
    # killed, and nothing answers on that node's port any more.
    live = [
        endpoint
        for node, endpoint in zip(swarm.nodes, endpoints, strict=True)
        if swarm.manager.docker(
            "node", "inspect", "--format", "{{.Status.State}}", node.hostname
        ).stdout.strip()
        == "ready"
    ]
    assert len(live) >= 2, "fewer than two nodes left to send through"
    before = counted()
    for endpoint in live:
        for n in range(REQUESTS_PER_NODE):
            assert endpoint.get(f"/api/users/{990_000 + n}").status_code == 404
    sent = REQUESTS_PER_NODE * len(live)
    after = wait_until(
        lambda: (now := counted()) and sum(now.values()) - sum(before.values()) == sent and now,
        30,
        interval=2,
        what=f"{sent} requests counted over the replicas",
    )
    by_replica = {i: after.get(i, 0) - before.get(i, 0) for i in expected}
    assert sum(1 for n in by_replica.values() if n > 0) >= 2, by_replica

    figures["7. monitoring"] = {
        "prometheus_on": prometheus.node,
        "api_replicas_by_node": {f"{a}:{METRICS_PORT}": n for a, n in replicas.items()},
        "requests_counted_by_replica": by_replica,
    }
