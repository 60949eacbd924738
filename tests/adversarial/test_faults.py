"""Fault drills under load, on an API + nginx pair of this module's own (the shared stack is never
touched): kill -9 a gunicorn worker, SIGTERM the API container, restart it mid-write-load.

Load: CLIENTS threads, each on its own keep-alive session through nginx (rate limits off), each
request recorded with its start and end time, its status and the email it tried to register.

- kill -9 of one worker: the master forks a replacement; requests that fail must be ones that
  were in flight while the kill happened, and they fail with nginx's JSON 502, never a hang.
  Every POST carries an Idempotency-Key, and every failed one is retried with it, as a client
  should: a write that was committed before the kill (`failed_but_committed`) comes back as the
  stored answer, one that was not runs now. Every acknowledged or retried write exists exactly
  once.
- SIGTERM (`docker stop`) under write load: gunicorn stops accepting, finishes what it holds and
  exits 0. Requests then get nginx's JSON 502 (nothing was written: their email is still free).
  LOST = a 201 whose user is missing + an error whose write happened anyway + a request with no
  HTTP answer at all. Target 0.
- `docker restart` mid-write-load: every user acknowledged with 201 (before, across and after the
  restart) is in the database afterwards, on the same volume; every refused write left nothing.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import requests

from tests.support.containers import own_stack
from tests.support.domain import USERS_PATH, unique_email, user_body
from tests.support.http import assert_error_json, new_session
from tests.support.waiting import wait_until

CLIENTS = 4
WORKERS = 3
GRACEFUL_TIMEOUT = 20
BACKOFF = 0.05  # seconds a client waits after a failed request
# A killed worker's claim on its Idempotency-Key holds this long (the image's default is 30 s):
# retries of its request get a 409 until then. Shorter here only to keep the drill quick.
LEASE_SECONDS = 5


@dataclass
class Attempt:
    email: str
    name: str
    started: float
    key: str = field(default_factory=lambda: str(uuid.uuid4()))
    ended: float = 0.0
    status: int | None = None
    response: requests.Response | None = None
    error: str | None = None


@dataclass
class WriteLoad:
    """CLIENTS threads signing up users through nginx until stopped."""

    stack: object
    attempts: list[Attempt] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop_event: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    def _client(self) -> None:
        with new_session(str(self.stack.ca)) as session:
            while not self.stop_event.is_set():
                email = unique_email("fault")
                attempt = Attempt(email, f"Fault {email.split('@')[0]}", time.monotonic())
                try:
                    response = session.post(
                        self.stack.url(USERS_PATH),
                        json=user_body(attempt.name, attempt.email),
                        headers={"Idempotency-Key": attempt.key},
                        timeout=30,
                    )
                    attempt.status, attempt.response = response.status_code, response
                except requests.RequestException as exc:
                    attempt.error = repr(exc)
                attempt.ended = time.monotonic()
                with self.lock:
                    self.attempts.append(attempt)
                if attempt.status != 201:
                    self.stop_event.wait(BACKOFF)  # as a real client would, not a busy loop

    def __enter__(self) -> WriteLoad:
        self.threads = [threading.Thread(target=self._client) for _ in range(CLIENTS)]
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(timeout=60)

    def created_since(self, moment: float) -> int:
        with self.lock:
            return sum(a.status == 201 and a.started > moment for a in self.attempts)


def gunicorn_processes(api) -> dict[int, int]:
    """{pid: ppid} of the gunicorn processes in the API container (from /proc)."""
    code, output = api.exec(
        [
            "sh",
            "-c",
            'for d in /proc/[0-9]*; do [ "${d#/proc/}" = "$$" ] && continue; '
            'c=$(tr "\\0" " " < "$d/cmdline" 2>/dev/null) || continue; '
            'case "$c" in *bin/gunicorn*) echo "${d#/proc/} $(cut -d" " -f4 "$d/stat")";; esac; '
            "done",
        ]
    )
    assert code == 0, output
    return {int(pid): int(ppid) for pid, ppid in (line.split() for line in output.splitlines())}


def workers_of(api) -> tuple[int, set[int]]:
    processes = gunicorn_processes(api)
    masters = [pid for pid, ppid in processes.items() if ppid not in processes]
    assert len(masters) == 1, processes
    master = masters[0]
    return master, {pid for pid, ppid in processes.items() if ppid == master}


class Checker:
    """What is in the database afterwards: every user's id and (unique) name, paged through."""

    def __init__(self, stack) -> None:
        self.ids: set[int] = set()
        self.names: Counter[str] = Counter()
        with new_session(str(stack.ca)) as session:
            cursor = ""
            while True:
                page = session.get(stack.url(f"{USERS_PATH}?limit=100{cursor}"), timeout=10)
                assert page.status_code == 200, page.text
                body = page.json()
                self.ids |= {user["id"] for user in body["items"]}
                self.names.update(user["name"] for user in body["items"])
                if body["next_cursor"] is None:
                    break
                cursor = f"&cursor={body['next_cursor']}"

    def user_exists(self, attempt: Attempt) -> bool:
        assert attempt.response is not None
        return attempt.response.json()["id"] in self.ids

    def was_written(self, attempt: Attempt) -> bool:
        return attempt.name in self.names

    def copies(self, attempt: Attempt) -> int:
        return self.names[attempt.name]


