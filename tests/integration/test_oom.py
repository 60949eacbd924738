"""OOM drill: a gunicorn worker that goes over the API container's memory limit is killed by the
kernel's OOM killer in the container's cgroup; gunicorn's master logs the death (a JSON line) and
starts a new worker; the container keeps running; the stack answers again within seconds; and
every write acknowledged with a 201, before or after the kill, can be read afterwards.

How a worker goes over the limit, with nothing added to the product: the API parses a JSON body in
full before it looks at anything else (services/api/src/api/web/json_body.py), and parsed JSON
takes ~30 times its size in Python objects, so a body of just under 1 MB of `[]` elements (within
nginx's and the API's 1 MiB cap) costs the worker that parses it ~30 MB until it answers 400. A
few of those at once are more than any limit leaves spare. The drill's API starts with the
compose limits (support/limits.py); once it serves, its memory limit is lowered, as a runtime
setting (`docker update`), to its usage plus MARGIN: room for the steady traffic of the drill, not
for several such bodies at once. Then rounds of them are sent through nginx until the master logs
a worker's SIGKILL. The kernel picks the largest process of the cgroup, which is then a worker in
the middle of parsing (the master never parses anything).
"""

from __future__ import annotations

import itertools
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest
import requests

from tests.support.containers import Stack
from tests.support.domain import (
    RESOURCES_PATH,
    USERS_PATH,
    auth,
    create_resource,
    resource_body,
    resource_label,
    resource_url,
)
from tests.support.http import json_lines
from tests.support.waiting import wait_until

MARGIN = 48 * 2**20  # bytes of memory above the warm API's usage that the lowered limit leaves
# A body of `[]` elements, just under 1 MB: ~30 MB of Python objects once parsed.
BIG_BODY = b'{"a":[' + b"[]," * 333_328 + b"[]]}"
BIG_AT_ONCE = 8  # bodies per round: enough for two workers x four threads
RECOVERY_LIMIT = 5.0  # seconds: the stack answers again within this long after a kill
WORKERS = 2  # the image's default on this project's machines (one per CPU, at least 2)
KILL_LINE = re.compile(r"^Worker \(pid:(\d+)\) was sent SIGKILL! Perhaps out of memory\?$")
BOOT_LINE = re.compile(r"^Booting worker with pid: (\d+)$")


@dataclass
class Traffic:
    """A writer (POST, the owner's key) and a reader (GET a public item) through nginx."""

    stack: Stack
    owner: dict[str, Any]
    public_item: dict[str, Any]
    stop: threading.Event = field(default_factory=threading.Event)
    acknowledged: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # a status or an exception, not a 201
    probes: list[tuple[float, bool]] = field(default_factory=list)  # (unix time, answered 200)

    def write(self) -> None:
        with self.stack.session() as session:
            index = 0
            while not self.stop.is_set():
                index += 1
                body = resource_body(f"oom-drill-{index}")
                try:
                    response = session.post(
                        self.stack.url(RESOURCES_PATH),
                        json=body,
                        headers=auth(self.owner),
                        timeout=10,
                    )
                except requests.RequestException as exc:
                    self.refused.append(type(exc).__name__)
                    continue
                if response.status_code == 201:
                    self.acknowledged.append((time.time(), response.json()))
                else:
                    self.refused.append(str(response.status_code))

    def read(self) -> None:
        path = self.stack.url(resource_url(self.public_item["id"]))
        with self.stack.session() as session:
            while not self.stop.wait(0.02):  # ~50 probes a second
                try:
                    ok = session.get(path, timeout=5).status_code == 200
                except requests.RequestException:
                    ok = False
                self.probes.append((time.time(), ok))


