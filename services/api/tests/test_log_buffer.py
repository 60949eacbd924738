"""The batched log handler: lines arrive in order and in time, problems at once, nothing lost."""

import io
import json
import logging
import time

import pytest

from api import create_app
from api.core.logging import BufferedStreamHandler


@pytest.fixture
def buffered() -> tuple[logging.Logger, io.StringIO, BufferedStreamHandler]:
    stream = io.StringIO()
    handler = BufferedStreamHandler(stream, interval=0.2)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger(f"test.buffered.{id(stream)}")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger, stream, handler
    logger.handlers.clear()


def test_info_lines_wait_for_the_interval_then_arrive_in_order(buffered):
    logger, stream, _ = buffered
    logger.info("one")
    logger.info("two")
    assert stream.getvalue() == ""
    deadline = time.monotonic() + 5
    while not stream.getvalue() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert stream.getvalue() == "INFO one\nINFO two\n"


def test_a_warning_is_written_at_once_after_what_was_pending(buffered):
    logger, stream, _ = buffered
    logger.info("request")
    logger.warning("trouble")
    assert stream.getvalue() == "INFO request\nWARNING trouble\n"


def test_flush_writes_what_is_pending(buffered):
    # logging.shutdown() calls flush() at exit, so a stopping worker loses nothing.
    logger, stream, handler = buffered
    logger.info("last words")
    handler.flush()
    assert stream.getvalue() == "INFO last words\n"


def test_a_full_buffer_is_written_without_waiting(buffered):
    logger, stream, _ = buffered
    line = "x" * 1000
    for _ in range(BufferedStreamHandler.MAX_PENDING // 1000 + 1):
        logger.info(line)
    assert stream.getvalue().count("\n") > 60


def test_the_app_batches_its_access_log_when_configured(settings, capsys):
    app = create_app(settings.model_copy(update={"log_flush_interval": 0.1}))
    (handler,) = logging.getLogger("api").handlers
    assert isinstance(handler, BufferedStreamHandler)
    assert handler.interval == 0.1
    capsys.readouterr()
    app.test_client().get("/healthz", headers={"X-Request-ID": "batched-1"})
    out, deadline = "", time.monotonic() + 5
    while "batched-1" not in out and time.monotonic() < deadline:
        time.sleep(0.02)
        out += capsys.readouterr().out
    assert json.loads(out.strip().splitlines()[-1])["request_id"] == "batched-1"