def retry_with_key(stack, attempt: Attempt) -> requests.Response:
    """Send the attempt again with its Idempotency-Key until it gets a final answer.

    A 409 says the key's claim is still held (by the killed worker, until its lease lapses).
    """

    def once() -> requests.Response | None:
        response = stack.post(
            USERS_PATH,
            json=user_body(attempt.name, attempt.email),
            headers={"Idempotency-Key": attempt.key},
            timeout=30,
        )
        return response if response.status_code != 409 and response.status_code < 500 else None

    return wait_until(once, LEASE_SECONDS + 30, interval=0.5, what=f"a retry of {attempt.email}")


@dataclass
class Outcome:
    """A write load's attempts sorted by what happened to them, checked against the database."""

    acked: list[Attempt]
    refused: list[Attempt]
    no_answer: list[Attempt]
    missing: list[str]
    ghost_writes: list[str]

    @classmethod
    def of(cls, stack, attempts: list[Attempt]) -> Outcome:
        acked = [a for a in attempts if a.status == 201]
        refused = [a for a in attempts if a.status is not None and a.status != 201]
        check = Checker(stack)
        return cls(
            acked=acked,
            refused=refused,
            no_answer=[a for a in attempts if a.status is None],
            missing=[a.email for a in acked if not check.user_exists(a)],
            ghost_writes=[a.email for a in refused if check.was_written(a)],
        )


@pytest.fixture(scope="module")
def victim(launcher) -> Iterator:
    view = own_stack(
        launcher,
        "api-faults",
        api_env={
            "GUNICORN_WORKERS": str(WORKERS),
            "GUNICORN_GRACEFUL_TIMEOUT": str(GRACEFUL_TIMEOUT),
            "IDEMPOTENCY_LEASE_SECONDS": str(LEASE_SECONDS),
        },
        nginx_env={"RATE_LIMIT_ENABLED": "false", "CONN_LIMIT_PER_IP": "1000"},
    )
    yield view
    view.api.remove()
    view.nginx.remove()


def test_kill_9_of_a_worker_fails_only_requests_in_flight(victim, figures):
    def all_booted() -> tuple[int, set[int]] | None:
        # The stack answers once one worker is up; the master forks the others one by one.
        found = workers_of(victim.api)
        return found if len(found[1]) == WORKERS else None

    master, workers = wait_until(
        all_booted, 30, interval=0.2, what=f"gunicorn's {WORKERS} workers to boot"
    )
    target = min(workers)
    with WriteLoad(victim) as load:
        wait_until(lambda: load.created_since(0) >= 30, 30, what="load to flow")
        before = time.monotonic()
        code, output = victim.api.exec(["sh", "-c", f"kill -9 {target}"])
        after = time.monotonic()
        assert code == 0, output

        def replaced() -> bool:
            now_master, now_workers = workers_of(victim.api)
            return (
                now_master == master and target not in now_workers and len(now_workers) == WORKERS
            )

        wait_until(replaced, 30, interval=0.2, what="the master to replace the killed worker")
        wait_until(lambda: load.created_since(after) >= 30, 30, what="load to flow again")

    failed = [a for a in load.attempts if a.status != 201]
    in_flight = [a for a in load.attempts if a.started <= after and a.ended >= before]
    # A worker killed between its COMMIT and its response leaves the client a 502 for a write
    # that happened; the retry with the same key gets that write's stored answer.
    committed = Checker(victim)
    retries = {a.key: retry_with_key(victim, a) for a in failed}
    check = Checker(victim)
    figures["kill_9_worker"] = {
        "requests": len(load.attempts),
        "failed": len(failed),
        "in_flight_during_kill": len(in_flight),
        "failed_statuses": sorted({a.status for a in failed}, key=str),
        "failed_but_committed": sum(committed.was_written(a) for a in failed),
        "retries_replayed": sum(
            r.headers.get("Idempotent-Replayed") == "true" for r in retries.values()
        ),
    }
    # A worker killed between writing its headers and its body leaves nginx with the status line
    # already passed on: all it can do is cut the body short (IncompleteRead at the client). Such a
    # request was in flight, like a 502; any other transport error means nobody answered at all.
    cut_short = [a for a in failed if a.error and "IncompleteRead" in a.error]
    figures["kill_9_worker"]["answer_cut_short"] = len(cut_short)
    assert not [a.error for a in failed if a.error and a not in cut_short], (
        "requests without an HTTP answer"
    )
    assert all(a.started <= after and a.ended >= before for a in failed), (
        "a request that was not in flight during the kill failed"
    )
    assert len(failed) <= len(in_flight)
    for attempt in failed:
        if attempt not in cut_short:
            assert_error_json(attempt.response, 502)
    # Whatever was acknowledged, or retried, is there exactly once; a retry of a write that was
    # committed is its stored answer, not a second user.
    assert all(check.user_exists(a) for a in load.attempts if a.status == 201)
    for attempt in failed:
        retry = retries[attempt.key]
        assert retry.status_code == 201, retry.text
        assert retry.json()["id"] in check.ids
        replayed = retry.headers.get("Idempotent-Replayed") == "true"
        assert replayed == committed.was_written(attempt), attempt.email
    assert all(check.copies(a) == 1 for a in load.attempts if a.status == 201 or a in failed)


