"""The gRPC transport: ``inference.GRPCInferenceService`` on Shipyard's own HTTP/2 server.

Each RPC decodes its message, calls the same :class:`InferenceService` as HTTP and encodes the
answer. Errors become a gRPC status from :data:`GRPC_STATUS`, the one table this transport has,
with the same message text as over HTTP; unexpected exceptions are logged with their traceback
and answered INTERNAL without one.

The wire is gRPC over cleartext HTTP/2 (what every gRPC client speaks without TLS), framed by
:mod:`shipyard.protocol.http2` and served by an asyncio protocol on the server's own event
loop, beside uvicorn. Why not ``grpc.aio``: on the reference machine its per-call cost alone
(a poller thread handing every completion to the loop through a socket) was above Shipyard's
whole HTTP path, and calls reached the batcher too spread out to batch; see
docs/design-notes.md. Here a read from the socket carries many calls at once, they reach the
batcher in the same loop iteration, and the answers of one batch leave in one write.

A call's deadline (``grpc-timeout``) becomes the request's queue ``timeout`` when it is the
tighter limit, so a request whose client has given up never reaches the model and the client
hears why. A call the client cancels (RST_STREAM) or whose connection closes is cancelled.

Needs the ``grpc`` extra (protobuf and hpack); :mod:`shipyard.server.app` imports this module
only when gRPC is on.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

try:
    from shipyard.protocol import grpc_service_pb2 as pb
    from shipyard.protocol import http2
    from shipyard.protocol.grpc_wire import (
        StatusCode,
        encode_message_text,
        frame_message,
        parse_timeout,
        unframe_message,
    )
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        f"gRPC support needs the 'grpc' extra ({exc.name} is missing): "
        "pip install 'shipyard[grpc]', or turn gRPC off with --grpc-port 0"
    ) from exc

from shipyard.errors import (
    ErrorCode,
    InvalidInputError,
    PayloadTooLargeError,
    ShipyardError,
    UnsupportedError,
)
from shipyard.protocol.grpc import (
    decode_infer_request,
    decode_repository_parameters,
    encode_infer_response,
    encode_model_config,
    encode_model_metadata,
    encode_repository_index,
    encode_server_metadata,
    encode_statistics,
)
from shipyard.server.service import InferenceService

__all__ = ["GRPC_STATUS", "GrpcServer", "InferenceServicer", "StatusCode"]

log = logging.getLogger(__name__)

SERVICE_PATH = "/inference.GRPCInferenceService/"


#: The transport's one error table. A payload over a limit is RESOURCE_EXHAUSTED, the status
#: gRPC itself gives a message over the size limit, so clients see one code for both.
GRPC_STATUS: dict[ErrorCode, StatusCode] = {
    ErrorCode.INVALID_ARGUMENT: StatusCode.INVALID_ARGUMENT,
    ErrorCode.PAYLOAD_TOO_LARGE: StatusCode.RESOURCE_EXHAUSTED,
    ErrorCode.NOT_FOUND: StatusCode.NOT_FOUND,
    ErrorCode.UNAVAILABLE: StatusCode.UNAVAILABLE,
    ErrorCode.DEADLINE_EXCEEDED: StatusCode.DEADLINE_EXCEEDED,
    ErrorCode.UNIMPLEMENTED: StatusCode.UNIMPLEMENTED,
    ErrorCode.INTERNAL: StatusCode.INTERNAL,
}

#: The request's queue timeout ends this share of the time left before the call's deadline (at
#: least 1 ms, at most 50 ms), so that the server's DEADLINE_EXCEEDED (naming the model and the
#: time queued) reaches the client before the client's own deadline fires, even when a busy
#: event loop wakes a few milliseconds late.
DEADLINE_MARGIN = 0.1


def _deadline(remaining_s: float) -> float:
    """The request's deadline (``time.monotonic()``) for a call with ``remaining_s`` left."""
    margin = min(max(remaining_s * DEADLINE_MARGIN, 0.001), 0.05)
    return time.monotonic() + remaining_s - margin


_RESPONSE_HEADERS = http2.encode_headers(
    [
        (b":status", b"200"),
        (b"content-type", b"application/grpc"),
        (b"grpc-accept-encoding", b"identity"),
    ]
)
_OK_TRAILERS = http2.encode_headers([(b"grpc-status", b"0")])


