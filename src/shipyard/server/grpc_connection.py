"""The gRPC transport's sockets: an asyncio protocol per connection, and the listening server.

Each connection feeds what it reads to a sans-I/O
:class:`~shipyard.protocol.http2.ServerConnection` (Shipyard's HTTP/2 endpoint with its
limits around it), starts the calls it hands out as tasks on the event loop once the whole
read is handled, and writes the answers of one loop iteration in one write, so the answers of
one batch leave together. A call's
deadline (``grpc-timeout``) becomes the request's queue timeout (see
:class:`~shipyard.server.grpc.InferenceServicer`); a call the client resets or whose
connection closes is cancelled.

The server counts connections: past ``grpc_max_connections`` a new one is accepted, told
GOAWAY(ENHANCE_YOUR_CALM) "too many connections" and closed at once. Each connection has one
timer for its handshake, idle and keepalive limits (:meth:`ServerConnection.check_timers`).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from typing import Any, cast

try:
    from shipyard.protocol.http2 import ConnectionLimits, ErrorCode, Request, ServerConnection
    from shipyard.protocol.http2.frames import (
        GOAWAY,
        SETTING,
        SETTINGS,
        SETTINGS_MAX_CONCURRENT_STREAMS,
        UINT32,
        frame,
    )
    from shipyard.server.grpc import GRPC_STATUS, CallMetadata, InferenceServicer, current_call
    from shipyard.server.grpc_health import HealthServicer
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        f"gRPC support needs the 'grpc' extra ({exc.name} is missing): "
        "pip install 'shipyard[grpc]', or turn gRPC off with --grpc-port 0"
    ) from exc

from shipyard.config import ServerConfig
from shipyard.errors import InvalidInputError, PayloadTooLargeError, ShipyardError
from shipyard.protocol.grpc_wire import (
    StatusCode,
    encode_message_text,
    frame_message,
    parse_timeout,
    unframe_message,
)
from shipyard.server.admission import Admission
from shipyard.server.auth import AuthPolicy, check_grpc_call
from shipyard.server.observe import Observer
from shipyard.server.service import InferenceService

__all__ = ["GRPC_CONTENT_TYPES", "GrpcConnection", "GrpcServer", "connection_limits"]

log = logging.getLogger(__name__)

#: The content types a gRPC call may carry (anything else is answered HTTP 415).
GRPC_CONTENT_TYPES = frozenset({b"application/grpc", b"application/grpc+proto"})

Headers = Sequence[tuple[bytes, bytes]]
_Handler = Callable[[Any, float | None], Any]

#: Seconds a connection closed for an error still reads (and drops) what arrives, so that
#: the client can read the GOAWAY before the connection goes (see GrpcConnection._finish).
LINGER_S = 1.0


# Answers are encoded as literal fields never indexed: constant bytes, no HPACK table state.
_RESPONSE_HEADERS = (
    (b":status", b"200"),
    (b"content-type", b"application/grpc"),
    (b"grpc-accept-encoding", b"identity"),
)
_OK_TRAILERS = ((b"grpc-status", b"0"),)


def _trailers_only(
    code: int, message: str, http_status: bytes = b"200", extra: Headers = ()
) -> Headers:
    """The one header block of a call that fails before any answer (Trailers-Only); ``extra``:
    the servicer's trailing metadata."""
    return (
        (b":status", http_status),
        (b"content-type", b"application/grpc"),
        (b"grpc-status", str(code).encode()),
        (b"grpc-message", encode_message_text(message[:4096])),
        *extra,
    )


def connection_limits(config: ServerConfig) -> ConnectionLimits:
    """The policy of one gRPC connection, from the server's settings."""
    return ConnectionLimits(
        max_message_bytes=config.grpc_max_message_bytes,
        max_concurrent_streams=config.grpc_max_concurrent_streams,
        max_header_list_bytes=config.grpc_max_header_list_bytes,
        max_unsent_bytes=config.grpc_max_unsent_bytes,
        max_resets=config.grpc_max_resets,
        max_pings=config.grpc_max_pings,
        max_settings=config.grpc_max_settings,
        flood_window_s=config.grpc_flood_window_s,
        handshake_timeout_s=config.grpc_handshake_timeout_s,
        idle_timeout_s=config.grpc_idle_timeout_s,
        keepalive_interval_s=config.grpc_keepalive_interval_s,
        keepalive_timeout_s=config.grpc_keepalive_timeout_s,
    )


