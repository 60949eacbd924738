"""The app's Prometheus metrics (the contract: docs/operations.md, "The API").

One WSGI middleware, outermost, records every request once: the answer's count by method, route
template and status, and its duration by method and route.
The route is the url rule's template (``/api/users/<int:user_id>``), never the path; a request
that matched no rule (an unknown path, or a known path with a method it does not allow) is
``<unmatched>``, and a method no rule of the app knows is ``<other>``, so whatever a client
sends, the series are bounded by the app's rules. The label children are looked up once per
(method, route, status) and kept: ``.labels()`` costs more than recording.

What it costs decides the rest (docs/performance.md, "Metrics' cost"): each value a request
changes is a write to a memory-mapped file under a lock, ~7,000 instructions. A request changes
three (its count, its histogram's bucket and sum). The gauges are not kept per request: the
requests in flight (a plain count under a lock) and the database pool's checked-out connections
(``QueuePool.checkedout()``) are read once a second by a thread of each worker, which writes
them when they changed; so a scrape sees them as they were up to a second before.

Under gunicorn the values live in prometheus_client's multiprocess files (one per worker, in
``PROMETHEUS_MULTIPROC_DIR``) and gunicorn's master serves them (api/metrics_server.py). That
mode is chosen when prometheus_client is first imported, so nothing imports it before
gunicorn.conf.py has set the directory: this module imports it in ``init_metrics`` only.
Without the variable (tests, ``flask run``) the values stay in the process, in the app's own
registry (``app.extensions["api.metrics"].registry``).

Elsewhere: ``count_database_error`` (a database operation failed: 503, readiness, idempotency
records) and ``count_idempotent_replay``; both do nothing when metrics are off.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from time import perf_counter
from typing import TYPE_CHECKING, Any

from flask import Flask, Request, current_app
from sqlalchemy import Engine

from api.core.config import Settings

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment
    from prometheus_client import CollectorRegistry

UNMATCHED_ROUTE = "<unmatched>"
OTHER_METHOD = "<other>"
# Upper bounds of the duration histogram, in seconds; 0.5 is the p99 alert's default threshold
# (ALERT_P99_LATENCY_SECONDS), so the quantile is exact there. From 1 ms: most answers take a
# few milliseconds, and with 5 ms as the first bound every p99 below it read as ~5 ms.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Where the request object leaves itself for the middleware: Flask drops it from the environ
# ("werkzeug.request") when the request context ends, before the middleware gets control back.
_REQUEST_KEY = "api.metrics.request"
_EXTENSION = "api.metrics"
SAMPLE_INTERVAL = 1.0  # seconds between two readings of the gauges (multiprocess mode)


class AppMetrics:
    """The metrics one app records (prometheus_client objects)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.multiprocess = multiprocess = "PROMETHEUS_MULTIPROC_DIR" in os.environ
        # Multiprocess: the files are the registry (gunicorn's master collects them). Otherwise
        # the app's own registry, so that several apps in one process (tests) do not collide.
        self.registry: CollectorRegistry | None = None if multiprocess else CollectorRegistry()
        registry = self.registry
        self.requests = Counter(
            "api_http_requests",
            "Answers, by method, route template and status.",
            ("method", "route", "status"),
            registry=registry,
        )
        self.duration = Histogram(
            "api_http_request_duration_seconds",
            "Time to answer, by method and route template.",
            ("method", "route"),
            buckets=BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(
            "api_http_requests_in_flight",
            "Requests being answered now.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.database_errors = Counter(
            "api_database_errors", "Database operations that failed.", registry=registry
        )
        self.idempotent_replays = Counter(
            "api_idempotent_replays",
            "POSTs answered from the stored result of their Idempotency-Key.",
            registry=registry,
        )
        self.pool_checked_out = Gauge(
            "api_db_pool_checked_out",
            "Database connections taken from the pools now.",
            registry=registry,
            multiprocess_mode="livesum",
        )


class _Middleware:
    """Records each request (see the module docstring); wraps the app's ``wsgi_app``."""

    def __init__(
        self, wsgi_app: WSGIApplication, metrics: AppMetrics, methods: set[str], engine: Engine
    ):
        self.wsgi_app = wsgi_app
        self.metrics = metrics
        self.methods = frozenset(methods)
        # (method, route, status) -> (counter child, histogram child)
        self.children: dict[tuple[str, str, str], tuple[Any, Any]] = {}
        self.in_flight = 0
        self.lock = threading.Lock()
        pool = engine.pool
        self.pool_checked_out: Callable[[], int] = getattr(pool, "checkedout", lambda: 0)
        if metrics.multiprocess:
            # Started by the first request of each process: a thread does not survive a fork.
            self.sampling = False
            os.register_at_fork(after_in_child=self._forked)
        else:
            # One process: the gauges read the values themselves when collected.
            self.sampling = True
            metrics.in_flight.set_function(lambda: self.in_flight)
            metrics.pool_checked_out.set_function(self.pool_checked_out)

    def _forked(self) -> None:
        self.sampling = False

    def _start_sampling(self) -> None:
        with self.lock:
            if self.sampling:
                return
            self.sampling = True
        threading.Thread(target=self._sample, name="metrics-sampler", daemon=True).start()

    def _sample(self) -> None:
        """Write the gauges once a second, when they changed (the thread of one process)."""
        written: tuple[int, int] | None = None
        while True:
            now = (self.in_flight, self.pool_checked_out())
            if now != written:
                self.metrics.in_flight.set(now[0])
                self.metrics.pool_checked_out.set(now[1])
                written = now
            time.sleep(SAMPLE_INTERVAL)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if not self.sampling:
            self._start_sampling()
        with self.lock:
            self.in_flight += 1
        started = perf_counter()
        status = "500"  # if the app raises before it starts a response

        def recording_start_response(
            status_line: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Callable[[bytes], object]:
            nonlocal status
            status = status_line[:3]
            return start_response(status_line, headers, exc_info)

        try:
            return self.wsgi_app(environ, recording_start_response)
        finally:
            elapsed = perf_counter() - started
            with self.lock:
                self.in_flight -= 1
            method = environ.get("REQUEST_METHOD", "")
            if method not in self.methods:
                method = OTHER_METHOD
            # Popped: the request refers to the environ, which must not refer back to it.
            request = environ.pop(_REQUEST_KEY, None)
            rule = request.url_rule if request is not None else None
            key = (method, rule.rule if rule is not None else UNMATCHED_ROUTE, status)
            children = self.children.get(key)
            if children is None:
                children = self.children[key] = self._children(*key)
            children[0].inc()
            children[1].observe(elapsed)

    def _children(self, method: str, route: str, status: str) -> tuple[Any, Any]:
        return (
            self.metrics.requests.labels(method, route, status),
            self.metrics.duration.labels(method, route),
        )


def _request_leaving_itself(base: type[Request]) -> type[Request]:
    """The app's request class, which also puts itself in the environ under _REQUEST_KEY: the
    url rule it matched is then read after the request, with no hook of Flask's (a teardown
    hook cost 20,000 instructions a request, the rest of the recording 40,000)."""

    class MetricsRequest(base):  # type: ignore[valid-type,misc]
        def __init__(
            self, environ: WSGIEnvironment, populate_request: bool = True, shallow: bool = False
        ) -> None:
            super().__init__(environ, populate_request, shallow)
            environ[_REQUEST_KEY] = self

    return MetricsRequest


def init_metrics(app: Flask, settings: Settings) -> None:
    """Record the app's metrics (unless METRICS_ENABLED is false). Call last in create_app:
    the known methods are those of the rules registered by then, and the middleware must be
    the outermost so that its time covers everything else."""
    if not settings.metrics_enabled:
        return
    metrics = AppMetrics()
    app.extensions[_EXTENSION] = metrics
    methods = {method for rule in app.url_map.iter_rules() for method in rule.methods or ()}
    app.request_class = _request_leaving_itself(app.request_class)
    engine = app.extensions["api.db"].engine
    # Flask's documented way to add WSGI middleware, which mypy sees as replacing a method.
    app.wsgi_app = _Middleware(  # type: ignore[method-assign]
        app.wsgi_app, metrics, methods, engine
    )


def _metrics() -> AppMetrics | None:
    metrics: AppMetrics | None = current_app.extensions.get(_EXTENSION)
    return metrics


def count_database_error() -> None:
    """A database operation failed (in a request or its hooks)."""
    if (metrics := _metrics()) is not None:
        metrics.database_errors.inc()


def count_idempotent_replay() -> None:
    """A POST was answered from its Idempotency-Key's stored result."""
    if (metrics := _metrics()) is not None:
        metrics.idempotent_replays.inc()
