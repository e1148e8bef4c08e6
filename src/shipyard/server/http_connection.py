"""The HTTP/1.1 transport's connections: uvicorn's httptools protocol with Shipyard's limits.

uvicorn parses HTTP/1.1 (``httptools``) and closes idle keep-alive connections
(``http_idle_timeout_s``); it has no limit on the time a client takes to send a request, nor on
the number of connections. :func:`http_protocol` returns its protocol class with those limits
added, for ``uvicorn.Config(http=...)``:

- A request's headers must arrive within ``http_header_timeout_s`` of its first byte (of the
  connection's opening, for the first request), and be at most ``http_max_header_bytes``. A
  client that is too slow gets 408, one that sends too much gets 431; both are closed. A
  connection that never sends a byte is closed after the same time, without an answer.
- A request's body must arrive within ``http_body_timeout_s`` of its headers; past it, 408
  and close. Time when the server itself stopped reading (the application has not consumed the
  body yet) does not count.
- Past ``http_max_connections`` open connections, a new one is answered 503 (``Retry-After``)
  and closed, before anything it sends is read.

One timer per server checks every connection's phase a few times per timeout, so a request
costs two clock reads and no timer of its own. Nothing is parsed here: the phases come from
the parser's callbacks.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import ssl
from dataclasses import dataclass
from typing import Any, ClassVar

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from shipyard.config import ServerConfig
from shipyard.protocol.rest import encode_json

__all__ = ["Http1Limits", "LimitedHttpProtocol", "http_protocol"]

log = logging.getLogger(__name__)

#: Seconds a refused connection still reads (and drops) what arrives, so that the client
#: reads the 503 instead of a reset (closing a socket with unread input resets it).
LINGER_S = 1.0


@dataclass(frozen=True, slots=True)
class Http1Limits:
    """What one HTTP/1.1 client may cost: times, header bytes, connections."""

    #: Seconds from a request's first byte (a connection's opening) to the end of its headers.
    header_timeout_s: float
    #: Seconds from the end of a request's headers to the end of its body.
    body_timeout_s: float
    #: Seconds an idle keep-alive connection stays open (uvicorn's ``timeout_keep_alive``).
    idle_timeout_s: float
    #: Connections open at once; past it a new one is answered 503 and closed.
    max_connections: int
    #: Largest request line plus headers, in bytes (431 above it).
    max_header_bytes: int

    @classmethod
    def from_config(cls, config: ServerConfig) -> Http1Limits:
        """The limits set in ``config`` (``http_*``)."""
        return cls(
            header_timeout_s=config.http_header_timeout_s,
            body_timeout_s=config.http_body_timeout_s,
            idle_timeout_s=config.http_idle_timeout_s,
            max_connections=config.http_max_connections,
            max_header_bytes=config.http_max_header_bytes,
        )

    @property
    def tick_s(self) -> float:
        """How often the connections are checked: a quarter of the shortest timeout, <= 1 s."""
        return min(1.0, max(0.01, min(self.header_timeout_s, self.body_timeout_s) / 4))


class Phase(enum.Enum):
    """Where a connection is in its current request."""

    #: Between requests, or a request in the application: no Shipyard limit (uvicorn's
    #: keep-alive timer covers idleness).
    IDLE = "idle"
    HEADERS = "headers"
    BODY = "body"


def _response(status: bytes, message: str, extra: bytes = b"") -> bytes:
    """A complete ``Connection: close`` response carrying ``{"error": message}``."""
    body = encode_json({"error": message})
    return b"".join(
        [
            b"HTTP/1.1 ",
            status,
            b"\r\ncontent-type: application/json\r\ncontent-length: ",
            str(len(body)).encode(),
            b"\r\nconnection: close\r\n",
            extra,
            b"\r\n",
            body,
        ]
    )


class _Watch:
    """The connections of one server and the timer that checks their phases."""

    def __init__(self, limits: Http1Limits) -> None:
        self.limits = limits
        self.connections: set[LimitedHttpProtocol] = set()
        #: Connections refused over the cap, and cut for a limit, since the start.
        self.refused = 0
        self.cut = 0
        self._timer: asyncio.TimerHandle | None = None

    def add(self, connection: LimitedHttpProtocol) -> None:
        self.connections.add(connection)
        if self._timer is None:
            self._timer = connection.loop.call_later(self.limits.tick_s, self._tick)

    def discard(self, connection: LimitedHttpProtocol) -> None:
        self.connections.discard(connection)
        if not self.connections and self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _tick(self) -> None:
        self._timer = None
        if not self.connections:
            return
        loop = next(iter(self.connections)).loop
        now = loop.time()
        for connection in list(self.connections):
            connection.check(now)
        if self.connections:
            self._timer = loop.call_later(self.limits.tick_s, self._tick)


class LimitedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, plus header/body time limits and a connection cap.

    Use :func:`http_protocol` to get a subclass bound to one server's limits.
    """

    watch: ClassVar[_Watch]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.timeout_keep_alive = self.watch.limits.idle_timeout_s  # type: ignore[assignment]
        self.phase = Phase.HEADERS
        self.phase_since = 0.0
        #: Bytes received since the current request's headers began (while they are partial).
        self.header_bytes = 0
        self.refused = False

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        watch = self.watch
        if len(watch.connections) >= watch.limits.max_connections:
            self._refuse(transport)
            return
        super().connection_made(transport)
        self.phase_since = self.loop.time()
        watch.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.refused:
            return
        self.watch.discard(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return
        if self.phase is Phase.IDLE and (self.cycle is None or self.cycle.response_complete):
            self._enter(Phase.HEADERS)
        if self.phase is Phase.HEADERS:
            self.header_bytes += len(data)
        super().data_received(data)
        limit = self.watch.limits.max_header_bytes
        if (
            self.phase is Phase.HEADERS
            and self.header_bytes > limit
            and not self.transport.is_closing()
        ):
            message = f"request headers are over the limit of {limit} bytes (http_max_header_bytes)"
            self._close_with(b"431 Request Header Fields Too Large", message)

    # -- parser callbacks ---------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self.phase is Phase.IDLE:  # a pipelined request behind one in the application
            self._enter(Phase.HEADERS)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._enter(Phase.BODY)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.phase = Phase.IDLE

    # -- limits -------------------------------------------------------------------------------

    def _enter(self, phase: Phase) -> None:
        self.phase = phase
        self.phase_since = self.loop.time()
        self.header_bytes = 0

    def check(self, now: float) -> None:
        """Close this connection if its current phase has run past its time limit."""
        limits = self.watch.limits
        if self.phase is Phase.HEADERS:
            if now - self.phase_since > limits.header_timeout_s:
                self._headers_timed_out(limits.header_timeout_s)
        elif self.phase is Phase.BODY:
            if self.flow is not None and self.flow.read_paused:
                self.phase_since = now  # the server stopped reading: not the client's time
            elif now - self.phase_since > limits.body_timeout_s:
                message = (
                    f"request body not received within {limits.body_timeout_s:g} s "
                    "(http_body_timeout_s)"
                )
                self._close_with(b"408 Request Timeout", message)

    def _headers_timed_out(self, timeout_s: float) -> None:
        busy = self.cycle is not None and not self.cycle.response_complete
        if self.header_bytes == 0 or busy:
            # Nothing sent (a connection opened and left), or a partial request pipelined
            # behind one whose answer is still being written: close without an answer.
            self.watch.discard(self)
            self.transport.close()
            return
        message = f"request headers not received within {timeout_s:g} s (http_header_timeout_s)"
        self._close_with(b"408 Request Timeout", message)

    def _close_with(self, status: bytes, message: str) -> None:
        """Answer ``status`` with ``{"error": message}`` (unless an answer has begun), close."""
        watch = self.watch
        watch.cut += 1
        level = logging.WARNING if watch.cut == 1 or watch.cut % 1000 == 0 else logging.DEBUG
        log.log(
            level,
            "HTTP connection from %s closed (%d so far): %s",
            _peer(self.client),
            watch.cut,
            message,
        )
        watch.discard(self)
        cycle = self.cycle
        if cycle is None or cycle.response_complete or not cycle.response_started:
            self.transport.write(_response(status, message))
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # the application's answer, if any, is dropped
            cycle.message_event.set()  # and its receive() returns http.disconnect
        self.phase = Phase.IDLE
        self.transport.close()

    def _refuse(self, transport: asyncio.Transport) -> None:
        """Answer 503 without reading the request; close when the client does (its EOF closes
        the transport), or after :data:`LINGER_S`."""
        watch = self.watch
        self.refused = True
        watch.refused += 1
        limit = watch.limits.max_connections
        if watch.refused == 1 or watch.refused % 1000 == 0:
            log.warning(
                "HTTP: %d connection(s) refused so far: over http_max_connections (%d)",
                watch.refused,
                limit,
            )
        message = f"too many connections (http_max_connections {limit}); retry later"
        transport.write(_response(b"503 Service Unavailable", message, b"retry-after: 1\r\n"))
        if transport.can_write_eof():
            transport.write_eof()
            self.loop.call_later(LINGER_S, transport.close)
        else:  # TLS: no half-close
            transport.close()


def _peer(client: tuple[str, int] | None) -> str:
    return "?" if client is None else f"{client[0]}:{client[1]}"


def http_protocol(limits: Http1Limits) -> type[LimitedHttpProtocol]:
    """A :class:`LimitedHttpProtocol` subclass for one server, to pass as uvicorn's ``http``."""
    return type("ShipyardHttpProtocol", (LimitedHttpProtocol,), {"watch": _Watch(limits)})


def uvicorn_config(
    app: Any, config: ServerConfig, ssl_context: ssl.SSLContext | None = None
) -> uvicorn.Config:
    """uvicorn's settings for a Shipyard HTTP server of ``app`` (``shipyard serve``, and each
    replica under ``shipyard ray serve --ingress shipyard``): httptools' parser with ``config``'s
    time, header and connection limits, its drain timeout, no lifespan, access log or
    Server/Date headers, and TLS when ``ssl_context`` is given."""
    return uvicorn.Config(
        app,
        loop="none",
        http=http_protocol(Http1Limits.from_config(config)),
        lifespan="off",
        access_log=False,
        log_config=None,
        server_header=False,
        date_header=False,
        timeout_graceful_shutdown=max(1, round(config.drain_timeout_s)),
        ssl_context_factory=None if ssl_context is None else lambda _c, _d: ssl_context,
    )
