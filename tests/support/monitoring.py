"""The monitoring profile as the README starts it (`MONITORING=1 make up`), for the suites that
watch it: Prometheus's HTTP API, the compose project's containers, and a webhook receiver that
Alertmanager notifies.

``monitoring_stack(docker_client, **settings)`` is a context manager: it runs `make up` with
MONITORING=1 in a compose project of its own (free 127.0.0.1 ports, image tag ``itest``, rate
limits off, the given settings on top), starts the receiver on the project's `monitoring` network
and yields a ``Monitoring``; on exit it removes the receiver and the project with its volumes,
whatever happened.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors

from .containers import LABELS, REPO, RUN_ID, free_port
from .http import HttpsClient, new_session
from .waiting import wait_until

COMPOSE_FILES = ("-f", "compose.yaml", "-f", "compose.monitoring.yaml")
RECEIVER_PORT = 8099
RECEIVER_NAME = f"itest-{RUN_ID}-alert-receiver"
# Scrapes, rule evaluation and Alertmanager's grouping at the fastest, so a test waits for the
# shipped `for:` of an alert and little else. Not the `for:` itself: the drills prove that one.
FAST = {
    "PROMETHEUS_SCRAPE_INTERVAL": "1s",
    "PROMETHEUS_SCRAPE_TIMEOUT": "1s",
    "PROMETHEUS_EVALUATION_INTERVAL": "1s",
    "ALERT_GROUP_WAIT": "1s",
    "ALERT_GROUP_INTERVAL": "2s",
}


class Prometheus:
    """Prometheus's HTTP API at http://127.0.0.1:<port> (never through a proxy)."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.session = new_session()

    def api(self, path: str, **params: Any) -> Any:
        response = self.session.get(self.url + path, params=params, timeout=10)
        response.raise_for_status()
        body = response.json()
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query: [{"metric": {labels}, "value": [time, "value"]}, ...]."""
        return self.api("/api/v1/query", query=expr)["result"]

    def value(self, expr: str) -> float | None:
        """The value of a query that yields one sample (None when it yields none)."""
        result = self.query(expr)
        assert len(result) <= 1, f"{expr} yields {len(result)} samples: {result}"
        return float(result[0]["value"][1]) if result else None

    def last_sample(self, selector: str) -> tuple[float, float]:
        """The newest raw sample (unix time, value) of a selector matching one series: read from a
        range vector, so no function (rate, increase) has interpolated or extrapolated it."""
        [series] = self.query(f"{selector}[1m]")
        timestamp, value = series["values"][-1]
        return float(timestamp), float(value)

    def targets(self, job: str) -> list[dict[str, Any]]:
        return [
            t for t in self.api("/api/v1/targets")["activeTargets"] if t["labels"]["job"] == job
        ]

    def alerts(self, name: str) -> list[dict[str, Any]]:
        return [a for a in self.api("/api/v1/alerts")["alerts"] if a["labels"]["alertname"] == name]

    def rule(self, name: str) -> dict[str, Any]:
        for group in self.api("/api/v1/rules")["groups"]:
            for rule in group["rules"]:
                if rule["name"] == name:
                    return rule
        raise AssertionError(f"Prometheus has no rule {name}")


@dataclass
class Monitoring(HttpsClient):
    """The stack with its monitoring profile: HTTPS to nginx, Prometheus, the compose containers."""

    client: docker.DockerClient
    project: str
    base_url: str
    http_url: str
    ca: Path
    prometheus: Prometheus
    receiver_url: str
    env: dict[str, str] = field(default_factory=dict)

    def container(self, service: str) -> Any:
        """The docker-py Container of a compose service (one replica)."""
        found = self.client.containers.list(
            all=True,
            filters={
                "label": [
                    f"com.docker.compose.project={self.project}",
                    f"com.docker.compose.service={service}",
                ]
            },
        )
        assert len(found) == 1, f"{service}: {len(found)} containers"
        return found[0]

    def notifications(self) -> list[dict[str, Any]]:
        """What Alertmanager has posted to the receiver so far (arrival time and JSON body)."""
        with new_session() as session:
            response = session.get(self.receiver_url + "/received", timeout=5)
        response.raise_for_status()
        return response.json()

    def notified(self, alertname: str, status: str) -> list[dict[str, Any]]:
        """The notifications whose group is `alertname` in `status` (firing or resolved)."""
        return [
            n
            for n in self.notifications()
            if n["body"]["groupLabels"].get("alertname") == alertname
            and n["body"]["status"] == status
        ]


def _compose_down(project: str, env: dict[str, str]) -> None:
    files = COMPOSE_FILES
    if env.get("DATABASE") == "postgres":
        files += ("-f", "compose.postgres.yaml")
    subprocess.run(
        ["docker", "compose", "-p", project, *files, "down", "--volumes", "--remove-orphans"],
        cwd=REPO,
        env=env,
        capture_output=True,
        timeout=300,
    )


def _start_receiver(client: docker.DockerClient, image: str, network: str, port: int) -> Any:
    source = (Path(__file__).with_name("alert_receiver.py")).read_text()
    return client.containers.run(
        image,
        ["-c", source, str(RECEIVER_PORT)],
        entrypoint=["python3"],
        name=RECEIVER_NAME,
        detach=True,
        network=network,
        ports={f"{RECEIVER_PORT}/tcp": ("127.0.0.1", port)},
        user="10001:10001",
        read_only=True,
        cap_drop=["ALL"],
        security_opt=["no-new-privileges:true"],
        # Not the compose project's: the API image carries the labels compose put on it when it
        # built it (project, service "api"), and a container inherits its image's labels.
        labels={
            **LABELS,
            "com.docker.compose.project": "",
            "com.docker.compose.service": "",
        },
    )


@contextlib.contextmanager
def monitoring_stack(client: docker.DockerClient, **settings: str) -> Iterator[Monitoring]:
    project = f"flask-stack-itest-mon-{RUN_ID}"
    https_port, http_port, prometheus_port, receiver_port = (free_port() for _ in range(4))
    env = {
        **os.environ,
        "MONITORING": "1",
        # Not the developer's stack: its own project, ports and image tag.
        "COMPOSE_PROJECT_NAME": project,
        "HTTPS_PORT": str(https_port),
        "HTTP_PORT": str(http_port),
        "PROMETHEUS_PORT": str(prometheus_port),
        "IMAGE_TAG": "itest",
        # The suite's requests all come from one address: no rate limit may refuse them.
        "RATE_LIMIT_ENABLED": "false",
        "ALERT_WEBHOOK_URL": f"http://{RECEIVER_NAME}:{RECEIVER_PORT}/alerts",
        **settings,
    }
    receiver = None
    try:
        done = subprocess.run(
            ["make", "up"], cwd=REPO, env=env, capture_output=True, text=True, timeout=900
        )
        assert done.returncode == 0, f"MONITORING=1 make up:\n{done.stdout}\n{done.stderr}"
        receiver = _start_receiver(
            client, f"flask-stack-api:{env['IMAGE_TAG']}", f"{project}_monitoring", receiver_port
        )
        stack = Monitoring(
            client=client,
            project=project,
            base_url=f"https://localhost:{https_port}",
            http_url=f"http://localhost:{http_port}",
            ca=REPO / "certs" / "ca.pem",
            prometheus=Prometheus(prometheus_port),
            receiver_url=f"http://127.0.0.1:{receiver_port}",
            env=env,
        )
        wait_until(
            lambda: isinstance(stack.notifications(), list), 30, what="the alert receiver to answer"
        )
        yield stack
    finally:
        if receiver is not None:
            with contextlib.suppress(docker.errors.APIError):
                receiver.remove(force=True)
        _compose_down(project, env)


def wait_for_scrape_after(prometheus: Prometheus, job: str, moment: float, timeout: float) -> None:
    """Wait until every target of `job` was scraped, successfully, after the unix time `moment`.

    From the raw `up` samples (a range vector): timestamp() of an instant query would give the
    query's own time for anything but a bare selector.
    """

    def scraped() -> bool:
        series = prometheus.query(f'up{{job="{job}"}}[1m]')
        newest = [s["values"][-1] for s in series]
        return bool(newest) and all(float(t) > moment and v == "1" for t, v in newest)

    wait_until(scraped, timeout, interval=0.5, what=f"a scrape of job {job} after {moment:.1f}")
