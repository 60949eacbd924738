"""The app's Prometheus metrics (the contract: docs/operations.md, "The API").

One WSGI middleware, outermost, records every request once: in flight while the app runs, then
the answer's count by method, route template and status, and its duration by method and route.
The route is the url rule's template (``/api/items/<int:item_id>``), never the path; a request
that matched no rule (an unknown path, or a known path with a method it does not allow) is
``<unmatched>``, and a method no rule of the app knows is ``<other>``, so whatever a client
sends, the series are bounded by the app's rules. The label children are looked up once per
(method, route, status) and kept: ``.labels()`` costs more than recording.

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
from collections.abc import Callable, Iterable
from time import perf_counter
from typing import TYPE_CHECKING, Any

from flask import Flask, current_app, request
from sqlalchemy import Engine, event

from api.core.config import Settings

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment
    from prometheus_client import CollectorRegistry

UNMATCHED_ROUTE = "<unmatched>"
OTHER_METHOD = "<other>"
# Upper bounds of the duration histogram, in seconds; 0.5 is the p99 alert's default threshold
# (ALERT_P99_LATENCY_SECONDS), so the quantile is exact there.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Where the teardown hook leaves the route for the middleware (Flask drops the request object
# from the environ when the request context ends, before the middleware gets control back).
_ROUTE_KEY = "api.metrics.route"
_EXTENSION = "api.metrics"


class AppMetrics:
    """The metrics one app records (prometheus_client objects)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        multiprocess = "PROMETHEUS_MULTIPROC_DIR" in os.environ
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

    def __init__(self, wsgi_app: WSGIApplication, metrics: AppMetrics, methods: set[str]):
        self.wsgi_app = wsgi_app
        self.metrics = metrics
        self.methods = frozenset(methods)
        self.in_flight = metrics.in_flight
        # (method, route, status) -> (counter child, histogram child)
        self.children: dict[tuple[str, str, str], tuple[Any, Any]] = {}

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        self.in_flight.inc()
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
            self.in_flight.dec()
            method = environ.get("REQUEST_METHOD", "")
            if method not in self.methods:
                method = OTHER_METHOD
            key = (method, environ.get(_ROUTE_KEY, UNMATCHED_ROUTE), status)
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


def _remember_route(_exc: BaseException | None) -> None:
    rule = request.url_rule
    if rule is not None:
        request.environ[_ROUTE_KEY] = rule.rule


def _count_pool_usage(engine: Engine, metrics: AppMetrics) -> None:
    gauge = metrics.pool_checked_out

    def checkout(_dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
        gauge.inc()

    def checkin(_dbapi_conn: Any, _record: Any) -> None:
        gauge.dec()

    # After the engine's own checkout listener (core/db.py), which may refuse a dead connection
    # and have the pool try another: only a checkout that succeeds is counted.
    event.listen(engine, "checkout", checkout)
    event.listen(engine, "checkin", checkin)


def init_metrics(app: Flask, settings: Settings) -> None:
    """Record the app's metrics (unless METRICS_ENABLED is false). Call last in create_app:
    the known methods are those of the rules registered by then, and the middleware must be
    the outermost so that its time covers everything else."""
    if not settings.metrics_enabled:
        return
    metrics = AppMetrics()
    app.extensions[_EXTENSION] = metrics
    methods = {method for rule in app.url_map.iter_rules() for method in rule.methods or ()}
    app.teardown_request(_remember_route)
    _count_pool_usage(app.extensions["api.db"].engine, metrics)
    # Flask's documented way to add WSGI middleware, which mypy sees as replacing a method.
    app.wsgi_app = _Middleware(app.wsgi_app, metrics, methods)  # type: ignore[method-assign]


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