def test_sigterm_under_load_loses_nothing(victim, figures):
    with WriteLoad(victim) as load:
        wait_until(lambda: load.created_since(0) >= 30, 30, what="load to flow")
        stop_at = time.monotonic()
        victim.api.stop(timeout=GRACEFUL_TIMEOUT + 20)  # SIGTERM; SIGKILL only after that
        stopped_at = time.monotonic()
        state = victim.api.container.attrs["State"]
        # Keep the load on a moment after the stop: those requests must be refused cleanly.
        wait_until(
            lambda: sum(a.started > stopped_at for a in load.attempts) >= CLIENTS,
            30,
            what="requests after the stop",
        )
    victim.ensure_running()

    outcome = Outcome.of(victim, load.attempts)
    acked, refused, no_answer = outcome.acked, outcome.refused, outcome.no_answer
    missing, ghost_writes = outcome.missing, outcome.ghost_writes
    across = [a for a in acked if a.started < stop_at < a.ended]
    lost = len(missing) + len(ghost_writes) + len(no_answer)
    figures["sigterm_api"] = {
        "requests": len(load.attempts),
        "acknowledged_201": len(acked),
        "completed_across_sigterm": len(across),
        "refused_after_stop": len(refused),
        "refused_statuses": sorted({a.status for a in refused}),
        "lost": lost,
        "stop_seconds": round(stopped_at - stop_at, 2),
        "exit_code": state["ExitCode"],
    }
    assert state["ExitCode"] == 0, f"gunicorn did not exit cleanly on SIGTERM: {state}"
    assert stopped_at - stop_at < GRACEFUL_TIMEOUT, "the stop waited for the kill timeout"
    assert lost == 0, figures["sigterm_api"]
    assert {a.status for a in refused} <= {502, 503, 504}, figures["sigterm_api"]
    for attempt in refused:
        assert_error_json(attempt.response, attempt.status)


def test_restart_mid_write_load_keeps_every_acknowledged_write(victim, figures):
    with WriteLoad(victim) as load:
        wait_until(lambda: load.created_since(0) >= 30, 30, what="load to flow")
        restart_at = time.monotonic()
        victim.api.restart(timeout=GRACEFUL_TIMEOUT + 20)
        restarted_at = time.monotonic()
        wait_until(
            lambda: load.created_since(restarted_at) >= 30,
            60,
            interval=0.2,
            what="writes to succeed after the restart",
        )
    victim.wait_ready()

    outcome = Outcome.of(victim, load.attempts)
    acked, refused, no_answer = outcome.acked, outcome.refused, outcome.no_answer
    missing, ghost_writes = outcome.missing, outcome.ghost_writes
    figures["restart_api"] = {
        "requests": len(load.attempts),
        "acknowledged_201": len(acked),
        "acknowledged_after_restart": load.created_since(restarted_at),
        "refused_during_restart": len(refused),
        "refused_statuses": sorted({a.status for a in refused}),
        "no_answer": len(no_answer),
        "missing_after_restart": len(missing),
        "ghost_writes": len(ghost_writes),
        "restart_seconds": round(restarted_at - restart_at, 2),
    }
    assert not missing, f"acknowledged writes lost: {missing[:5]}"
    assert not ghost_writes, f"refused writes that happened anyway: {ghost_writes[:5]}"
    assert not no_answer, [a.error for a in no_answer[:5]]
    assert {a.status for a in refused} <= {502, 503, 504}, figures["restart_api"]
    assert sum(a.started < restart_at for a in acked) >= 30