class _Call:
    """One call's request, validated: the method, the message, the deadline, the metadata."""

    __slots__ = ("deadline", "handler", "message", "metadata", "parse", "path")

    def __init__(
        self,
        path: str,
        parse: Callable[[bytes], Any],
        handler: _Handler,
        message: bytes,
        deadline: float | None,
        metadata: Headers,
    ) -> None:
        self.path = path
        self.parse = parse
        self.handler = handler
        self.message = message
        self.deadline = deadline  # time.monotonic() when the client gives up; None: never
        self.metadata = metadata  # every header of the call, pseudo-headers included


class GrpcConnection(asyncio.Protocol):
    """One client connection: bytes to the HTTP/2 connection, calls to the servicers."""

    def __init__(self, server: GrpcServer) -> None:
        self.server = server
        self._loop = asyncio.get_running_loop()
        self.h2 = ServerConnection(server.limits, clock=self._loop.time)
        self.transport: asyncio.Transport | None = None
        self.tasks: dict[int, asyncio.Task[None]] = {}
        self._flush_scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._finishing = False
        #: The client's address (for repository control without keys: loopback only).
        self.peer: str | None = None

    # -- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if isinstance(peer, tuple) and peer else None
        self.server.connections.add(self)
        if self.server.closing:
            self.h2.goaway()
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.transport = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for task in self.tasks.values():
            task.cancel()

    def pause_writing(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()  # a client that does not read sends nothing more

    def resume_writing(self) -> None:
        if self.transport is not None:
            self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        if self._finishing:
            return  # lingering after GOAWAY: dropped
        received = self.h2.receive(data)
        for stream_id in received.cancelled:
            task = self.tasks.pop(stream_id, None)
            if task is not None:
                task.cancel()
        limit = self.server.limits.max_message_bytes
        for stream_id in received.oversized:
            message = (
                f"received a message larger than the limit of {limit} bytes "
                "(grpc_max_message_bytes)"
            )
            self._fail(stream_id, StatusCode.RESOURCE_EXHAUSTED, message)
        self._flush()

    # -- calls ------------------------------------------------------------------------------

    def _start(self, request: Request) -> None:
        """Check a request's headers and message and start its call (or answer its error)."""
        stream_id = request.stream_id
        path = method = content_type = timeout = encoding = te = None
        for key, value in request.headers:
            if key == b":path":
                path = value
            elif key == b":method":
                method = value
            elif key == b"content-type":
                content_type = value
            elif key == b"te":
                te = value
            elif key == b"grpc-timeout":
                timeout = value
            elif key == b"grpc-encoding":
                encoding = value
        if method != b"POST":
            self._fail_now(stream_id, StatusCode.INTERNAL, "gRPC uses POST", b"405")
            return
        if content_type not in GRPC_CONTENT_TYPES:
            shown = None if content_type is None else content_type.decode("latin-1")
            message = f"content-type {shown!r} is not application/grpc"
            self._fail_now(stream_id, StatusCode.UNKNOWN, message, b"415")
            return
        if te != b"trailers":
            message = "gRPC needs the header 'te: trailers'"
            self._fail_now(stream_id, StatusCode.INTERNAL, message, b"400")
            return
        entry = self.server.methods.get(path or b"")
        name = (path or b"").decode("latin-1")
        if entry is None:
            self._fail_now(stream_id, StatusCode.UNIMPLEMENTED, f"method {name} is not implemented")
            return
        unframed = unframe_message(request.body)
        if unframed is None:
            message = f"{name}: the request must be exactly one length-prefixed message"
            self._fail_now(stream_id, StatusCode.INVALID_ARGUMENT, message)
            return
        compressed, payload = unframed
        if compressed:
            shown = None if encoding is None else encoding.decode("latin-1")
            self._fail_now(
                stream_id,
                StatusCode.UNIMPLEMENTED,
                f"compressed messages (grpc-encoding {shown}) are not supported; "
                "send them uncompressed (identity)",
            )
            return
        deadline = None
        if timeout is not None:
            seconds = parse_timeout(timeout.decode("latin-1"))
            if seconds is None:
                message = f"bad grpc-timeout {timeout.decode('latin-1')!r}"
                self._fail_now(stream_id, StatusCode.INVALID_ARGUMENT, message)
                return
            deadline = time.monotonic() + seconds
        # The call's metadata (request.headers) is complete here; _run checks it against the
        # auth policy once the message is parsed, before any service code runs.
        call = _Call(name, entry[0], entry[1], payload, deadline, request.headers)
        self.tasks[stream_id] = self._loop.create_task(self._run(stream_id, call))

    async def _run(self, stream_id: int, call: _Call) -> None:
        served = CallMetadata(call.metadata, len(call.message))
        current_call.set(served)  # the servicer reads the metadata, adds trailing metadata
        try:
            try:
                request = call.parse(call.message)
            except Exception as exc:  # protobuf's DecodeError
                raise InvalidInputError(f"{call.path}: cannot parse the message ({exc})") from exc
            auth = self.server.auth
            if auth is not None:  # who may call what, before any service code (server/auth.py)
                check_grpc_call(auth, call.path, request, call.metadata, self.peer)
            deadline = call.deadline
            remaining_s = None if deadline is None else deadline - time.monotonic()
            response = await call.handler(request, remaining_s)
            payload = response.SerializeToString()
            limit = self.server.limits.max_message_bytes
            if len(payload) > limit:
                raise PayloadTooLargeError(
                    f"the response of {len(payload)} bytes is over the limit of {limit} bytes "
                    "(grpc_max_message_bytes)"
                )
        except ShipyardError as exc:
            self._fail(stream_id, GRPC_STATUS[exc.code], exc.message, extra=served.trailers)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("unexpected error in gRPC %s", call.path)
            message = f"internal server error ({type(exc).__name__}); see server log"
            self._fail(stream_id, StatusCode.INTERNAL, message)
        else:
            trailers: Headers = _OK_TRAILERS
            if served.trailers:
                trailers = (*_OK_TRAILERS, *served.trailers)
            self.h2.respond(stream_id, _RESPONSE_HEADERS, frame_message(payload), trailers)
        finally:
            self.tasks.pop(stream_id, None)
            self.h2.call_done(stream_id)
            self._schedule_flush()

    def _fail(
        self,
        stream_id: int,
        code: StatusCode,
        message: str,
        http_status: bytes = b"200",
        extra: Headers = (),
    ) -> None:
        """Answer with one header block (Trailers-Only): the status and its message."""
        trailers = _trailers_only(code, message, http_status, extra)
        self.h2.respond(stream_id, None, b"", trailers)

    def _fail_now(
        self, stream_id: int, code: StatusCode, message: str, http_status: bytes = b"200"
    ) -> None:
        """Answer a call that will not run, and release its place."""
        self._fail(stream_id, code, message, http_status)
        self.h2.call_done(stream_id)

    # -- output and timers --------------------------------------------------------------------

    def _schedule_flush(self) -> None:
        """Write at the end of this loop iteration: the answers of one batch leave together."""
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        """Start the calls that may start, write what is queued, close or re-arm the timer."""
        self._flush_scheduled = False
        h2 = self.h2
        for request in h2.take_ready():
            self._start(request)
        transport = self.transport
        if transport is None:
            return
        data = h2.data_to_send()
        if data:
            transport.write(data)
        if h2.finished:
            self._finish(transport)
            return
        deadline = h2.next_deadline()
        if deadline is not None and (self._timer is None or deadline < self._timer_at):
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = deadline
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def _finish(self, transport: asyncio.Transport) -> None:
        """Close a finished connection; after an error, linger so the client reads GOAWAY.

        Closing a socket with unread bytes resets it, and the reset discards what the client
        had not read yet, GOAWAY included. So after GOAWAY for an error the server only stops
        writing, drops what still arrives, and closes after :data:`LINGER_S`.
        """
        if self._finishing:
            return
        self._finishing = True
        closed = self.h2.closed
        if closed is None:  # drained after a graceful GOAWAY
            transport.close()
            return
        level = logging.DEBUG if closed.code == ErrorCode.NO_ERROR else logging.INFO
        log.log(level, "gRPC connection closed: %s", closed.message)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if transport.can_write_eof():
            transport.write_eof()
        self._loop.call_later(LINGER_S, transport.close)

    def _on_timer(self) -> None:
        self._timer = None
        self.h2.check_timers()
        self._flush()

    def goaway(self) -> None:
        """Refuse new calls; answer the ones in flight, then close (see GrpcServer.stop)."""
        self.h2.goaway()
        self._flush()


class _RefusedConnection(asyncio.Protocol):
    """A connection over ``grpc_max_connections``: SETTINGS, GOAWAY and close, nothing read."""

    def __init__(self, refusal: bytes) -> None:
        self.refusal = refusal

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)
        transport.write(self.refusal)
        transport.close()