def _trailers_only(code: int, message: str, http_status: bytes = b"200") -> bytes:
    """The one header block of a call that fails before any answer (Trailers-Only)."""
    return http2.encode_headers(
        [
            (b":status", http_status),
            (b"content-type", b"application/grpc"),
            (b"grpc-status", str(code).encode()),
            (b"grpc-message", encode_message_text(message[:4096])),
        ]
    )


_Handler = Callable[[Any, float | None], Awaitable[Any]]


class InferenceServicer:
    """The ``GRPCInferenceService`` RPCs, each a thin adapter over one service method.

    Each takes the decoded request message and the seconds left before the call's deadline
    (None without one) and returns the response message, or raises :class:`ShipyardError`.
    """

    def __init__(self, service: InferenceService) -> None:
        self.service = service

    def methods(self) -> dict[str, tuple[Callable[[bytes], Any], _Handler]]:
        """``/inference.GRPCInferenceService/<Rpc>`` → (request parser, handler)."""
        return {
            SERVICE_PATH + name: (request_type.FromString, getattr(self, name))
            for name, request_type in (
                ("ServerLive", pb.ServerLiveRequest),
                ("ServerReady", pb.ServerReadyRequest),
                ("ModelReady", pb.ModelReadyRequest),
                ("ServerMetadata", pb.ServerMetadataRequest),
                ("ModelMetadata", pb.ModelMetadataRequest),
                ("ModelConfig", pb.ModelConfigRequest),
                ("ModelInfer", pb.ModelInferRequest),
                ("ModelStatistics", pb.ModelStatisticsRequest),
                ("RepositoryIndex", pb.RepositoryIndexRequest),
                ("RepositoryModelLoad", pb.RepositoryModelLoadRequest),
                ("RepositoryModelUnload", pb.RepositoryModelUnloadRequest),
            )
        }

    async def ServerLive(  # noqa: N802
        self, request: pb.ServerLiveRequest, remaining_s: float | None
    ) -> pb.ServerLiveResponse:
        """Answer whether the server is live."""
        return pb.ServerLiveResponse(live=self.service.live())

    async def ServerReady(  # noqa: N802
        self, request: pb.ServerReadyRequest, remaining_s: float | None
    ) -> pb.ServerReadyResponse:
        """Answer whether every model is ready and the server is not draining."""
        return pb.ServerReadyResponse(ready=self.service.ready())

    async def ModelReady(  # noqa: N802
        self, request: pb.ModelReadyRequest, remaining_s: float | None
    ) -> pb.ModelReadyResponse:
        """Answer whether a model (version) can serve."""
        ready = self.service.model_ready(request.name, request.version or None)
        return pb.ModelReadyResponse(ready=ready)

    async def ServerMetadata(  # noqa: N802
        self, request: pb.ServerMetadataRequest, remaining_s: float | None
    ) -> pb.ServerMetadataResponse:
        """Answer the server's name, version and extensions."""
        return encode_server_metadata(self.service.server_metadata())

    async def ModelMetadata(  # noqa: N802
        self, request: pb.ModelMetadataRequest, remaining_s: float | None
    ) -> pb.ModelMetadataResponse:
        """Answer a model's versions, platform and tensors."""
        metadata = self.service.model_metadata(request.name, request.version or None)
        return encode_model_metadata(metadata)

    async def ModelConfig(  # noqa: N802
        self, request: pb.ModelConfigRequest, remaining_s: float | None
    ) -> pb.ModelConfigResponse:
        """Answer a model's configuration, in Triton's ModelConfig message."""
        return encode_model_config(self.service.model_config(request.name, request.version or None))

    async def ModelInfer(  # noqa: N802
        self, request: pb.ModelInferRequest, remaining_s: float | None
    ) -> pb.ModelInferResponse:
        """Run one inference; the call's deadline becomes the request's."""
        infer_request = decode_infer_request(request, self.service.max_tensor_elements)
        if remaining_s is not None:
            infer_request.deadline = _deadline(remaining_s)
        response = await self.service.infer(infer_request)
        return encode_infer_response(response)

    async def ModelStatistics(  # noqa: N802
        self, request: pb.ModelStatisticsRequest, remaining_s: float | None
    ) -> pb.ModelStatisticsResponse:
        """Answer the statistics of every model, a model, or one version."""
        statistics = self.service.statistics(request.name or None, request.version or None)
        return encode_statistics(statistics)

    async def RepositoryIndex(  # noqa: N802
        self, request: pb.RepositoryIndexRequest, remaining_s: float | None
    ) -> pb.RepositoryIndexResponse:
        """Answer every model in the repository with its state."""
        _check_repository(request.repository_name)
        return encode_repository_index(self.service.repository_index(request.ready))

    async def RepositoryModelLoad(  # noqa: N802
        self, request: pb.RepositoryModelLoadRequest, remaining_s: float | None
    ) -> pb.RepositoryModelLoadResponse:
        """Load or reload a model from the repository."""
        _check_repository(request.repository_name)
        parameters = decode_repository_parameters(request.parameters, "load")
        await self.service.load_model(request.model_name, parameters)
        return pb.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(  # noqa: N802
        self, request: pb.RepositoryModelUnloadRequest, remaining_s: float | None
    ) -> pb.RepositoryModelUnloadResponse:
        """Unload a model once its in-flight requests finish."""
        _check_repository(request.repository_name)
        parameters = decode_repository_parameters(request.parameters, "unload")
        await self.service.unload_model(request.model_name, parameters)
        return pb.RepositoryModelUnloadResponse()


