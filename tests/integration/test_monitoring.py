"""The monitoring profile, started as the README says (`MONITORING=1 make up`), in a compose
project of its own (tests/support/monitoring.py): Prometheus scrapes nginx through the exporter,
looks for the API's metrics where the contract puts them (port 9100, /metrics), keeps its data
bounded, and an alert that fires with its shipped `for:` reaches the webhook receiver.

Shortened for the run, as settings: scrapes and rule evaluations every second and Alertmanager's
group waits. The `for:` durations are the shipped ones (the rules' unit tests check the same
values offline, `make test-rules`).

These tests never count on the API's own metrics: tests/integration/test_api_metrics.py does.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.support.http import http_get
from tests.support.limits import Limits, applied_limits, compose_config
from tests.support.monitoring import FAST, Monitoring, monitoring_stack, wait_for_scrape_after
from tests.support.waiting import wait_until

SHIPPED_DOWN_FOR = 60  # seconds: ALERT_DOWN_FOR's default, the `for:` of NginxDown and APIDown
MONITORING_SERVICES = ("prometheus", "alertmanager", "nginx-exporter")


@pytest.fixture(scope="module")
def mon(docker_client) -> Iterator[Monitoring]:
    with monitoring_stack(docker_client, **FAST) as stack:
        yield stack


def test_prometheus_answers_on_the_loopback_only_and_stub_status_is_not_published(mon):
    ports = mon.container("prometheus").attrs["NetworkSettings"]["Ports"]
    assert {b["HostIp"] for b in ports["9090/tcp"]} == {"127.0.0.1"}, ports
    assert mon.prometheus.api("/api/v1/status/buildinfo")["version"].startswith("2.53")
    for service in ("nginx", "nginx-exporter", "alertmanager"):
        published = {
            port: bindings
            for port, bindings in mon.container(service).attrs["NetworkSettings"]["Ports"].items()
            if bindings
        }
        allowed = {"8443/tcp", "8080/tcp"} if service == "nginx" else set()
        assert set(published) <= allowed, f"{service} publishes {published}"


def test_monitoring_containers_are_hardened_and_limited(mon):
    files = ("compose.yaml", "compose.monitoring.yaml")
    config = compose_config(*files, env=mon.env)["services"]
    for service in MONITORING_SERVICES:
        container = mon.container(service)
        host = container.attrs["HostConfig"]
        assert host["ReadonlyRootfs"] is True, service
        assert host["CapDrop"] == ["ALL"], service
        assert "no-new-privileges:true" in host["SecurityOpt"], service
        # The limits of compose.monitoring.yaml, as compose resolves them.
        expected = Limits.of(config[service])
        assert applied_limits(container.attrs) == expected, service
        assert 0 < expected.memory <= 512 * 2**20, (service, expected)
        assert expected.cpu_shares < config["api"]["cpu_shares"], (service, expected)
        top = container.top(ps_args="-o pid,uid,args")
        uid_col = top["Titles"].index("UID")
        for row in top["Processes"]:
            assert int(row[uid_col]) != 0, f"{service} runs as root: {row}"


def test_prometheus_keeps_its_data_bounded_in_time_and_size(mon):
    flags = mon.prometheus.api("/api/v1/status/flags")
    assert flags["storage.tsdb.retention.time"] == "15d"
    assert flags["storage.tsdb.retention.size"] in ("1GB", "1GiB")  # as Prometheus prints it


def test_prometheus_looks_for_the_api_metrics_on_port_9100(mon):
    """The contract with the API: each instance found by DNS, scraped at :9100/metrics."""
    api = mon.container("api")
    address = next(iter(api.attrs["NetworkSettings"]["Networks"].values()))["IPAddress"]
    targets = wait_until(lambda: mon.prometheus.targets("api"), 30, what="the api job's targets")
    assert [t["scrapeUrl"] for t in targets] == [f"http://{address}:9100/metrics"]


def test_nginx_connections_accepted_rises_with_known_traffic(mon):
    prometheus = mon.prometheus
    wait_until(
        lambda: [t["health"] for t in prometheus.targets("nginx")] == ["up"],
        60,
        what="the nginx exporter's target to be up",
    )
    wait_until(lambda: prometheus.value('nginx_up{job="nginx"}') == 1, 30, what="nginx_up 1")
    wait_for_scrape_after(prometheus, "nginx", time.time(), 30)
    accepted = 'nginx_connections_accepted{job="nginx"}'
    handled = 'nginx_http_requests_total{job="nginx"}'
    scraped_before, accepted_before = prometheus.last_sample(accepted)
    _, handled_before = prometheus.last_sample(handled)

    # Each request on a connection of its own (a new session each time), answered by nginx itself.
    sent = 37
    for _ in range(sent):
        response = http_get(mon.url("/nginx-static"), ca=str(mon.ca))
        assert response.status_code == 200, response.text
    wait_for_scrape_after(prometheus, "nginx", time.time(), 30)

    scraped, accepted_after = prometheus.last_sample(accepted)
    _, handled_after = prometheus.last_sample(handled)
    # Raw counter values (no rate() or increase(), which extrapolate). Besides ours, nginx accepts
    # the exporter's own read at each scrape (1 s here) and Docker's health probe (every 10 s).
    background = 2 * (scraped - scraped_before) + 5
    assert sent <= accepted_after - accepted_before <= sent + background, (
        accepted_before,
        accepted_after,
    )
    assert sent <= handled_after - handled_before <= sent + background, (
        handled_before,
        handled_after,
    )


def test_stopping_nginx_fires_nginx_down_after_its_for_and_notifies_the_webhook(mon):
    prometheus = mon.prometheus
    assert prometheus.rule("NginxDown")["duration"] == SHIPPED_DOWN_FOR
    wait_until(lambda: prometheus.value('nginx_up{job="nginx"}') == 1, 30, what="nginx_up 1")
    assert prometheus.alerts("NginxDown") == []
    nginx = mon.container("nginx")

    stopped_at = time.time()
    nginx.stop(timeout=10)
    try:
        pending = wait_until(
            lambda: [a for a in prometheus.alerts("NginxDown") if a["state"] == "pending"],
            15,
            what="NginxDown pending once nginx is stopped",
        )
        assert not mon.notified("NginxDown", "firing"), "notified before its for: had passed"

        firing = wait_until(
            lambda: mon.notified("NginxDown", "firing"),
            SHIPPED_DOWN_FOR + 45,
            interval=1,
            what="the NginxDown notification at the webhook",
        )
        waited = firing[0]["received_at"] - stopped_at
        assert SHIPPED_DOWN_FOR <= waited <= SHIPPED_DOWN_FOR + 30, f"notified after {waited:.1f}s"
        [alert] = firing[0]["body"]["alerts"]
        assert alert["status"] == "firing", alert
        assert alert["labels"]["severity"] == "critical", alert
        assert alert["labels"]["instance"] == pending[0]["labels"]["instance"], alert
        assert alert["annotations"]["runbook"] == "docs/operations.md#nginxdown", alert
    finally:
        nginx.start()

    # Back up: the alert resolves and the webhook is told so.
    wait_until(
        lambda: mon.notified("NginxDown", "resolved"),
        60,
        interval=1,
        what="the resolved NginxDown notification",
    )