def send_big_bodies(stack: Stack, count: int) -> list[str]:
    """`count` unauthenticated sign-ups with BIG_BODY at once; each outcome (status or error)."""
    outcomes: list[str] = []

    def one() -> None:
        with stack.session() as session:
            try:
                response = session.post(
                    stack.url(USERS_PATH),
                    data=BIG_BODY,
                    headers={"Content-Type": "application/json"},
                    timeout=30,
                )
                outcomes.append(str(response.status_code))
            except requests.RequestException as exc:
                outcomes.append(type(exc).__name__)

    threads = [threading.Thread(target=one) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return outcomes


def gunicorn_lines(logs: str) -> list[dict[str, Any]]:
    return [e for e in json_lines(logs) if e.get("logger") == "gunicorn.error"]


def kills(logs: str) -> list[dict[str, Any]]:
    return [e for e in gunicorn_lines(logs) if KILL_LINE.match(e.get("message", ""))]


def unix_time(entry: dict[str, Any]) -> float:
    return datetime.fromisoformat(entry["ts"]).timestamp()


def memory_usage(container: Any) -> int:
    """Bytes the container's cgroup is charged (docker stats' raw usage, page cache included)."""
    return int(container.stats(stream=False, one_shot=True)["memory_stats"]["usage"])


@pytest.fixture
def drill_stack(launcher) -> Iterator[Stack]:
    api = launcher.api("oom-api", aliases=("oom-api",))
    nginx = launcher.nginx(
        "oom-nginx",
        upstream="oom-api:8000",
        env={"RATE_LIMIT_ENABLED": "false", "CONN_LIMIT_PER_IP": "1000"},
    )
    try:
        yield launcher.stack(api, nginx)
    finally:
        nginx.remove()
        api.remove()


def test_a_worker_over_the_memory_limit_is_killed_and_the_stack_loses_nothing(
    drill_stack, docker_client, figures
):
    stack = drill_stack
    api = stack.api
    started_at = api.container.attrs["State"]["StartedAt"]
    owner = stack.create_user("OOM Drill")
    traffic = Traffic(stack, owner, create_resource(stack, owner, "oom-probe", public=True))
    threads = [threading.Thread(target=traffic.write), threading.Thread(target=traffic.read)]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: len(traffic.acknowledged) >= 50, 30, what="writes to be acknowledged")
        usage = memory_usage(api.container)
        limit = usage + MARGIN
        api.container.update(mem_limit=limit, memswap_limit=limit)
        assert api.container.attrs["HostConfig"]["Memory"] == limit
        drill_began = time.time()

        def killed() -> list[dict[str, Any]]:
            send_big_bodies(stack, BIG_AT_ONCE)
            return kills(api.logs())

        killed_lines = wait_until(killed, 90, interval=0, what="a worker killed for its memory")
        last_kill = max(unix_time(e) for e in killed_lines)

        def recovered() -> bool:
            lines = gunicorn_lines(api.logs())
            booted_after = [
                e for e in lines if BOOT_LINE.match(e["message"]) and unix_time(e) > last_kill
            ]
            answered_after = [t for t, ok in traffic.probes if ok and t > last_kill]
            acknowledged_after = [t for t, _ in traffic.acknowledged if t > last_kill]
            return bool(booted_after and answered_after and len(acknowledged_after) >= 20)

        wait_until(recovered, 30, what="a new worker, answers and writes after the kill")
    finally:
        traffic.stop.set()
        for thread in threads:
            thread.join(timeout=30)

    # The kernel's OOM killer acted in the container's cgroup (Docker's "oom" event) ...
    events = list(
        docker_client.events(
            since=int(drill_began) - 1,
            until=int(time.time()) + 1,
            filters={"container": api.container.id, "event": "oom"},
            decode=True,
        )
    )
    assert events, "no OOM event for the API container"
    # ... on a worker: the master logged each death and is still the same process.
    logs = api.logs()
    lines = gunicorn_lines(logs)
    [listening] = [e for e in lines if e["message"].startswith("Listening at:")]
    master = listening["pid"]
    booted = [
        int(BOOT_LINE.match(e["message"]).group(1)) for e in lines if BOOT_LINE.match(e["message"])
    ]
    killed_lines = kills(logs)
    for entry in killed_lines:
        assert entry["pid"] == master, entry  # written by the master
        assert entry["level"] == "ERROR", entry
        assert int(KILL_LINE.match(entry["message"]).group(1)) in booted, entry  # a worker
    code, cmdline = api.exec(["cat", f"/proc/{master}/cmdline"])
    assert code == 0, (master, cmdline)
    assert "gunicorn" in cmdline, (master, cmdline)
    state = api.container.attrs["State"]
    assert state["Status"] == "running", state
    assert state["StartedAt"] == started_at, "the container was restarted"
    assert api.container.attrs["RestartCount"] == 0
    assert len(booted) - len(killed_lines) == WORKERS, (booted, killed_lines)

    # The stack answered again within seconds: the longest stretch without a successful probe
    # that spans a kill, and the first success after the last kill.
    answered = [t for t, ok in traffic.probes if ok]
    kill_times = sorted(unix_time(e) for e in killed_lines)
    gaps = [
        later - earlier
        for earlier, later in itertools.pairwise(answered)
        if any(earlier <= k <= later for k in kill_times)
    ]
    first_after = min(t for t in answered if t > last_kill) - last_kill
    boots_after_kills = [
        unix_time(e) - kill_times[0]
        for e in lines
        if BOOT_LINE.match(e["message"]) and unix_time(e) > kill_times[0]
    ]
    assert first_after <= RECOVERY_LIMIT, f"answered again {first_after:.2f}s after the last kill"
    assert max(gaps, default=0) <= RECOVERY_LIMIT, gaps

    # Nothing acknowledged is lost: every 201, before and after the kills, reads back as written.
    before = [body for t, body in traffic.acknowledged if t < kill_times[0]]
    after = [body for t, body in traffic.acknowledged if t > last_kill]
    assert before, "no write was acknowledged before the first kill"
    assert after, "no write was acknowledged after the last kill"
    with stack.session() as session:
        for _, body in traffic.acknowledged:
            response = session.get(stack.url(resource_url(body["id"])), headers=auth(owner))
            assert response.status_code == 200, (body["id"], response.status_code)
            assert resource_label(response.json()) == resource_label(body)

    figures["oom drill"] = {
        "limit_mib": round(limit / 2**20, 1),
        "usage_before_mib": round(usage / 2**20, 1),
        "oom_events": len(events),
        "workers_killed": len(killed_lines),
        "first_answer_after_last_kill_s": round(first_after, 3),
        "replacement_forked_after_first_kill_s": round(min(boots_after_kills), 3),
        "longest_gap_across_a_kill_s": round(max(gaps, default=0), 3),
        "failed_probes": sum(not ok for _, ok in traffic.probes),
        "probes": len(traffic.probes),
        "writes_acknowledged": len(traffic.acknowledged),
        "writes_refused": len(traffic.refused),
        "refusals": sorted(set(traffic.refused)),
        "acknowledged_then_lost": 0,
    }
