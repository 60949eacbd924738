"""Gunicorn settings, from the environment through ``GunicornSettings`` (api/core/config.py).

Invalid values stop the master before it forks, with the same one readable line as the app's
settings, which are checked here too, instead of in every worker that fails to boot.
"""

import gc
import os
import sys
from typing import Any

from gunicorn import glogging

from api import metrics_server
from api.app import API_VERSION
from api.core.config import SettingsError, load_gunicorn_settings, load_settings
from api.core.logging import JsonFormatter
from api.web.protocol_errors import install as install_json_protocol_errors


def _cpus() -> int:
    # Respect the container's CPU set (docker --cpuset-cpus), not the host's core count.
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


try:
    settings = load_settings()
    server = load_gunicorn_settings()
except SettingsError as exc:
    # SystemExit is not caught by gunicorn's config loader, so no traceback follows the message.
    sys.exit(str(exc))
# An Idempotency-Key claim must not outlive the worker that holds it by much, or a retry after a
# killed worker waits longer than needed; nor lapse while a live request may still run.
if settings.idempotency_lease_seconds > server.timeout:
    sys.exit(
        f"Invalid configuration: IDEMPOTENCY_LEASE_SECONDS={settings.idempotency_lease_seconds} "
        f"is longer than GUNICORN_TIMEOUT={server.timeout}: a killed worker's claim would "
        "outlive it."
    )

if (
    settings.metrics_enabled
    and not server.bind.startswith("unix:")
    and server.bind.rsplit(":", 1)[-1] == str(settings.metrics_port)
):
    sys.exit(
        f"Invalid configuration: METRICS_PORT={settings.metrics_port} is the port of "
        f"GUNICORN_BIND={server.bind}: give the metrics another port."
    )

bind = server.bind
# One process per CPU, at least two so that a crashed worker never leaves nobody serving. Threads
# (below) give the concurrency; the classic 2 x CPUs + 1 is for sync workers, and with gthread it
# measured worse on 2 CPUs: 5 workers cost 1.6x the CPU per request of 2 and gave 3-4x the p99 at
# 70% load (docs/performance.md).
workers = server.workers or max(2, _cpus())
# gthread: a thread pool per worker, and idle keep-alive connections wait in a poller instead of
# holding a worker, which is what nginx's upstream keep-alive needs.
worker_class = server.worker_class
threads = server.threads
timeout = server.timeout
graceful_timeout = server.graceful_timeout
# Longer than nginx's upstream keepalive_timeout (its API_KEEPALIVE_TIMEOUT, 1 s), so it is always
# nginx that closes an idle connection and never reuses one that gunicorn has just closed (a 502).
keepalive = server.keepalive
# No worker recycling by default (gunicorn's own default). A recycled worker stops taking requests
# while it drains and its replacement boots, 0.4-0.9 s in which the other worker carries all
# the load: under load it showed as a latency spike at the restart (docs/performance.md); the app
# does not grow (worker RSS flat over the benchmark's requests). Set it if your code leaks.
max_requests = server.max_requests
max_requests_jitter = server.max_requests_jitter
# `make dev` only: gunicorn polls the loaded files and restarts the workers when one changes.
reload = server.reload
# Only nginx on the internal network can reach this port; the app applies ProxyFix itself.
forwarded_allow_ips = server.forwarded_allow_ips
# The heartbeat file goes to tmpfs: a disk-backed /tmp can stall it and get workers killed.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
# No preload: each worker imports the app and opens its own database connections after fork.
preload_app = False
# The control socket (gunicorn >= 25.1) would be created under $HOME, which is read-only in the
# container, and nothing here uses gunicornc.
control_socket_disable = True

# The app writes one JSON line per request with the request id, client address (after ProxyFix)
# and duration; gunicorn's own access log would repeat each of them, so it is off.
accesslog = None
errorlog = "-"
loglevel = settings.log_level.lower()


class JsonLogger(glogging.Logger):
    """Gunicorn's own lines (boot, worker exits, timeouts) in the app's JSON format.

    A logger class rather than ``logconfig_dict``: any logging config switches gunicorn's access
    log back on, and formatting a second, unused line per request is wasted work.
    """

    def setup(self, cfg: object) -> None:
        super().setup(cfg)
        for handler in self.error_log.handlers:
            handler.setFormatter(JsonFormatter())


logger_class = JsonLogger


# --- metrics (api/metrics_server.py): the workers record, the master serves -----------------------

_metrics: metrics_server.MetricsServer | None = None
_metrics_directory: tuple[str, bool] | None = None


def on_starting(server: Any) -> None:
    """Once, in the master, before any worker: an empty directory for the workers' metric files.

    Here rather than at the top of this file, which gunicorn reads again on a reload (SIGHUP)
    while the workers still write their files.
    """
    global _metrics_directory
    if settings.metrics_enabled:
        _metrics_directory = metrics_server.prepare_directory()


def when_ready(server: Any) -> None:
    """The master is listening: serve the metrics on METRICS_PORT and start the readiness probe."""
    global _metrics
    if not settings.metrics_enabled:
        return
    try:
        _metrics = metrics_server.start(
            settings.metrics_port, server.LISTENERS, API_VERSION, server.log
        )
    except OSError as exc:
        on_exit(server)
        sys.exit(f"METRICS_PORT={settings.metrics_port}: cannot serve the metrics ({exc}).")
    server.log.info("Metrics at http://0.0.0.0:%d/metrics", settings.metrics_port)


def child_exit(server: Any, worker: Any) -> None:
    """A worker is gone: its requests are no longer in flight, its connections no longer used."""
    if settings.metrics_enabled:
        metrics_server.worker_exited(worker.pid)


def on_exit(server: Any) -> None:
    if _metrics is not None:
        _metrics.stop()
    if _metrics_directory is not None and _metrics_directory[1]:
        metrics_server.remove_directory(_metrics_directory[0])


def post_fork(server: object, worker: object) -> None:
    """In each new worker: close the metrics server's socket it inherited from the master; and,
    with ``reload`` (``make dev``), forget the app's modules that the master imported.

    Checking the settings above imports the ``api`` package, and a forked worker inherits those
    modules as the master loaded them, at start. Dropped here, the worker imports the source as
    it is now, so an edit to any file of the app shows once the reloader restarts the workers.
    """
    if _metrics is not None:
        _metrics.close_in_worker()
    if reload:
        for name in [name for name in sys.modules if name == "api" or name.startswith("api.")]:
            del sys.modules[name]


def post_worker_init(worker: object) -> None:
    """Exempt everything the worker has loaded (modules, the app, its schemas) from the GC.

    A full collection walks every tracked object: ~70 ms here with the app loaded, during which
    that worker answers nothing. Frozen, the objects that live as long as the process are no
    longer walked, and a full collection costs well under a millisecond (docs/performance.md).
    """
    gc.freeze()


# Requests gunicorn cannot parse (nginx passes some on) are answered in the app's JSON error shape
# instead of gunicorn's HTML page (api/web/protocol_errors.py).
install_json_protocol_errors()
