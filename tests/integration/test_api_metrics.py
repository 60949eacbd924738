"""The API's own metrics, through the monitoring profile (about 3 minutes, most of it the two
alerts' shipped `for:`).

Written against the contract tests/integration/test_monitoring.py and the rules rely on: every API
instance serves Prometheus metrics on its own port 9100 at /metrics, plain HTTP, on the backend
network only (nginx never proxies it):
  api_http_requests_total{method,route,status}              counter; route = the route template
  api_http_request_duration_seconds_bucket{method,route,le}    histogram (_count, _sum)
  api_http_requests_in_flight                                 gauge
  api_database_errors_total                                   counter
  api_idempotent_replays_total                                counter
  api_ready                                                   gauge: 1 readiness passes, 0 fails
  api_build_info{version,revision}                            gauge, 1

The stack runs on PostgreSQL here, so the database can be stopped (APINotReady).
"""

from __future__ import annotations

import re
import time
import uuid
from collections import Counter
from collections.abc import Iterator

import pytest

from tests.support.containers import REPO, git_revision
from tests.support.domain import RESOURCES_PATH, USERS_PATH, resource_url
from tests.support.monitoring import FAST, Monitoring, monitoring_stack, wait_for_scrape_after
from tests.support.waiting import wait_until

SHIPPED_FOR = 60  # seconds: the `for:` of APIDown and APINotReady (ALERT_DOWN_FOR, _NOT_READY_FOR)
METRICS = (
    "api_http_requests_total",
    "api_http_request_duration_seconds_bucket",
    "api_http_requests_in_flight",
    "api_database_errors_total",
    "api_idempotent_replays_total",
    "api_ready",
    "api_build_info",
)


@pytest.fixture(scope="module")
def mon(docker_client) -> Iterator[Monitoring]:
    with monitoring_stack(docker_client, DATABASE="postgres", **FAST) as stack:
        wait_until(
            lambda: {t["health"] for t in stack.prometheus.targets("api")} == {"up"},
            60,
            what="every API target up (is the API serving :9100/metrics?)",
        )
        yield stack


def by_labels(mon: Monitoring, expr: str, *labels: str) -> Counter[tuple[str, ...]]:
    """Raw counter values summed over the instances, keyed by the given labels."""
    return Counter(
        {
            tuple(s["metric"].get(label, "") for label in labels): float(s["value"][1])
            for s in mon.prometheus.query(f"sum by ({', '.join(labels)}) ({expr})")
        }
    )


def test_every_api_metric_is_scraped(mon):
    mon.get("/readyz")
    wait_for_scrape_after(mon.prometheus, "api", time.time(), 30)
    for name in METRICS:
        assert mon.prometheus.query(name), f"no {name} series"
    version = re.search(
        r'^version = "(.*)"', (REPO / "services/api/pyproject.toml").read_text(), re.M
    )
    assert version is not None
    build = mon.prometheus.query("api_build_info")
    assert {s["metric"]["version"] for s in build} == {version.group(1)}, build
    # The revision `make up` built the image from (the Makefile's GIT_REV, a build argument).
    assert {s["metric"]["revision"] for s in build} == {git_revision()}, build
    assert {float(s["value"][1]) for s in mon.prometheus.query("api_ready")} == {1.0}


def test_the_metrics_port_is_published_nowhere(mon):
    """Prometheus reaches :9100 over the backend network; the host does not."""
    api = mon.container("api")
    exposed = api.attrs["Config"]["ExposedPorts"]
    assert set(exposed) == {"8000/tcp", "9100/tcp"}, exposed  # the image's EXPOSE
    assert not api.attrs["HostConfig"]["PortBindings"], api.attrs["HostConfig"]["PortBindings"]
    assert set(api.attrs["NetworkSettings"]["Networks"]) == {f"{mon.project}_backend"}