def _refusal(limit: int) -> bytes:
    """What a refused connection is told: SETTINGS (no streams), then GOAWAY(ENHANCE_YOUR_CALM)."""
    settings = frame(SETTINGS, 0, 0, SETTING.pack(SETTINGS_MAX_CONCURRENT_STREAMS, 0))
    reason = f"too many connections (grpc_max_connections {limit})".encode()
    last_stream, code = UINT32.pack(0), UINT32.pack(ErrorCode.ENHANCE_YOUR_CALM)
    return settings + frame(GOAWAY, 0, 0, last_stream + code + reason)


class GrpcServer:
    """The gRPC transport on a listening socket that :mod:`shipyard.server.app` bound.

    ``ssl``, when given, is passed to the event loop's server (TLS; the context must offer
    ALPN ``h2``); the handshake timeout then also bounds the TLS handshake. ``observer`` and
    ``admission`` are the server's (request IDs, metrics, limits shared with HTTP). ``auth``,
    when given, decides who may make each call (``authorization`` metadata, the peer's address).
    """

    def __init__(
        self,
        service: InferenceService,
        sock: socket.socket,
        config: ServerConfig,
        ssl_context: ssl.SSLContext | None = None,
        observer: Observer | None = None,
        admission: Admission | None = None,
        auth: AuthPolicy | None = None,
    ) -> None:
        inference = InferenceServicer(service, observer, admission, config.retry_after_s)
        methods = {**inference.methods(), **HealthServicer(service).methods()}
        self.methods = {path.encode(): entry for path, entry in methods.items()}
        self.sock = sock
        self.limits = connection_limits(config)
        self.max_connections = config.grpc_max_connections
        self.ssl_context = ssl_context
        self.auth = auth
        self.connections: set[GrpcConnection] = set()
        #: Connections refused since the start (over grpc_max_connections).
        self.refused = 0
        self.closing = False
        self._refusal = _refusal(self.max_connections)
        self._server: asyncio.Server | None = None

    def _connection(self) -> asyncio.Protocol:
        """A protocol for a new connection: served, or refused over the cap."""
        if len(self.connections) >= self.max_connections:
            self.refused += 1
            if self.refused == 1 or self.refused % 1000 == 0:
                log.warning(
                    "gRPC: %d connection(s) refused so far: over grpc_max_connections (%d)",
                    self.refused,
                    self.max_connections,
                )
            return _RefusedConnection(self._refusal)
        return GrpcConnection(self)

    async def start(self) -> None:
        """Accept connections on the bound socket."""
        loop = asyncio.get_running_loop()
        tls: dict[str, Any] = {}
        if self.ssl_context is not None:
            timeout = self.limits.handshake_timeout_s
            tls = {"ssl": self.ssl_context, "ssl_handshake_timeout": timeout}
        self._server = await loop.create_server(self._connection, sock=self.sock, **tls)

    async def stop(self, grace: float) -> None:
        """Stop accepting; calls in flight get ``grace`` seconds to be answered, then are cut."""
        self.closing = True
        if self._server is not None:
            self._server.close()
        for connection in list(self.connections):
            connection.goaway()
        # Each connection closes itself once its calls are answered and their answers written
        # (an answer may wait for the client's flow-control window), so wait for that.
        deadline = time.monotonic() + grace
        while self.connections and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        # Calls still running are cut; each answers UNAVAILABLE (the servicer turns the
        # cancellation into it while the server drains) before its connection closes.
        cut = [task for connection in self.connections for task in connection.tasks.values()]
        for task in cut:
            task.cancel()
        if cut:
            await asyncio.wait(cut, timeout=1.0)
        for connection in list(self.connections):
            if connection.transport is not None:
                connection.transport.write(connection.h2.data_to_send())
                connection.transport.close()
        self.sock.close()
