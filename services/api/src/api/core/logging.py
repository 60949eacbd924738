"""JSON log lines on stdout, one object per line, so log shippers need no parsing rules."""

import json
import logging
import os
import sys
import threading
import time
import weakref
from datetime import UTC, datetime
from typing import Any, TextIO

APP_LOGGER = "api"

# Built once: json.dumps with arguments builds an encoder per call, which cost as much again as
# the encoding itself (docs/performance.md, "The log line").
_ENCODER = json.JSONEncoder(default=str, ensure_ascii=False)


class JsonFormatter(logging.Formatter):
    """Render a record as one JSON object.

    Structured fields travel in ``extra={"fields": {...}}`` so they cannot collide with the
    attributes of ``LogRecord`` itself.
    """

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        payload.update(getattr(record, "fields", {}))
        if record.exc_info:
            payload["exc_info"] = self.formatException(record.exc_info)
        return _ENCODER.encode(payload)


class BufferedStreamHandler(logging.StreamHandler[TextIO]):
    """Write lines in batches: every ``interval`` seconds, at once for WARNING and above.

    One write per request line wakes containerd's shim and dockerd for every request; batching
    lets them read many lines per wake-up (docs/performance.md), as nginx's buffered access log
    does. A crash loses at most ``interval`` seconds of INFO lines; the interpreter's exit
    (``logging.shutdown``, also when gunicorn stops a worker) writes what is pending.
    """

    MAX_PENDING = 64 * 1024  # characters; written at once beyond this
    # Handler.__init__ always makes it (createLock, not overridden here); typeshed allows None.
    lock: threading.RLock

    def __init__(self, stream: TextIO, interval: float) -> None:
        super().__init__(stream)
        self.interval = interval
        self._pending: list[str] = []
        self._size = 0
        _flusher.add(self)

    def emit(self, record: logging.LogRecord) -> None:
        # Called with self.lock held (Handler.handle).
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self._pending.append(line)
        self._size += len(line)
        if record.levelno >= logging.WARNING or self._size >= self.MAX_PENDING:
            self._write()

    def flush(self) -> None:
        with self.lock:
            self._write()

    def _write(self) -> None:
        if not self._pending:
            return
        batch = "\n".join(self._pending) + "\n"
        self._pending.clear()
        self._size = 0
        try:
            self.stream.write(batch)
            self.stream.flush()
        except Exception:
            self.handleError(logging.makeLogRecord({"msg": "log batch lost"}))


class _Flusher:
    """One daemon thread per process flushes every live buffered handler on its interval.

    Started on first use, so it exists only in the process that logs (a gunicorn worker, not
    the master that forks it).
    """

    def __init__(self) -> None:
        self._handlers: weakref.WeakSet[BufferedStreamHandler] = weakref.WeakSet()
        self._thread: threading.Thread | None = None
        self._guard = threading.Lock()

    def add(self, handler: BufferedStreamHandler) -> None:
        with self._guard:
            self._handlers.add(handler)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="log-flush", daemon=True)
                self._thread.start()

    def after_fork_in_child(self) -> None:
        # Threads do not survive fork(): with gunicorn --preload the app (and its handler) is
        # built in the master, so each worker needs its own flusher.
        self._guard = threading.Lock()
        self._thread = None
        for handler in list(self._handlers):
            self.add(handler)

    def _run(self) -> None:
        while True:
            handlers = list(self._handlers)
            time.sleep(min((h.interval for h in handlers), default=1.0))
            for handler in handlers:
                handler.flush()


_flusher = _Flusher()
os.register_at_fork(after_in_child=_flusher.after_fork_in_child)


def configure_logging(level: str, flush_interval: float = 0.0) -> logging.Logger:
    """Send the app's loggers to stdout as JSON; safe to call more than once (one handler).

    ``flush_interval`` > 0 batches lines (BufferedStreamHandler); 0 writes each line at once.
    """
    logger = logging.getLogger(APP_LOGGER)
    handler: logging.Handler = (
        BufferedStreamHandler(sys.stdout, flush_interval)
        if flush_interval > 0
        else logging.StreamHandler(sys.stdout)
    )
    handler.setFormatter(JsonFormatter())
    for old in logger.handlers:
        if isinstance(old, BufferedStreamHandler):
            old.flush()  # its pending lines go out before the new handler's
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    # The lines carry no source file, line, function or thread, and logging would look them up
    # for every record anyway: finding the caller walks the stack, a third of the cost of the
    # access line (the switches of "Optimization" in the logging HOWTO; docs/performance.md).
    logging._srcfile = None
    logging.logThreads = False
    logging.logMultiprocessing = False
    # Our handler is the only one: propagating would print each line twice under gunicorn or
    # pytest, which also attach handlers to the root logger.
    logger.propagate = False
    return logger
