"""What both transports do when a request starts and ends: its ID, metrics, access log, spans.

A request's :class:`~shipyard.context.RequestContext` is opened with the client's
``x-request-id`` (or a new one) and W3C ``traceparent``/``tracestate``, and set as
:data:`~shipyard.context.current_request` while it is served, so every log line carries the
ID. At the end, :meth:`Observer.finish` counts the answer in :class:`ServerMetrics` (inference
requests only), writes the access log line when that log is on and sampled, and records the
request's spans when tracing is on.

:class:`ObservedApp` is the HTTP side: an ASGI middleware that also echoes ``x-request-id``
and turns a request cut off by the end of a drain into a clean 503 (the gRPC servicer does
the same through :class:`Observer`).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shipyard.context import REQUEST_ID_HEADER, RequestContext, current_request, open_request
from shipyard.log import ACCESS_LOGGER
from shipyard.metrics import ServerMetrics
from shipyard.protocol.rest import encode_json
from shipyard.server.tracing import Tracer

__all__ = ["ObservedApp", "Observer"]

access_log = logging.getLogger(ACCESS_LOGGER)

_REQUEST_ID = REQUEST_ID_HEADER.encode()


class Observer:
    """Opens and finishes requests for the transports (one per server)."""

    def __init__(
        self,
        metrics: ServerMetrics,
        access_log_sample: float = 0.0,
        tracer: Tracer | None = None,
    ) -> None:
        self.metrics = metrics
        #: Share of requests written to the access log (0: off, 1: all).
        self.access_log_sample = access_log_sample
        self.tracer = tracer
        #: Requests opened and finished so far, all transports and routes (equal once idle:
        #: the shutdown log line reports both).
        self.received = 0
        self.answered = 0
        self._random = random.Random()

    def start(
        self,
        transport: str,
        request_id: bytes | None,
        traceparent: str | None = None,
        tracestate: str | None = None,
    ) -> RequestContext:
        """Open a request's context (the caller sets :data:`current_request` to it)."""
        ctx = open_request(transport, request_id, traceparent, tracestate)
        self.received += 1
        if self.tracer is not None:
            ctx.wall_start_ns = time.time_ns()
        return ctx

    def finish(
        self,
        ctx: RequestContext,
        code: str,
        failed: bool,
        method: str,
        path: str,
        bytes_out: int,
    ) -> None:
        """Count the answer, log it, trace it. Call while :data:`current_request` is ``ctx``."""
        self.answered += 1
        if ctx.endpoint:
            self.metrics.finish(ctx, code)
        sample = self.access_log_sample
        if sample and (sample >= 1.0 or self._random.random() < sample):
            duration_ms = (time.perf_counter_ns() - ctx.received_at) / 1e6
            access_log.info(
                "%s %s %s %.2f ms in=%d out=%d",
                method,
                path,
                code,
                duration_ms,
                ctx.bytes_in,
                bytes_out,
                extra={
                    "event": "access",
                    "transport": ctx.transport,
                    "method": method,
                    "path": path,
                    "status": code,
                    "duration_ms": round(duration_ms, 3),
                    "bytes_in": ctx.bytes_in,
                    "bytes_out": bytes_out,
                },
            )
        if self.tracer is not None:
            self.tracer.record(ctx, method, path, code, failed)


class ObservedApp:
    """ASGI middleware: a request context per HTTP request, its ID echoed, its end observed.

    A request still running when the drain ends (its task cancelled by the server) gets a
    clean ``503 {"error"}`` with ``Retry-After``, not uvicorn's bare 500.
    """

    def __init__(self, app: ASGIApp, observer: Observer, retry_after_s: int) -> None:
        self.app = app
        self.observer = observer
        self._retry_after = str(retry_after_s).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI request through the wrapped app."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = traceparent = tracestate = None
        length = 0
        for name, value in scope["headers"]:
            if name == _REQUEST_ID:
                request_id = value
            elif name == b"content-length":
                length = int(value) if value.isdigit() and len(value) <= 18 else 0
            elif name == b"traceparent":
                traceparent = value.decode("latin-1")
            elif name == b"tracestate":
                tracestate = value.decode("latin-1")
        observer = self.observer
        ctx = observer.start("http", request_id, traceparent, tracestate)
        ctx.bytes_in = length
        token = current_request.set(ctx)
        echo = (_REQUEST_ID, ctx.request_id.encode())
        status = 0
        sent = 0

        def send_observed(message: Message) -> Awaitable[None]:
            # Not a coroutine of its own: it returns the awaitable of the real send.
            nonlocal status, sent
            kind = message["type"]
            if kind == "http.response.body":
                sent += len(message.get("body", b""))
            elif kind == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), echo]
            return send(message)

        try:
            await self.app(scope, receive, send_observed)
        except asyncio.CancelledError:
            if status:
                raise  # the answer had started: nothing clean can be sent any more
            ctx.outcome = "unavailable"
            await self._cut_off(send_observed)
        finally:
            observer.finish(ctx, str(status), status >= 500, scope["method"], scope["path"], sent)
            current_request.reset(token)

    async def _cut_off(self, send: Send) -> None:
        """Answer a request cut off by the end of the drain: 503, ``Retry-After``, JSON."""
        message = "the server shut down before the request finished; send it again"
        body = encode_json({"error": message})
        await send(
            {
                "type": "http.response.start",
                "status": 503,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"retry-after", self._retry_after),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