def test_request_counters_match_the_requests_sent(mon):
    """Distinct known numbers per route and status; raw counter values before and after."""
    sent = {
        ("GET", RESOURCES_PATH, "200"): 7,
        ("GET", USERS_PATH, "200"): 5,
        ("POST", USERS_PATH, "400"): 3,  # no body fields
    }
    missing_item = 4  # GET of a resource that does not exist: 404 under the route template
    key = ("method", "route", "status")
    wait_for_scrape_after(mon.prometheus, "api", time.time(), 30)
    before = by_labels(mon, "api_http_requests_total", *key)
    counts_before = by_labels(mon, "api_http_request_duration_seconds_count", "method", "route")

    for (method, path, status), times in sent.items():
        for _ in range(times):
            response = mon.request(method, path, json={} if method == "POST" else None)
            assert response.status_code == int(status), response.text
    for n in range(missing_item):
        assert mon.get(resource_url(900_000 + n)).status_code == 404
    wait_for_scrape_after(mon.prometheus, "api", time.time(), 30)
    after = by_labels(mon, "api_http_requests_total", *key)
    counts_after = by_labels(mon, "api_http_request_duration_seconds_count", "method", "route")

    for labels, times in sent.items():
        assert after[labels] - before[labels] == times, (labels, before[labels], after[labels])
    templated = [k for k in after if k[0] == "GET" and k[2] == "404" and k[1] != RESOURCES_PATH]
    item_routes = [k for k in templated if k[1].startswith(RESOURCES_PATH + "/")]
    assert len(item_routes) == 1, f"the item route is not one template: {templated}"
    [item_route] = item_routes
    assert not re.search(r"/9000\d\d", item_route[1]), f"raw path as route: {item_route}"
    assert after[item_route] - before[item_route] == missing_item
    get_items = ("GET", RESOURCES_PATH)
    assert (
        counts_after[get_items] - counts_before[get_items] == sent[("GET", RESOURCES_PATH, "200")]
    )


def test_unmatched_paths_and_unknown_methods_add_no_series(mon):
    """A fuzzer cannot explode the series count: one fixed label for every unmatched route."""
    for _ in range(3):  # make sure the fixed labels exist before counting
        mon.get(f"/api/nope-{uuid.uuid4().hex}")
        mon.request("BREW", RESOURCES_PATH)
    wait_for_scrape_after(mon.prometheus, "api", time.time(), 30)
    series = 'count(api_http_requests_total{job="api"})'
    before = mon.prometheus.value(series)
    for _ in range(25):
        mon.get(f"/api/nope-{uuid.uuid4().hex}")
        mon.request(f"X{uuid.uuid4().hex[:6].upper()}", RESOURCES_PATH)
    wait_for_scrape_after(mon.prometheus, "api", time.time(), 30)
    assert mon.prometheus.value(series) == before


def wait_for_notification(mon: Monitoring, alertname: str, since: float) -> float:
    """Seconds from `since` until the firing notification of `alertname` reached the webhook."""
    firing = wait_until(
        lambda: [n for n in mon.notified(alertname, "firing") if n["received_at"] > since],
        SHIPPED_FOR + 45,
        interval=1,
        what=f"the {alertname} notification at the webhook",
    )
    return firing[0]["received_at"] - since


def test_stopping_the_database_fires_api_not_ready_and_notifies_the_webhook(mon):
    assert mon.prometheus.rule("APINotReady")["duration"] == SHIPPED_FOR
    db = mon.container("db")
    stopped_at = time.time()
    db.stop(timeout=10)
    try:
        wait_until(
            lambda: mon.prometheus.value("min(api_ready)") == 0, 30, what="api_ready 0 (db down)"
        )
        waited = wait_for_notification(mon, "APINotReady", stopped_at)
        assert SHIPPED_FOR <= waited <= SHIPPED_FOR + 30, f"notified after {waited:.1f}s"
    finally:
        db.start()
    wait_until(lambda: mon.prometheus.value("min(api_ready)") == 1, 60, what="api_ready back to 1")


def test_stopping_the_api_fires_api_down_and_notifies_the_webhook(mon):
    assert mon.prometheus.rule("APIDown")["duration"] == SHIPPED_FOR
    assert mon.prometheus.alerts("APIDown") == []
    api = mon.container("api")
    stopped_at = time.time()
    api.stop(timeout=30)
    try:
        waited = wait_for_notification(mon, "APIDown", stopped_at)
        assert SHIPPED_FOR <= waited <= SHIPPED_FOR + 30, f"notified after {waited:.1f}s"
    finally:
        api.start()
    wait_until(lambda: mon.notified("APIDown", "resolved"), 90, interval=1, what="APIDown resolved")
