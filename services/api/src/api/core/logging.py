"""JSON log lines on stdout, one object per line, so log shippers need no parsing rules."""

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

APP_LOGGER = "api"


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
        return json.dumps(payload, default=str, ensure_ascii=False)


def configure_logging(level: str) -> logging.Logger:
    """Send the app's loggers to stdout as JSON; safe to call more than once (one handler)."""
    logger = logging.getLogger(APP_LOGGER)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    # Our handler is the only one: propagating would print each line twice under gunicorn or
    # pytest, which also attach handlers to the root logger.
    logger.propagate = False
    return logger
