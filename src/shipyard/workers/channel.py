"""The control channel between the supervisor and its workers: JSON over Unix sockets.

Every process of a ``--workers`` server listens on a Unix socket in the supervisor's private
folder (mode 0700): the supervisor on ``supervisor.sock``, worker ``i`` on ``worker-<i>.sock``.
A call opens a connection, sends one request, reads one answer and closes: a request is one
JSON object on one line with an ``op``; an answer is ``{"ok": true, ...}`` or ``{"ok": false,
"code": <ErrorCode name>, "message": ...}``, which :func:`call` raises as the matching
:class:`~shipyard.errors.ShipyardError`, so an error crosses processes with its status.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from shipyard.errors import (
    DeadlineExceededError,
    ErrorCode,
    InternalError,
    InvalidInputError,
    NotFoundError,
    PayloadTooLargeError,
    ShipyardError,
    UnavailableError,
    UnsupportedError,
)

__all__ = [
    "MAX_MESSAGE_BYTES",
    "Handler",
    "Message",
    "call",
    "error_answer",
    "raise_error",
    "serve",
    "supervisor_path",
    "worker_path",
]

log = logging.getLogger(__name__)

#: A request or an answer (a JSON object).
Message = dict[str, Any]
#: What a listener does with a request: its answer (errors become error answers).
Handler = Callable[[Message], Awaitable[Message]]

#: The largest message (the ``/metrics`` samples of a worker with many models fit easily).
MAX_MESSAGE_BYTES = 64 * 1024 * 1024

#: The error class an answer's code is raised as.
_ERRORS: dict[ErrorCode, type[ShipyardError]] = {
    ErrorCode.INVALID_ARGUMENT: InvalidInputError,
    ErrorCode.PAYLOAD_TOO_LARGE: PayloadTooLargeError,
    ErrorCode.NOT_FOUND: NotFoundError,
    ErrorCode.UNAVAILABLE: UnavailableError,
    ErrorCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    ErrorCode.UNIMPLEMENTED: UnsupportedError,
    ErrorCode.INTERNAL: InternalError,
}


def supervisor_path(folder: Path) -> Path:
    """The supervisor's socket in the control ``folder``."""
    return folder / "supervisor.sock"


def worker_path(folder: Path, slot: int) -> Path:
    """Worker ``slot``'s socket in the control ``folder``."""
    return folder / f"worker-{slot}.sock"


def error_answer(exc: ShipyardError) -> Message:
    """The answer that carries ``exc`` to the caller."""
    return {"ok": False, "code": exc.code.name, "message": exc.message}


def raise_error(answer: Message) -> None:
    """Raise the ShipyardError an error ``answer`` carries (nothing for a good answer)."""
    if answer.get("ok"):
        return
    code = ErrorCode.__members__.get(str(answer.get("code")), ErrorCode.INTERNAL)
    raise _ERRORS[code](str(answer.get("message", "the worker gave no reason")))


async def call(path: Path, request: Message, timeout_s: float | None = None) -> Message:
    """Send ``request`` to the process listening on ``path``; return its answer.

    Raises UnavailableError when nothing listens there, the connection breaks, or no answer
    comes within ``timeout_s`` (None: wait as long as it takes, e.g. for a model load).
    Error answers are returned, not raised (see :func:`raise_error`).
    """
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_unix_connection(path, limit=MAX_MESSAGE_BYTES)
            try:
                writer.write(json.dumps(request).encode() + b"\n")
                await writer.drain()
                line = await reader.readline()
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
    except TimeoutError:
        raise UnavailableError(f"no answer within {timeout_s:g} s") from None
    except (OSError, ValueError) as exc:
        raise UnavailableError(f"not reachable ({exc.__class__.__name__})") from exc
    if not line.endswith(b"\n"):
        raise UnavailableError("the connection closed before the answer")
    answer = json.loads(line)
    if not isinstance(answer, dict):
        raise InternalError(f"the answer is not a JSON object: {line[:80]!r}")
    return answer


async def serve(path: Path, handler: Handler) -> asyncio.Server:
    """Listen on ``path`` (replacing a stale socket there) and answer with ``handler``."""

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            if not line:
                return
            try:
                try:
                    request = json.loads(line)
                except ValueError:
                    raise InvalidInputError("a request is one line of JSON") from None
                if not isinstance(request, dict):
                    raise InvalidInputError("a request is one JSON object")
                answer = await handler(request)
            except ShipyardError as exc:
                answer = error_answer(exc)
            except Exception as exc:  # a bug: log it, answer INTERNAL without a traceback
                log.exception("control request %.200r failed", line)
                answer = error_answer(InternalError(f"{type(exc).__name__}; see the log"))
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
        except (OSError, ValueError):
            pass  # the caller went away (or sent an over-long line): nothing to answer
        finally:
            writer.close()

    path.unlink(missing_ok=True)
    return await asyncio.start_unix_server(connection, path, limit=MAX_MESSAGE_BYTES)
