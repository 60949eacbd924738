"""Scenario 1: API replicas run on at least two nodes, and every node's nginx answers HTTPS on its
own 127.0.0.1 port and reaches replicas on the other nodes.

How "reaches" is shown: nginx logs, for each request, the request id it returned to the client
(X-Request-ID) and the upstream address it used (`upstream_addr`, conf.d/logging.conf); each API
task's address on the stack's overlay network comes from `docker inspect` of its container in its
node. So every answered request is matched to the task, and the node, that served it.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support.http import json_lines
from tests.support.swarm import STACK, Endpoint, Swarm
from tests.support.waiting import wait_until

REQUESTS_PER_NODE = 30
NETWORK = f"{STACK}_backend"


def api_addresses(swarm: Swarm) -> dict[str, str]:
    """The overlay address of every running API task -> the node it runs on."""
    addresses = {}
    for task in swarm.running("api"):
        detail = swarm.node(task.node).docker("inspect", task.container).stdout
        networks = json.loads(detail)[0]["NetworkSettings"]["Networks"]
        addresses[networks[NETWORK]["IPAddress"]] = task.node
    return addresses


def nginx_log(swarm: Swarm, node_name: str) -> list[dict[str, Any]]:
    (task,) = [task for task in swarm.running("nginx") if task.node == node_name]
    logs = swarm.node(node_name).docker("logs", task.container)
    return json_lines(logs.stdout + logs.stderr)


@pytest.mark.timeout(120)
def test_replicas_spread_and_every_nginx_reaches_them(
    swarm: Swarm, endpoints: list[Endpoint], figures: dict[str, Any]
) -> None:
    addresses = api_addresses(swarm)
    api_nodes = set(addresses.values())
    assert len(api_nodes) >= 2, f"API replicas all on {api_nodes}: {addresses}"

    reached: dict[str, dict[str, int]] = {}
    for node, endpoint in zip(swarm.nodes, endpoints, strict=True):
        ids = set()
        for _ in range(REQUESTS_PER_NODE):
            response = endpoint.get("/readyz")
            assert response.status_code == 200, (node.hostname, response.text)
            ids.add(response.headers["X-Request-ID"])

        def served(node_name: str = node.hostname, ids: set[str] = ids) -> dict[str, int] | None:
            entries = [e for e in nginx_log(swarm, node_name) if e.get("request_id") in ids]
            if len(entries) < len(ids):
                return None  # the access log is buffered (flushed every second)
            by_node: dict[str, int] = {}
            for entry in entries:
                for upstream in str(entry["upstream_addr"]).split(", "):
                    address = upstream.rsplit(":", 1)[0]
                    by_node[addresses.get(address, address)] = (
                        by_node.get(addresses.get(address, address), 0) + 1
                    )
            return by_node

        reached[node.hostname] = wait_until(
            served, 20, interval=0.5, what=f"{node.hostname}'s nginx to log our requests"
        )

    figures["1. spread"] = {
        "api_replicas_by_node": {n: list(addresses.values()).count(n) for n in sorted(api_nodes)},
        "served_by_node_through_each_nginx": reached,
        "https_ports": {node.hostname: node.https_port for node in swarm.nodes},
    }
    for through, by_node in reached.items():
        assert set(by_node) <= api_nodes, f"{through}'s nginx used unknown upstreams: {by_node}"
        assert set(by_node) == api_nodes, f"{through}'s nginx reached only {by_node}"
        assert set(by_node) - {through}, f"{through}'s nginx reached no other node: {by_node}"
