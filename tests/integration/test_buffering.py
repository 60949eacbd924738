"""Request buffering: slow clients tie up nginx buffers, never gunicorn's workers.

A dedicated API runs with ONE gunicorn worker of TWO threads, behind its own nginx (limits off),
and publishes :8000 on 127.0.0.1 for this module only. SLOW_CLIENTS raw connections send their
headers and then trickle a POST body a byte at a time, three times as many as gunicorn has slots.

- Through nginx, an ordinary request still completes promptly.
- The control: the same slow clients aimed straight at gunicorn DO block an ordinary direct
  request, so the first result is nginx's doing and not a roomy server.
"""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Iterator

import pytest
import requests

from tests.support.clients import SlowUpload, Trickler
from tests.support.domain import USERS_PATH, unique_email, user_body
from tests.support.http import http_get
from tests.support.waiting import wait_until

SLOTS = 2  # GUNICORN_WORKERS=1 x GUNICORN_THREADS=2
SLOW_CLIENTS = 3 * SLOTS
PROMPT = 5.0  # seconds an ordinary request may take while the slow clients trickle


def slow_body() -> bytes:
    # Padded so that trickling it at 4 bytes/s would take minutes: the clients never finish.
    body = json.dumps(user_body("Slow Client", unique_email("slow")))
    return (body + " " * 600).encode()


@pytest.fixture(scope="module")
def small(launcher) -> Iterator:
    api = launcher.api(
        "api-slots",
        aliases=("api-slots",),
        publish=True,
        env={"GUNICORN_WORKERS": "1", "GUNICORN_THREADS": "2", "GUNICORN_WORKER_CLASS": "gthread"},
    )
    nginx = launcher.nginx(
        "nginx-slots", upstream="api-slots:8000", env={"RATE_LIMIT_ENABLED": "false"}
    )
    view = launcher.stack(api, nginx)
    direct = f"http://127.0.0.1:{api.host_port(8000)}"
    wait_until(
        lambda: http_get(direct + "/readyz", timeout=5).status_code == 200,
        60,
        what="the one-worker API to answer directly",
    )
    yield view, direct
    nginx.remove()
    api.remove()


def test_slow_clients_through_nginx_do_not_block_others(small):
    view, direct = small
    tls = ssl.create_default_context(cafile=str(view.ca))
    clients = [
        SlowUpload("127.0.0.1", view.https_port, USERS_PATH, slow_body(), tls=tls)
        for _ in range(SLOW_CLIENTS)
    ]
    with Trickler(clients) as trickler:
        trickler.wait_sent(4)
        started = time.monotonic()
        response = view.post(USERS_PATH, json=user_body("Ordinary"), timeout=PROMPT)
        elapsed = time.monotonic() - started
        assert response.status_code == 201, response.text
        assert elapsed < PROMPT, f"an ordinary request took {elapsed:.1f}s"
        # gunicorn itself is idle: nginx holds the slow bodies.
        assert http_get(direct + "/healthz", timeout=PROMPT).status_code == 200
        assert not trickler.broken, f"slow clients were cut off early: {trickler.broken}"
        assert all(0 < client.sent < len(client.body) for client in clients)


def test_control_the_same_slow_clients_block_gunicorn_directly(small):
    view, direct = small
    port = view.api.host_port(8000)
    assert http_get(direct + "/healthz", timeout=PROMPT).status_code == 200  # baseline

    clients = [SlowUpload("127.0.0.1", port, USERS_PATH, slow_body()) for _ in range(SLOW_CLIENTS)]
    with Trickler(clients) as trickler:
        trickler.wait_sent(4)
        with pytest.raises(requests.exceptions.Timeout):
            http_get(direct + "/healthz", timeout=(PROMPT, 3))
        assert not trickler.broken, f"slow clients were cut off early: {trickler.broken}"

    # Once the slow clients are gone, the same request works again.
    wait_until(
        lambda: http_get(direct + "/healthz", timeout=3).status_code == 200,
        30,
        what="gunicorn to serve again after the slow clients left",
    )
