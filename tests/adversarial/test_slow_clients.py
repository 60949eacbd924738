"""Slowloris: 200 connections trickling headers or bodies while ordinary clients carry on.

The attacker (slowloris.py, its own process) holds 200 TLS connections to nginx: 100 trickle an
endless header block, 100 trickle the body of a POST, one byte each every 0.5 s, and every
connection nginx cuts is replaced at once. Meanwhile two ordinary clients (keep-alive sessions,
one request every ~20 ms each: reads, an authenticated write) run for ATTACK_SECONDS.

It runs against the shared stack, whose nginx has rate and connection limits OFF
(RATE_LIMIT_ENABLED=false, CONN_LIMIT_PER_IP=1000): every local client reaches nginx from the
same address, so with the default CONN_LIMIT_PER_IP=50 nginx would refuse the slow POSTs past
the 50th with a 429 -- a defence, but one that would also hide whether the buffering holds.
What is measured here is the buffering itself: nginx reads headers and bodies, gunicorn sees a
request only once it is complete, so slow clients cost nginx a few KB each and no worker.

Pass: ordinary p99 < 100 ms during the attack, no ordinary request failed or got a 5xx, no slow
client was answered with a 5xx, and the attacker really held its 200 connections. (A window that
misses the budget is measured again, attack still on, up to three times: see the test.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.support.clients import Load, percentile
from tests.support.domain import (
    RESOURCES_PATH,
    bearer,
    create_resource,
    resource_body,
    resource_url,
)
from tests.support.waiting import wait_until

SLOW = 200
ATTACK_SECONDS = 15
BASELINE_SECONDS = 3
P99_BUDGET = 0.100
WINDOWS = 3  # attack windows measured at most (see the test)
REPO = Path(__file__).resolve().parents[2]


def ordinary_traffic(stack, key: str, resource_id: int):
    """Reads and writes an ordinary client makes, cycling; one request per call."""
    counter = iter(range(10**9))
    headers = bearer(key)

    def send(session):
        n = next(counter)
        if n % 4 == 0:
            return session.post(
                stack.url(RESOURCES_PATH),
                json=resource_body(f"ordinary {n}"),
                headers=headers,
                timeout=10,
            )
        if n % 4 == 1:
            return session.get(stack.url(resource_url(resource_id)), headers=headers, timeout=10)
        return session.get(stack.url(f"{RESOURCES_PATH}?limit=5"), timeout=10)

    return send


class Attacker:
    def __init__(self, port: int, ca: str) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.adversarial.slowloris",
                "--port",
                str(port),
                "--ca",
                ca,
                "--connections",
                str(SLOW),
                "--seconds",
                "120",
            ],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.strip())

    def ready(self) -> int:
        if self.process.poll() is not None:
            raise AssertionError(f"attacker exited: {self.process.stderr.read()[-2000:]}")
        for line in self.lines:
            if line.startswith("READY "):
                return int(line.split()[1]) or -1
        return 0

    def finish(self) -> dict:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        finally:
            if self.process.poll() is None:
                self.process.kill()
        self._reader.join(timeout=5)
        for line in self.lines:
            if line.startswith("SUMMARY "):
                return json.loads(line[len("SUMMARY ") :])
        raise AssertionError(f"no summary from the attacker: {self.lines[-5:]}")


def run_load(stack, key: str, resource_id: int, seconds: float) -> Load:
    load = Load(str(stack.ca), ordinary_traffic(stack, key, resource_id), threads=2, pause=0.02)
    with load:
        time.sleep(seconds)  # the load runs for a fixed duration; nothing is awaited here
    return load


@pytest.mark.timeout(120, func_only=True)
def test_slowloris_does_not_slow_ordinary_clients(stack, figures):
    owner = stack.create_user("Ordinary Client")
    key = owner["api_key"]
    probe = create_resource(stack, owner, "probe")["id"]

    baseline = run_load(stack, key, probe, BASELINE_SECONDS).result

    attacker = Attacker(stack.https_port, str(stack.ca))
    windows = []
    try:
        opened = wait_until(attacker.ready, 30, interval=0.1, what="200 slow connections")
        # Latency on a shared 2-core machine is noisy (other builds run beside the suite), so a
        # window that misses the budget is measured again, the attack still on, up to WINDOWS
        # times; a real degradation misses it every time. Every window is reported.
        for _ in range(WINDOWS):
            under_attack = run_load(stack, key, probe, ATTACK_SECONDS).result
            windows.append(under_attack)
            if percentile(under_attack.latencies, 99) < P99_BUDGET:
                break
    finally:
        summary = attacker.finish()

    p50 = percentile(under_attack.latencies, 50)
    p99 = percentile(under_attack.latencies, 99)
    slow_5xx = {k: v for k, v in summary["answers"].items() if k.split(":")[1].startswith("5")}
    figures["slow_clients"] = {
        "slow_connections": SLOW,
        "attack_seconds": ATTACK_SECONDS,
        "attacker": summary,
        "ordinary_requests": under_attack.count,
        "ordinary_statuses": under_attack.statuses,
        "ordinary_errors": len(under_attack.errors),
        "p50_ms": round(p50 * 1000, 1),
        "p99_ms": round(p99 * 1000, 1),
        "max_ms": round(max(under_attack.latencies) * 1000, 1),
        "baseline_p99_ms": round(percentile(baseline.latencies, 99) * 1000, 1),
        "baseline_requests": baseline.count,
        "p99_ms_per_window": [
            round(percentile(window.latencies, 99) * 1000, 1) for window in windows
        ],
    }
    assert opened == SLOW, f"the attacker opened only {opened} connections"
    assert summary["min_open"] >= SLOW * 0.95, summary
    assert summary["open_error_count"] == 0, summary
    for window in windows:  # every window, not only the one that is judged for latency
        assert not window.errors, window.errors[:5]
        assert window.server_errors() == 0, window.statuses
        assert set(window.statuses) <= {200, 201}, window.statuses
    assert under_attack.count >= 100, f"only {under_attack.count} ordinary requests"
    assert not slow_5xx, summary["answers"]
    if p99 >= P99_BUDGET:
        # Say whether the machine itself was the cause: the same load again, no attack.
        control = run_load(stack, key, probe, BASELINE_SECONDS).result
        figures["slow_clients"]["control_p99_ms_after"] = round(
            percentile(control.latencies, 99) * 1000, 1
        )
    assert p99 < P99_BUDGET, (
        f"p99 {p99 * 1000:.0f} ms under attack in every window (a control p99 near it means "
        f"the machine was too busy to judge): {figures['slow_clients']}"
    )
    # nginx cut the endless header blocks (client_header_timeout) and the attacker came back.
    assert summary["reconnects"] >= SLOW // 2, summary
    # Afterwards the stack serves as before.
    assert stack.get(RESOURCES_PATH).status_code == 200
