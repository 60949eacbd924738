"""Stopping the API container is graceful: requests in flight complete, none is lost or half-done.

- Directly at gunicorn (a dedicated one-worker API publishing :8000 on 127.0.0.1), the in-flight
  request is made deterministic: its body is still arriving when `docker stop` is issued. gunicorn
  must stop accepting, keep the container alive until that request is answered (201), then exit 0.
- With SHUTDOWN_DRAIN_SECONDS (a Swarm's setting), the container keeps accepting new connections
  for that long after its stop signal, so a proxy can notice it is going first; then it stops as
  gracefully.
- Through nginx, under steady load on the shared stack: every client gets an HTTP answer (201, or
  nginx's JSON 502/503/504 for requests that arrive after the API stopped accepting), every
  acknowledged user exists afterwards, no failed request wrote anything, and gunicorn exits 0.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests

from tests.support.clients import SlowUpload
from tests.support.domain import USERS_PATH, unique_email, user_body, user_url
from tests.support.http import assert_error_json, http_get
from tests.support.waiting import wait_until

GRACEFUL_TIMEOUT = 20  # GUNICORN_GRACEFUL_TIMEOUT of the containers stopped here


def answers(url: str) -> bool:
    try:
        return http_get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture
def victim(launcher) -> Iterator:
    api = launcher.api(
        "api-graceful",
        aliases=("api-graceful",),
        publish=True,
        env={
            "GUNICORN_WORKERS": "1",
            "GUNICORN_THREADS": "4",
            "GUNICORN_GRACEFUL_TIMEOUT": str(GRACEFUL_TIMEOUT),
        },
    )
    direct = f"http://127.0.0.1:{api.host_port(8000)}"
    wait_until(lambda: answers(direct + "/readyz"), 60, what="the API to answer directly")
    yield api, direct
    api.remove()


def test_request_in_flight_directly_at_gunicorn_completes_on_stop(victim):
    api, direct = victim
    email = unique_email("inflight")
    body = json.dumps(user_body("In Flight", email)).encode()
    client = SlowUpload("127.0.0.1", api.host_port(8000), USERS_PATH, body)
    for _ in range(3):  # part of the body is in; gunicorn is reading it
        client.send_byte()

    stopper = threading.Thread(target=api.stop, kwargs={"timeout": GRACEFUL_TIMEOUT + 20})
    started = time.monotonic()
    stopper.start()
    try:
        # SIGTERM has arrived when gunicorn refuses new connections ...
        wait_until(
            lambda: not answers(direct + "/healthz"),
            15,
            what="gunicorn to stop accepting connections",
        )
        # ... but it keeps running for the request still in flight.
        assert api.status() == "running"
        response = client.finish()
    finally:
        client.close()
        stopper.join(timeout=GRACEFUL_TIMEOUT + 30)

    status_line = response.split(b"\r\n", 1)[0]
    assert b" 201 " in status_line, response[:500]
    assert email.encode() in response
    state = api.container.attrs["State"]
    assert state["Status"] == "exited"
    assert state["ExitCode"] == 0, f"gunicorn did not exit cleanly: {state}"
    assert time.monotonic() - started < GRACEFUL_TIMEOUT, "the stop waited for a timeout"


@dataclass
class Outcome:
    email: str
    status: int | None
    response: requests.Response | None
    error: str | None = None


def test_stopping_the_api_under_load_through_nginx_loses_nothing(stack):
    outcomes: list[Outcome] = []
    done = threading.Event()

    def client() -> None:
        # Each client stops at its first failure (the API is gone; a real client backs off), so
        # the refusals stay few and each one can be checked below.
        with stack.session() as session:
            while not done.is_set() and all(o.status in (None, 201) for o in outcomes):
                email = unique_email("load")
                try:
                    response = session.post(
                        stack.url(USERS_PATH),
                        json=user_body("Under Load", email),
                        timeout=30,
                    )
                    outcomes.append(Outcome(email, response.status_code, response))
                except requests.RequestException as exc:
                    outcomes.append(Outcome(email, None, None, repr(exc)))

    threads = [threading.Thread(target=client) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        wait_until(
            lambda: sum(o.status == 201 for o in outcomes) >= 20, 30, what="load to be flowing"
        )
        stack.api.stop(timeout=GRACEFUL_TIMEOUT + 20)
        state = stack.api.container.attrs["State"]
    finally:
        done.set()
        for thread in threads:
            thread.join(timeout=60)
        stack.ensure_running()

    assert state["ExitCode"] == 0, f"gunicorn did not exit cleanly on SIGTERM: {state}"
    errors = [o for o in outcomes if o.error]
    assert not errors, f"requests without an HTTP answer: {[o.error for o in errors[:5]]}"
    created = [o for o in outcomes if o.status == 201]
    failed = [o for o in outcomes if o.status != 201]
    assert {o.status for o in failed} <= {502, 503, 504}, {o.status for o in failed}
    for outcome in failed:
        assert outcome.response is not None
        assert_error_json(outcome.response, outcome.response.status_code)

    # Every acknowledged write is there ...
    for outcome in created:
        user_id = outcome.response.json()["id"]
        assert stack.get(user_url(user_id)).status_code == 200, outcome.email
    # ... and no failed request wrote anything: its email is still free.
    for outcome in failed:
        again = stack.post(USERS_PATH, json=user_body("Retry", outcome.email))
        assert again.status_code == 201, (outcome.email, again.status_code, again.text)
    print(f"{len(created)} created, {len(failed)} refused while the API was down")


def test_a_draining_api_keeps_accepting_after_the_stop_signal(launcher):
    drain = 4
    api = launcher.api(
        "api-drain",
        publish=True,
        env={"SHUTDOWN_DRAIN_SECONDS": str(drain), "GUNICORN_GRACEFUL_TIMEOUT": "5"},
    )
    direct = f"http://127.0.0.1:{api.host_port(8000)}"
    wait_until(lambda: answers(direct + "/readyz"), 60, what="the API to answer directly")

    stopper = threading.Thread(target=api.stop, kwargs={"timeout": drain + 30})
    stopper.start()
    try:
        wait_until(
            lambda: f"serving {drain}s more" in api.logs(), 10, what="the entrypoint's drain"
        )
        # Signalled, and still answering new connections: a proxy that has not re-resolved yet
        # loses nothing.
        assert answers(direct + "/readyz"), "the API stopped accepting during the drain"
        assert api.status() == "running"
    finally:
        stopper.join(timeout=drain + 40)
    state = api.container.attrs["State"]
    assert state["ExitCode"] == 0, f"gunicorn did not exit cleanly after the drain: {state}"
    logs = api.logs()
    # gunicorn got the signal only after the drain (its own log line follows the entrypoint's).
    assert logs.index(f"serving {drain}s more") < logs.index("Handling signal: term"), logs[-2000:]