def _check_repository(name: str) -> None:
    """Shipyard serves one repository; naming one is refused, as Triton does."""
    if name:
        raise UnsupportedError(
            f"repository_name {name!r}: naming a repository is not supported; leave it empty"
        )


class _Call:
    """One call's request, validated: the method, the message bytes, the deadline."""

    __slots__ = ("deadline", "handler", "message", "parse", "path")

    def __init__(
        self,
        path: str,
        parse: Callable[[bytes], Any],
        handler: _Handler,
        message: bytes,
        deadline: float | None,
    ) -> None:
        self.path = path
        self.parse = parse
        self.handler = handler
        self.message = message
        self.deadline = deadline  # time.monotonic() when the client gives up; None: never


class _Connection(asyncio.Protocol):
    """One client connection: HTTP/2 frames in, calls to the servicer, answers out."""

    def __init__(self, server: GrpcServer) -> None:
        self.server = server
        self.h2 = http2.ServerConnection(
            max_body_bytes=server.max_message_bytes + 5,
            max_concurrent_streams=server.max_concurrent_streams,
        )
        self.transport: asyncio.Transport | None = None
        self.tasks: dict[int, asyncio.Task[None]] = {}
        self._flush_scheduled = False
        self._loop = asyncio.get_running_loop()

    # -- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.server.connections.add(self)
        if self.server.closing:
            self.h2.goaway()
        self.transport.write(self.h2.data_to_send())

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.transport = None
        for task in self.tasks.values():
            task.cancel()

    def pause_writing(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()  # a client that does not read sends nothing more

    def resume_writing(self) -> None:
        if self.transport is not None:
            self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        h2 = self.h2
        try:
            requests = h2.receive(data)
        except http2.ProtocolError as exc:
            log.info("gRPC connection closed: %s", exc.message)
            self._flush()
            if self.transport is not None:
                self.transport.close()
            return
        for stream_id in h2.reset:
            task = self.tasks.pop(stream_id, None)
            if task is not None:
                task.cancel()
        for stream_id in h2.oversized:
            limit = self.server.max_message_bytes
            self._fail(
                stream_id,
                StatusCode.RESOURCE_EXHAUSTED,
                f"received a message larger than the limit of {limit} bytes "
                "(grpc_max_message_bytes)",
            )
        for request in requests:
            self._start(request)
        self._flush()

    # -- calls ------------------------------------------------------------------------------

    def _start(self, request: http2.Request) -> None:
        stream_id = request.stream_id
        path = method = content_type = timeout = encoding = None
        for name, value in request.headers:
            if name == ":path":
                path = value
            elif name == ":method":
                method = value
            elif name == "content-type":
                content_type = value
            elif name == "grpc-timeout":
                timeout = value
            elif name == "grpc-encoding":
                encoding = value
        if method != "POST":
            self._fail(stream_id, StatusCode.INTERNAL, "gRPC uses POST", b"405")
            return
        if content_type is None or not content_type.startswith("application/grpc"):
            message = f"content-type {content_type!r} is not application/grpc"
            self._fail(stream_id, StatusCode.UNKNOWN, message, b"415")
            return
        entry = self.server.methods.get(path or "")
        if entry is None:
            self._fail(stream_id, StatusCode.UNIMPLEMENTED, f"method {path} is not implemented")
            return
        unframed = unframe_message(request.body)
        if unframed is None:
            self._fail(
                stream_id,
                StatusCode.INVALID_ARGUMENT,
                f"{path}: the request must be exactly one length-prefixed message",
            )
            return
        compressed, payload = unframed
        if compressed:
            self._fail(
                stream_id,
                StatusCode.UNIMPLEMENTED,
                f"compressed messages (grpc-encoding {encoding}) are not supported; "
                "send them uncompressed (identity)",
            )
            return
        deadline = None
        if timeout is not None:
            seconds = parse_timeout(timeout)
            if seconds is None:
                self._fail(stream_id, StatusCode.INVALID_ARGUMENT, f"bad grpc-timeout {timeout!r}")
                return
            deadline = time.monotonic() + seconds
        call = _Call(path or "", entry[0], entry[1], payload, deadline)
        task = self._loop.create_task(self._run(stream_id, call))
        self.tasks[stream_id] = task

    async def _run(self, stream_id: int, call: _Call) -> None:
        try:
            try:
                request = call.parse(call.message)
            except Exception as exc:  # protobuf's DecodeError
                raise InvalidInputError(f"{call.path}: cannot parse the message ({exc})") from exc
            deadline = call.deadline
            remaining_s = None if deadline is None else deadline - time.monotonic()
            response = await call.handler(request, remaining_s)
            payload = response.SerializeToString()
            limit = self.server.max_message_bytes
            if len(payload) > limit:
                raise PayloadTooLargeError(
                    f"the response of {len(payload)} bytes is over the limit of {limit} bytes "
                    "(grpc_max_message_bytes)"
                )
        except ShipyardError as exc:
            self._fail(stream_id, GRPC_STATUS[exc.code], exc.message)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("unexpected error in gRPC %s", call.path)
            message = f"internal server error ({type(exc).__name__}); see server log"
            self._fail(stream_id, StatusCode.INTERNAL, message)
        else:
            self.h2.respond(stream_id, _RESPONSE_HEADERS, frame_message(payload), _OK_TRAILERS)
        finally:
            self.tasks.pop(stream_id, None)
        self._schedule_flush()

    def _fail(
        self, stream_id: int, code: StatusCode, message: str, http_status: bytes = b"200"
    ) -> None:
        """Answer with one header block (Trailers-Only): the status and its message."""
        self.h2.respond(stream_id, b"", b"", _trailers_only(code, message, http_status))

    # -- output -----------------------------------------------------------------------------

    def _schedule_flush(self) -> None:
        """Write at the end of this loop iteration: the answers of one batch leave together."""
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        data = self.h2.data_to_send()
        if data and self.transport is not None:
            self.transport.write(data)
        closing = self.h2.goaway_sent and not self.tasks and self.h2.open_streams == 0
        if closing and self.transport is not None:
            self.transport.close()

    def goaway(self) -> None:
        """Refuse new calls; answer the ones in flight, then close (see GrpcServer.stop)."""
        self.h2.goaway()
        self._flush()


class GrpcServer:
    """The gRPC transport on a listening socket that :mod:`shipyard.server.app` bound."""

    def __init__(
        self,
        service: InferenceService,
        sock: socket.socket,
        max_message_bytes: int,
        max_concurrent_streams: int = 1000,
    ) -> None:
        self.methods = InferenceServicer(service).methods()
        self.sock = sock
        self.max_message_bytes = max_message_bytes
        self.max_concurrent_streams = max_concurrent_streams
        self.connections: set[_Connection] = set()
        self.closing = False
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        """Accept connections on the bound socket."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self), sock=self.sock)

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
        for connection in list(self.connections):
            for task in connection.tasks.values():
                task.cancel()
            if connection.transport is not None:
                connection._flush()
                connection.transport.close()
        self.sock.close()
