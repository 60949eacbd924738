"""Open-loop load: requests go out on a fixed schedule, whether or not earlier ones answered.

Unlike the keep-alive threads of clients.py (closed loop: a slow server slows the client down), a
schedule shows what a server that stalls costs its clients: every attempt is recorded with the
time it was due, its outcome and its failure class, so a drill can report how many failed and in
which window (the Swarm suite's rolling update, rollback and node failure).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import requests

from .clients import percentile
from .http import new_session


@dataclass(frozen=True)
class Call:
    """One request an OpenLoad sends: ``kind`` names it in the figures ("read", "write")."""

    kind: str
    method: str
    path: str
    kwargs: dict = field(default_factory=dict)
    # Send again after a failure (same request, e.g. the same Idempotency-Key), up to this many
    # attempts in all, as long as the whole operation is within OpenLoad.retry_for seconds.
    attempts: int = 1


@dataclass
class Attempt:
    """One attempt of a Call: when it was due and ended (time.monotonic), and what came back."""

    kind: str
    index: int  # the Call's slot number
    attempt: int  # 1 for the first send
    due: float
    ended: float
    status: int | None
    failure: str | None  # None, or one of FAILURE_CLASSES
    error: str = ""
    body: object = None  # the parsed JSON of a successful write (its id)


# What counts as a failed request. Timeouts and connection errors are told apart because a dead
# node shows as the first and a stopping server as the second.
FAILURE_CLASSES = ("429", "5xx", "4xx", "timeout", "connection", "other")


def classify(status: int | None, exc: BaseException | None, ok: Iterable[int]) -> str | None:
    if exc is not None:
        if isinstance(exc, requests.Timeout):
            return "timeout"
        if isinstance(exc, requests.ConnectionError):
            return "connection"
        return "other"
    assert status is not None
    if status in ok:
        return None
    if status == 429:
        return "429"
    if status >= 500:
        return "5xx"
    return "4xx"


def stale_keepalive(exc: BaseException | None) -> bool:
    """Whether `exc` is a server closing the connection before any byte of the response: the
    request went out on a keep-alive connection the server was closing as idle."""
    text = repr(exc)
    return "RemoteDisconnected" in text or "ConnectionResetError" in text


class OpenLoad:
    """Open-loop load on ``base_url``: call ``plan(i)`` for slot i and send it at t0 + i/rate.

    Each request is sent by a pool of ``workers`` threads (one keep-alive session each); when all
    are busy, due requests wait and that lag counts in their latency, as a real client's would:
    the generator never slows down because the server did. Every attempt is recorded with its
    due time and outcome, so the failures' window can be reported against the events of a test.
    One thing is not a failure, and is counted apart: a request the server never read because it
    closed the idle keep-alive connection just then, sent again once on a new connection (the
    retry RFC 9112 section 9.3.1 allows, which browsers and curl make on their own).
    """

    def __init__(
        self,
        base_url: str,
        ca: str,
        rate: float,
        plan: Callable[[int], Call],
        *,
        workers: int = 48,
        timeout: float = 5.0,
        ok: Iterable[int] = (200, 201),
        retry_for: float = 60.0,
    ) -> None:
        self.base_url = base_url
        self.ca = ca
        self.rate = rate
        self.plan = plan
        self.timeout = timeout
        self.ok = tuple(ok)
        self.retry_for = retry_for
        self.attempts: list[Attempt] = []
        self.started = 0.0
        self.stopped = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._due: list[tuple[int, float]] = []
        self._cond = threading.Condition()
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._scheduler = threading.Thread(target=self._schedule, name="openload", daemon=True)
        self._workers = [
            threading.Thread(target=self._work, name=f"openload-{i}", daemon=True)
            for i in range(workers)
        ]
        self.scheduled = 0

    # --- running --------------------------------------------------------------------------------

    def _schedule(self) -> None:
        index = 0
        while not self._stop.is_set():
            due = self.started + index / self.rate
            delay = due - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                break
            with self._cond:
                self._due.append((index, due))
                self._cond.notify()
            index += 1
        self.scheduled = index

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = new_session(self.ca)
            self._local.session = session
            with self._lock:
                self._sessions.append(session)
        return session

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._due and not self._stop.is_set():
                    self._cond.wait(0.5)
                if not self._due:
                    return  # stopped and nothing left to send
                index, due = self._due.pop(0)
            self._call(index, due)

    def _call(self, index: int, due: float) -> None:
        call = self.plan(index)
        stale_retried = False
        number = 0
        while True:
            number += 1
            status, exc, body = None, None, None
            reused = getattr(self._local, "used", False)
            try:
                response = self._session().request(
                    call.method, self.base_url + call.path, timeout=self.timeout, **call.kwargs
                )
                status = response.status_code
                if status in self.ok and call.method == "POST":
                    body = response.json()
                self._local.used = True
            except requests.RequestException as exc_:
                exc = exc_
                # A connection that failed may be half-open: start the next one afresh.
                self._local.session = None
                self._local.used = False
            failure = classify(status, exc, self.ok)
            if failure == "connection" and reused and not stale_retried and stale_keepalive(exc):
                # The server closed this idle keep-alive connection as the request went out
                # (nginx does so for every idle connection when it reloads). Sent again once, on a
                # new connection, as RFC 9112 section 9.3.1 allows and browsers and curl do;
                # counted apart (stale_keepalive_retries), not hidden.
                failure = "stale-keepalive"
            attempt = Attempt(
                kind=call.kind,
                index=index,
                attempt=number,
                due=due,
                ended=time.monotonic(),
                status=status,
                failure=failure,
                error=repr(exc) if exc is not None else "",
                body=body,
            )
            with self._lock:
                self.attempts.append(attempt)
            if failure == "stale-keepalive" and not stale_retried:
                stale_retried = True
                continue
            if failure is None or number >= call.attempts:
                return
            if time.monotonic() - due > self.retry_for:
                return
            # A retry after a pause: a 409 means the first send still runs (its lease).
            time.sleep(1.0 if status == 409 else 0.3)

    def __enter__(self) -> OpenLoad:
        self.started = time.monotonic() + 0.05
        for thread in self._workers:
            thread.start()
        self._scheduler.start()
        return self

    def stop(self) -> None:
        """Stop scheduling and wait for every request in flight (and its retries) to end."""
        self._stop.set()
        self._scheduler.join(timeout=10)
        self.stopped = time.monotonic()
        with self._cond:
            self._cond.notify_all()
        for thread in self._workers:
            thread.join(timeout=self.retry_for + self.timeout + 10)
        for session in self._sessions:
            session.close()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- results --------------------------------------------------------------------------------

    def failures(self) -> list[Attempt]:
        """Every failed attempt (a stale keep-alive connection sent again is not one)."""
        return [a for a in self.attempts if a.failure not in (None, "stale-keepalive")]

    def stale_keepalive(self) -> list[Attempt]:
        return [a for a in self.attempts if a.failure == "stale-keepalive"]

    def final(self) -> list[Attempt]:
        """The last attempt of each call: what the client ended up with."""
        last: dict[int, Attempt] = {}
        for attempt in sorted(self.attempts, key=lambda a: (a.index, a.attempt)):
            last[attempt.index] = attempt
        return list(last.values())

    def figures(self, since: float | None = None) -> dict[str, object]:
        """Counts per kind and failure class, the rate achieved, latencies, the failure window."""
        duration = self.stopped - self.started
        firsts = [a for a in self.attempts if a.attempt == 1]
        failures = self.failures()
        latencies = [a.ended - a.due for a in self.attempts if a.failure is None]
        by_class: dict[str, int] = {}
        for attempt in failures:
            assert attempt.failure is not None
            by_class[attempt.failure] = by_class.get(attempt.failure, 0) + 1
        kinds: dict[str, int] = {}
        for attempt in firsts:
            kinds[attempt.kind] = kinds.get(attempt.kind, 0) + 1
        figures: dict[str, object] = {
            "duration_s": round(duration, 1),
            "requests": len(firsts),
            "rate_per_s": round(len(firsts) / duration, 1) if duration > 0 else 0.0,
            "by_kind": kinds,
            "failed_attempts": len(failures),
            "failures_by_class": by_class,
            "failed_calls_in_the_end": sum(1 for a in self.final() if a.failure is not None),
            "failed_writes_in_the_end": sum(
                1 for a in self.final() if a.failure is not None and a.kind == "write"
            ),
            "retries": sum(1 for a in self.attempts if a.attempt > 1),
            "stale_keepalive_retries": len(self.stale_keepalive()),
            "p50_ms": round(percentile(latencies, 50) * 1000, 1) if latencies else None,
            "p99_ms": round(percentile(latencies, 99) * 1000, 1) if latencies else None,
            "max_ms": round(max(latencies) * 1000, 1) if latencies else None,
        }
        if failures:
            origin = self.started if since is None else since
            first = min(a.due for a in failures)
            last = max(a.due for a in failures)
            figures["failure_window_s"] = round(last - first, 2)
            figures["failures_from_s"] = round(first - origin, 2)
            figures["failures_to_s"] = round(last - origin, 2)
            figures["failure_examples"] = sorted({a.error or str(a.status) for a in failures})[:5]
        return figures
