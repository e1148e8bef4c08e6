"""Log lines: the request's fields on every line, text and JSON formats, the access log."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from shipyard.context import current_request, open_request
from shipyard.log import (
    ACCESS_LOGGER,
    JsonFormatter,
    RequestContextFilter,
    TextFormatter,
    configure_logging,
)


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """A logger ``shipyard.test`` writing JSON lines into a string."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestContextFilter())
    logger = logging.getLogger("shipyard.test")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield out
    logger.removeHandler(handler)


def _lines(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_json_lines_carry_the_request_and_event_fields(stream: io.StringIO) -> None:
    """Inside a request a JSON line has its request_id, model and version, and extra= fields."""
    ctx = open_request("http", b"req-1")
    ctx.model, ctx.version = "mnist", "2"
    token = current_request.set(ctx)
    try:
        logging.getLogger("shipyard.test").info("hello %s", "there", extra={"rows": 3})
    finally:
        current_request.reset(token)
    logging.getLogger("shipyard.test").warning("outside")
    inside, outside = _lines(stream)
    assert inside["message"] == "hello there"
    assert inside["level"] == "info"
    assert inside["logger"] == "shipyard.test"
    assert (inside["request_id"], inside["model"], inside["version"]) == ("req-1", "mnist", "2")
    assert inside["rows"] == 3
    assert str(inside["timestamp"]).endswith("Z")
    assert outside["request_id"] is None


def test_json_exception_is_one_line(stream: io.StringIO) -> None:
    """A traceback goes into the line's ``exception`` field, not onto lines of its own."""
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("shipyard.test").exception("failed")
    (line,) = _lines(stream)
    assert "ValueError: boom" in str(line["exception"])


def test_text_lines_show_the_request_in_brackets() -> None:
    """A text line inside a request shows [request_id model/version] after the logger."""
    record = logging.LogRecord("shipyard.x", logging.INFO, "", 0, "served", None, None)
    ctx = open_request("http", b"abc")
    ctx.model, ctx.version = "m", "1"
    token = current_request.set(ctx)
    try:
        RequestContextFilter().filter(record)
    finally:
        current_request.reset(token)
    assert "INFO    shipyard.x [abc m/1]: served" in TextFormatter().format(record)


def test_configure_logging_turns_the_access_log_on_and_off() -> None:
    """The access logger writes only when asked, whatever the level."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging("warning", "json", access_log=True)
        assert logging.getLogger(ACCESS_LOGGER).isEnabledFor(logging.INFO)
        configure_logging("debug", "text", access_log=False)
        assert not logging.getLogger(ACCESS_LOGGER).isEnabledFor(logging.CRITICAL)
        with pytest.raises(ValueError, match="log format"):
            configure_logging("info", "xml")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        logging.getLogger(ACCESS_LOGGER).setLevel(logging.NOTSET)
