"""Gunicorn settings, all from the environment (defaults suit the container; see README.md).

Invalid values stop the master before it forks, with one readable line, and so do invalid
application settings: they are checked here too, instead of in every worker that fails to boot.
"""

import gc
import os
import sys

from gunicorn import glogging

from api.core.config import SettingsError, load_settings
from api.core.logging import JsonFormatter
from api.protocol_errors import install as install_json_protocol_errors


def _fail(message: str) -> None:
    # SystemExit is not caught by gunicorn's config loader, so no traceback follows the message.
    sys.exit(f"Invalid gunicorn configuration: {message}")


def _env(name: str, default: str) -> str:
    # Empty counts as unset: compose passes `${VAR:-}` through as an empty string.
    return os.environ.get(name, "").strip() or default


def _int(name: str, default: int, minimum: int = 0) -> int:
    raw = _env(name, "")
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        _fail(f"{name}={raw!r} is not an integer.")
    if value < minimum:
        _fail(f"{name}={raw!r} must be at least {minimum}.")
    return value


def _cpus() -> int:
    # Respect the container's CPU set (docker --cpuset-cpus), not the host's core count.
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


try:
    settings = load_settings()
except SettingsError as exc:
    sys.exit(str(exc))

bind = _env("GUNICORN_BIND", "0.0.0.0:8000")
# One process per CPU, at least two so that a crashed worker never leaves nobody serving. Threads
# (below) give the concurrency; the classic 2 x CPUs + 1 is for sync workers, and with gthread it
# measured worse on 2 CPUs: 5 workers cost 1.6x the CPU per request of 2 and gave 3-4x the p99 at
# 70% load (docs/performance.md).
workers = _int("GUNICORN_WORKERS", max(2, _cpus()), minimum=1)
# gthread: a thread pool per worker, and idle keep-alive connections wait in a poller instead of
# holding a worker, which is what nginx's upstream keep-alive needs.
worker_class = _env("GUNICORN_WORKER_CLASS", "gthread")
if worker_class not in {"sync", "gthread"}:
    _fail(f"GUNICORN_WORKER_CLASS={worker_class!r}: use 'gthread' or 'sync'.")
threads = _int("GUNICORN_THREADS", 4, minimum=1)
timeout = _int("GUNICORN_TIMEOUT", 30, minimum=1)
graceful_timeout = _int("GUNICORN_GRACEFUL_TIMEOUT", 30, minimum=1)
# An Idempotency-Key claim must not outlive the worker that holds it by much, or a retry after a
# killed worker waits longer than needed; nor lapse while a live request may still run.
if settings.idempotency_lease_seconds > timeout:
    _fail(
        f"IDEMPOTENCY_LEASE_SECONDS={settings.idempotency_lease_seconds} is longer than "
        f"GUNICORN_TIMEOUT={timeout}: a killed worker's claim would outlive it."
    )
# Longer than nginx's upstream keepalive_timeout (its API_KEEPALIVE_TIMEOUT, 1 s), so it is always
# nginx that closes an idle connection and never reuses one that gunicorn has just closed (a 502).
keepalive = _int("GUNICORN_KEEPALIVE", 75, minimum=0)
# No worker recycling by default (gunicorn's own default). A recycled worker stops taking requests
# while it drains and its replacement boots, 0.4-0.9 s in which the other worker carries all
# the load: under load it showed as a latency spike at the restart (docs/performance.md); the app
# does not grow (worker RSS flat over the benchmark's requests). Set it if your code leaks.
max_requests = _int("GUNICORN_MAX_REQUESTS", 0, minimum=0)
max_requests_jitter = _int("GUNICORN_MAX_REQUESTS_JITTER", 1000, minimum=0)
# Only nginx on the internal network can reach this port; the app applies ProxyFix itself.
forwarded_allow_ips = _env("FORWARDED_ALLOW_IPS", "*")
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
loglevel = _env("LOG_LEVEL", "info").lower()


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


def post_worker_init(worker: object) -> None:
    """Exempt everything the worker has loaded (modules, the app, its schemas) from the GC.

    A full collection walks every tracked object: ~70 ms here with the app loaded, during which
    that worker answers nothing. Frozen, the objects that live as long as the process are no
    longer walked, and a full collection costs well under a millisecond (docs/performance.md).
    """
    gc.freeze()


# Requests gunicorn cannot parse (nginx passes some on) are answered in the app's JSON error shape
# instead of gunicorn's HTML page (api/protocol_errors.py).
install_json_protocol_errors()
