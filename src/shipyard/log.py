"""Logging setup, called once by the CLI (never at import time), and the log line formats.

Every line logged while a request is served carries that request's ``request_id`` (and, once
resolved, its ``model`` and ``version``), read from :data:`shipyard.context.current_request`.
``text`` puts them in brackets after the level; ``json`` writes one JSON object per line with
``timestamp``, ``level``, ``logger``, ``message``, those fields and the event's own fields
(what a call passes as ``extra=``). Nothing here reads request bodies or headers: what a line
holds is what the code logs, and the code never logs keys or tensor contents.
"""

from __future__ import annotations

import datetime
import logging
from typing import Any

import orjson

from shipyard.context import current_request

__all__ = [
    "ACCESS_LOGGER",
    "LOG_FORMATS",
    "JsonFormatter",
    "RequestContextFilter",
    "TextFormatter",
    "WorkerFilter",
    "configure_logging",
]

LOG_FORMATS = ("text", "json")
#: The logger of the access log (one line per answered request, when on).
ACCESS_LOGGER = "shipyard.access"

#: The attributes every LogRecord has; anything else on a record is an event field.
_STANDARD = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "request_id", "model", "version", "trace_id", "color_message"}
    | {"worker"}
)


class RequestContextFilter(logging.Filter):
    """Put the current request's ``request_id``, ``model``, ``version``, ``trace_id`` on records.

    A record that already has ``request_id`` (the access log passes it) keeps its own.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Add the fields (None outside a request); never drops a record."""
        if hasattr(record, "request_id"):
            return True
        ctx = current_request.get()
        if ctx is None:
            record.request_id = record.model = record.version = record.trace_id = None
        else:
            record.request_id = ctx.request_id
            record.model = ctx.model
            record.version = ctx.version
            record.trace_id = ctx.trace.trace_id if ctx.trace is not None else None
        return True


class TextFormatter(logging.Formatter):
    """``HH:MM:SS LEVEL [worker N] logger [request_id model/version]: message`` (the worker
    under ``serve --workers``, the brackets in a request)."""

    def __init__(self) -> None:
        super().__init__(datefmt="%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        """Format one record as a line (its traceback, if any, on the lines below)."""
        where = ""
        request_id = getattr(record, "request_id", None)
        if request_id:
            model = getattr(record, "model", None)
            served = f" {model}/{getattr(record, 'version', None) or '-'}" if model else ""
            where = f" [{request_id}{served}]"
        worker = getattr(record, "worker", None)
        who = "" if worker is None else f"worker {worker} "
        line = (
            f"{self.formatTime(record, self.datefmt)} {record.levelname:<7} "
            f"{who}{record.name}{where}: {record.getMessage()}"
        )
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        elif record.stack_info:
            line = f"{line}\n{self.formatStack(record.stack_info)}"
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: the standard fields, the request's, then the event's."""

    def format(self, record: logging.LogRecord) -> str:
        """Format one record as a JSON line (a traceback goes in ``exception``)."""
        stamp = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        entry: dict[str, Any] = {
            "timestamp": stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
            "model": getattr(record, "model", None),
            "version": getattr(record, "version", None),
        }
        trace_id = getattr(record, "trace_id", None)
        if trace_id:
            entry["trace_id"] = trace_id
        worker = getattr(record, "worker", None)
        if worker is not None:
            entry["worker"] = worker
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class WorkerFilter(logging.Filter):
    """Put the id of this worker process (``serve --workers``) on every record as ``worker``."""

    def __init__(self, worker: int) -> None:
        super().__init__()
        self.worker = worker

    def filter(self, record: logging.LogRecord) -> bool:
        """Add the field; never drops a record."""
        record.worker = self.worker
        return True


def configure_logging(
    level: str, log_format: str = "text", access_log: bool = False, worker: int | None = None
) -> logging.Handler:
    """Send Shipyard's and uvicorn's logs to stderr at ``level``, as ``text`` or ``json`` lines.

    The access log (logger ``shipyard.access``, INFO) is written only with ``access_log``.
    ``worker``: this process's id among ``serve --workers``, on every line (``worker 1``
    after the level; ``"worker": 1`` in JSON). Returns the handler installed on the root logger.
    """
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, got {log_format!r}")
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(RequestContextFilter())
    if worker is not None:
        handler.addFilter(WorkerFilter(worker))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    access = logging.getLogger(ACCESS_LOGGER)
    access.setLevel(logging.INFO if access_log else logging.CRITICAL + 1)
    return handler
