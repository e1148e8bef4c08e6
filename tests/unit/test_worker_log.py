"""Every line a worker of ``serve --workers`` logs names it, in text and in JSON."""

from __future__ import annotations

import json
import logging

from shipyard.log import JsonFormatter, RequestContextFilter, TextFormatter, WorkerFilter


def _record() -> logging.LogRecord:
    record = logging.LogRecord("shipyard.x", logging.INFO, "", 0, "model %s ready", ("m",), None)
    RequestContextFilter().filter(record)
    WorkerFilter(3).filter(record)
    return record


def test_text_lines_name_the_worker_after_the_level() -> None:
    """``HH:MM:SS INFO    worker 3 shipyard.x: ...``."""
    assert "INFO    worker 3 shipyard.x: model m ready" in TextFormatter().format(_record())


def test_json_lines_carry_the_worker_field() -> None:
    """One ``"worker": 3`` field, beside the standard ones."""
    line = json.loads(JsonFormatter().format(_record()))
    assert line["worker"] == 3
    assert line["message"] == "model m ready"


def test_lines_outside_workers_have_no_worker() -> None:
    """A single-process server's lines are as before."""
    record = logging.LogRecord("shipyard.x", logging.INFO, "", 0, "hi", None, None)
    RequestContextFilter().filter(record)
    assert "INFO    shipyard.x: hi" in TextFormatter().format(record)
    assert "worker" not in json.loads(JsonFormatter().format(record))
