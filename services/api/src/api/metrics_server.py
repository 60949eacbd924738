"""The instance's metrics endpoint, served by gunicorn's master (gunicorn.conf.py's hooks).

gunicorn runs several worker processes; each records its requests (api/web/metrics.py) into its
own files in ``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's multiprocess mode). The master,
which outlives its workers, serves them merged at ``http://<instance>:METRICS_PORT/metrics``
from a thread, so a scrape costs the workers nothing and reaches an instance whose workers are
all busy. Besides the workers' files it reports what belongs to the instance, one series each:

- ``api_build_info{version,revision}`` 1: the package version and the git revision the image
  was built from (build argument and environment variable ``GIT_REVISION``);
- ``api_ready`` 1/0: the last result of the readiness check, ``GET /readyz`` sent by the master
  to its own workers every ``READINESS_INTERVAL`` seconds (200 within ``READINESS_TIMEOUT``:
  1; anything else: 0, and 0 until the first check has answered). A probe rather than the
  answers of other callers' /readyz: nothing else calls /readyz on a schedule, and the answer
  must change when the database goes away while nobody asks.

The directory is emptied when gunicorn starts (``prepare_directory``: a counter must not carry
a previous run's values) and a worker's live gauges (in flight, pool) are dropped when it exits
(``worker_exited``); its counters stay, so totals never go down while the master lives.
"""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any, Protocol
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment
    from prometheus_client.metrics_core import Metric

DIRECTORY_ENV = "PROMETHEUS_MULTIPROC_DIR"
REVISION_ENV = "GIT_REVISION"
METRICS_PATH = "/metrics"
READY_PATH = "/readyz"
READINESS_INTERVAL = 5.0  # seconds between two readiness checks
READINESS_TIMEOUT = 5.0  # seconds a check may take before it counts as failed
PROBE_USER_AGENT = "api-metrics-readiness-probe"


def prepare_directory() -> tuple[str, bool]:
    """Make ``PROMETHEUS_MULTIPROC_DIR`` an empty directory, creating a temporary one when the
    variable is unset (a run outside the image); the path and whether it was created here.

    Call in the master before any worker starts: the workers inherit the variable, and
    prometheus_client reads it when it is first imported."""
    path = os.environ.get(DIRECTORY_ENV)
    created = not path
    if not path:
        path = tempfile.mkdtemp(prefix="api-metrics-")
        os.environ[DIRECTORY_ENV] = path
    os.makedirs(path, exist_ok=True)
    for entry in os.scandir(path):
        if entry.is_file() and entry.name.endswith(".db"):
            os.remove(entry.path)
    return path, created


def remove_directory(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


def worker_exited(pid: int) -> None:
    """Drop the exited worker's live gauges (its requests in flight, its pool's connections)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


# --- the readiness probe ------------------------------------------------------------------------


class Log(Protocol):
    """What the probe logs through: gunicorn's logger (JSON lines, gunicorn.conf.py)."""

    def info(self, msg: str, *args: Any) -> None: ...
    def warning(self, msg: str, *args: Any) -> None: ...


@dataclass(frozen=True)
class Target:
    """Where the master reaches its own workers: a TCP address or a Unix socket path."""

    family: int
    address: Any  # (host, port) or a path

    @classmethod
    def of_listeners(cls, listeners: Sequence[Any]) -> Target | None:
        """The first of gunicorn's listening sockets, as a client connects to it."""
        for listener in listeners:
            family, address = listener.family, listener.getsockname()
            if family == socket.AF_UNIX:
                return cls(family, address)
            if family in (socket.AF_INET, socket.AF_INET6):
                host, port = address[0], address[1]
                loopback = {"0.0.0.0": "127.0.0.1", "::": "::1"}
                return cls(family, (loopback.get(host, host), port))
        return None


class _Connection(http.client.HTTPConnection):
    def __init__(self, target: Target, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.target = target

    def connect(self) -> None:
        self.sock = socket.socket(self.target.family, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.target.address)


class ReadinessProbe:
    """``GET /readyz`` to the workers every ``interval`` seconds, from a daemon thread."""

    def __init__(
        self,
        target: Target,
        log: Log,
        interval: float = READINESS_INTERVAL,
        timeout: float = READINESS_TIMEOUT,
    ) -> None:
        self.target = target
        self.log = log
        self.interval = interval
        self.timeout = timeout
        self.ready = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="readiness-probe", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def check(self) -> tuple[bool, str]:
        """One check: (ready, what happened)."""
        connection = _Connection(self.target, self.timeout)
        try:
            connection.request("GET", READY_PATH, headers={"User-Agent": PROBE_USER_AGENT})
            response = connection.getresponse()
            response.read()
        except (OSError, http.client.HTTPException) as exc:
            return False, f"{type(exc).__name__}: {exc}"
        finally:
            connection.close()
        return response.status == 200, f"status {response.status}"

    def _run(self) -> None:
        while True:
            ready, outcome = self.check()
            if ready != self.ready:
                if ready:
                    self.log.info("readiness check passes: api_ready 1")
                else:
                    self.log.warning("readiness check fails (%s): api_ready 0", outcome)
            self.ready = ready
            if self._stop.wait(self.interval):
                return


# --- the endpoint -------------------------------------------------------------------------------


class InstanceCollector:
    """``api_ready`` and ``api_build_info``: one series per instance, from the master."""

    def __init__(self, probe: ReadinessProbe, version: str, revision: str) -> None:
        self.probe = probe
        self.version = version
        self.revision = revision

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        yield GaugeMetricFamily(
            "api_ready",
            "1 while the readiness check (GET /readyz: the database answers) passes, else 0.",
            value=1 if self.probe.ready else 0,
        )
        build = GaugeMetricFamily(
            "api_build_info", "The version and git revision running; always 1.",
            labels=("version", "revision"),
        )  # fmt: skip
        build.add_metric((self.version, self.revision), 1)
        yield build


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No access log line per scrape."""


@dataclass
class MetricsServer:
    httpd: WSGIServer
    probe: ReadinessProbe

    def close_in_worker(self) -> None:
        """In a forked worker: close the inherited listening socket (the thread did not fork)."""
        self.httpd.socket.close()

    def stop(self) -> None:
        self.probe.stop()
        self.httpd.shutdown()
        self.httpd.server_close()


def start(port: int, listeners: Sequence[Any], version: str, log: Log) -> MetricsServer:
    """Serve the merged metrics on ``port`` (all addresses) from a thread; start the probe.

    Raises OSError when the port cannot be bound."""
    from prometheus_client import CollectorRegistry, make_wsgi_app
    from prometheus_client.multiprocess import MultiProcessCollector

    target = Target.of_listeners(listeners)
    if target is None:
        raise OSError("gunicorn has no TCP or Unix listener to check readiness through")
    probe = ReadinessProbe(target, log)
    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    revision = os.environ.get(REVISION_ENV) or "unknown"
    registry.register(InstanceCollector(probe, version, revision))
    metrics_app = make_wsgi_app(registry)

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == METRICS_PATH:
            body: Iterable[bytes] = metrics_app(environ, start_response)
            return body
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
        return [b"Not found: the metrics are at /metrics\n"]

    httpd = make_server("0.0.0.0", port, app, _Server, handler_class=_QuietHandler)
    threading.Thread(target=httpd.serve_forever, name="metrics-server", daemon=True).start()
    probe.start()
    return MetricsServer(httpd, probe)
