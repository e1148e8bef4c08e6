"""Reading an HTTP request body within the server's limits.

A body is refused before it is read when its ``Content-Length`` passes ``max_request_bytes``
(413) or would pass the server-wide ``max_inflight_bytes`` (503 with ``Retry-After``, through
:class:`~shipyard.server.admission.Admission`); a chunked body is counted as it arrives. The
bytes stay counted until the answer is sent (the decoded tensors may share the body's memory).
A client that disconnects mid-body is one log line, not an error.
"""

from __future__ import annotations

import logging

from starlette.requests import Request

from shipyard.errors import InvalidInputError, PayloadTooLargeError
from shipyard.protocol.rest import parse_decimal
from shipyard.server.admission import Admission

__all__ = ["BodyReader", "ClientGone", "Held", "log_client_gone"]

log = logging.getLogger(__name__)


class ClientGone(Exception):  # noqa: N818 - not an error: the client left
    """The client disconnected before its request body was complete."""

    def __init__(self, received: int, declared: int | None) -> None:
        super().__init__(received, declared)
        self.received = received
        self.declared = declared


class Held:
    """Bytes a request holds against the in-flight limit; released once, when answered."""

    __slots__ = ("_admission", "size")

    def __init__(self, admission: Admission) -> None:
        self._admission = admission
        self.size = 0

    def add(self, size: int) -> None:
        """Hold ``size`` more bytes (OverloadedError past the limit)."""
        self._admission.acquire_bytes(size)
        self.size += size

    def release(self) -> None:
        """Give every held byte back."""
        if self.size:
            self._admission.release_bytes(self.size)
            self.size = 0


class BodyReader:
    """Reads request bodies against ``max_request_bytes`` and the in-flight byte budget."""

    def __init__(
        self, max_body: int, admission: Admission, limit: str = "server setting max_request_bytes"
    ) -> None:
        self.max_body = max_body
        self.admission = admission
        #: What the 413 message names as the limit.
        self.limit = limit

    def declared(self, request: Request) -> int | None:
        """The request's ``Content-Length`` (None when chunked), checked against the limits.

        Raises before any byte is read: InvalidInputError for a malformed header,
        PayloadTooLargeError over ``max_request_bytes``.
        """
        value = request.headers.get("content-length")
        if value is None:
            return None
        size = parse_decimal(value, "Content-Length header")
        if size > self.max_body:
            raise PayloadTooLargeError(_too_large(size, self.max_body, self.limit))
        return size

    async def read(self, request: Request, held: Held) -> bytes | bytearray:
        """Read the whole body, holding its bytes in ``held`` (the caller releases them).

        Raises OverloadedError when the bytes would pass the in-flight limit (for a declared
        length: before reading), PayloadTooLargeError past ``max_request_bytes``, and
        :class:`ClientGone` when the client disconnects first.
        """
        declared = self.declared(request)
        if declared is not None:
            held.add(declared)
        receive = request.receive
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone(0, declared)
        first: bytes = message.get("body", b"")
        if not message.get("more_body", False):  # the usual case: one message, no copy
            self._check(len(first), declared, held)
            return first
        buffer = bytearray(declared) if declared is not None else bytearray()
        size = 0
        chunk = first
        while True:
            end = size + len(chunk)
            self._check(end, declared, held)
            if declared is not None:
                buffer[size:end] = chunk
            else:
                buffer += chunk
            size = end
            if not message.get("more_body", False):
                break
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientGone(size, declared)
            chunk = message.get("body", b"")
        if declared is not None and size != declared:
            raise InvalidInputError(f"the body has {size} bytes, Content-Length said {declared}")
        return buffer

    def _check(self, size: int, declared: int | None, held: Held) -> None:
        if size > self.max_body:
            raise PayloadTooLargeError(_too_large(size, self.max_body, self.limit))
        if declared is None and size > held.size:
            held.add(size - held.size)  # chunked: hold what has arrived
        elif declared is not None and size > declared:
            raise InvalidInputError(f"the body is longer than its Content-Length {declared}")


def log_client_gone(request: Request, gone: ClientGone) -> None:
    """Log one INFO line: which request the client abandoned, and how much of it arrived."""
    of = f" of {gone.declared}" if gone.declared is not None else ""
    log.info(
        "client disconnected during the request body of %s %s (%d%s bytes received)",
        request.method,
        request.url.path,
        gone.received,
        of,
    )


def _too_large(size: int, limit: int, what: str) -> str:
    return f"request body of {size} bytes is over the limit of {limit} bytes ({what})"
