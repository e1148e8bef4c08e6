"""Server-wide admission: how many request bytes and inference requests may be in flight.

Both transports ask here before they take on a request. A request over a limit is refused at
once with :class:`~shipyard.errors.OverloadedError` (503 with ``Retry-After`` over HTTP,
UNAVAILABLE over gRPC), before its body is read where the transport knows its size up front
(HTTP ``Content-Length``), so a burst of large bodies cannot take the process's memory. The
per-model queue limit (``dynamic_batching.max_queue_size``) still applies beneath these.
Counters only change on the event loop thread.
"""

from __future__ import annotations

from shipyard.errors import OverloadedError
from shipyard.metrics import ServerMetrics

__all__ = ["Admission"]


class Admission:
    """The server-wide limits on request bytes and on inference requests in flight."""

    def __init__(
        self, max_bytes: int = 0, max_requests: int = 0, metrics: ServerMetrics | None = None
    ) -> None:
        #: Most request body bytes held at once (0: no limit).
        self.max_bytes = max_bytes
        #: Most inference requests in flight at once, all models (0: no limit).
        self.max_requests = max_requests
        self.bytes = 0
        self.requests = 0
        self._metrics = metrics

    def acquire_bytes(self, size: int) -> None:
        """Hold ``size`` more bytes, or raise OverloadedError if that passes the limit.

        A body larger than the whole limit is let in when nothing else is held, so that
        every body within ``max_request_bytes`` can be served one at a time.
        """
        limit = self.max_bytes
        if limit and self.bytes + size > limit and self.bytes > 0:
            if self._metrics is not None:
                self._metrics.reject("inflight_bytes")
            raise OverloadedError(
                f"the server holds {self.bytes} bytes of requests in flight; another "
                f"{size} would pass its limit of {limit} bytes (max_inflight_bytes); "
                "retry later"
            )
        self.bytes += size

    def release_bytes(self, size: int) -> None:
        """Give back ``size`` bytes held by :meth:`acquire_bytes`."""
        self.bytes -= size

    def acquire_request(self) -> None:
        """Count one more inference request in flight, or raise OverloadedError."""
        limit = self.max_requests
        if limit and self.requests >= limit:
            if self._metrics is not None:
                self._metrics.reject("inflight_requests")
            raise OverloadedError(
                f"the server has {self.requests} inference requests in flight, its limit "
                "(max_inflight_requests); retry later"
            )
        self.requests += 1

    def release_request(self) -> None:
        """Count one inference request less in flight."""
        self.requests -= 1
