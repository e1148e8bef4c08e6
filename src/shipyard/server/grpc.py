"""The gRPC transport: ``inference.GRPCInferenceService`` on Shipyard's own HTTP/2 server.

Each RPC decodes its message, calls the same :class:`InferenceService` as HTTP and encodes the
answer. Errors become a gRPC status from :data:`GRPC_STATUS`, the one table this transport has,
with the same message text as over HTTP; unexpected exceptions are logged with their traceback
and answered INTERNAL without one.

The wire is gRPC over cleartext HTTP/2 (what every gRPC client speaks without TLS): Shipyard's
own HTTP/2 endpoint with its limits (:mod:`shipyard.protocol.http2`), served by an asyncio
protocol on the server's own event loop, beside uvicorn (:mod:`shipyard.server.grpc_connection`).
Why not ``grpc.aio``: on the reference machine its per-call cost alone (a poller thread handing
every completion to the loop through a socket) was above Shipyard's whole HTTP path, and calls
reached the batcher too spread out to batch; see docs/design-notes.md. Here a read from the
socket carries many calls at once, they reach the batcher in the same loop iteration, and the
answers of one batch leave in one write.

A call's deadline (``grpc-timeout``) becomes the request's queue ``timeout`` when it is the
tighter limit, so a request whose client has given up never reaches the model and the client
hears why. A call the client cancels (RST_STREAM) or whose connection closes is cancelled.

Every RPC runs in a request context (:mod:`shipyard.server.observe`): its ``x-request-id``
metadata (or a new ID) is on each log line, ``traceparent`` continues the caller's trace, and
ModelInfer calls are counted and timed per model. The connection hands the call's metadata
over in :data:`current_call`; what the servicer puts in :attr:`CallMetadata.trailers` goes
back as trailing metadata: the client's ``x-request-id``, and ``grpc-retry-pushback-ms`` with
an overload's UNAVAILABLE (clients with a retry policy wait that long; gRFC A6).

Needs the ``grpc`` extra (protobuf and hpack); :mod:`shipyard.server.app` imports this
module only when gRPC is on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from typing import Any

try:
    from shipyard.protocol import grpc_service_pb2 as pb
    from shipyard.protocol.grpc_wire import StatusCode
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        f"gRPC support needs the 'grpc' extra ({exc.name} is missing): "
        "pip install 'shipyard[grpc]', or turn gRPC off with --grpc-port 0"
    ) from exc

from shipyard.context import REQUEST_ID_HEADER, current_request
from shipyard.errors import ErrorCode, ShipyardError, UnavailableError, UnsupportedError
from shipyard.metrics import ServerMetrics, outcome
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
from shipyard.server.admission import Admission
from shipyard.server.observe import Observer
from shipyard.server.service import InferenceService

__all__ = ["GRPC_STATUS", "CallMetadata", "InferenceServicer", "StatusCode", "current_call"]

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
    ErrorCode.UNAUTHENTICATED: StatusCode.UNAUTHENTICATED,
    ErrorCode.PERMISSION_DENIED: StatusCode.PERMISSION_DENIED,
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


_Handler = Callable[[Any, float | None], Awaitable[Any]]
_REQUEST_ID = REQUEST_ID_HEADER.encode()


class CallMetadata:
    """The call being served, as its connection hands it to the servicer (:data:`current_call`)."""

    __slots__ = ("metadata", "size", "trailers")

    def __init__(self, metadata: Sequence[tuple[bytes, bytes]], size: int) -> None:
        #: The call's headers (its metadata, pseudo-headers included).
        self.metadata = metadata
        #: Bytes of its request message.
        self.size = size
        #: Metadata the answer's trailers carry besides ``grpc-status`` and ``grpc-message``.
        self.trailers: list[tuple[bytes, bytes]] = []


#: The call the running task serves (set by the connection before the handler runs).
current_call: ContextVar[CallMetadata | None] = ContextVar("shipyard_grpc_call", default=None)


class InferenceServicer:
    """The ``GRPCInferenceService`` RPCs, each a thin adapter over one service method.

    Each takes the decoded request message and the seconds left before the call's deadline
    (None without one) and returns the response message, or raises :class:`ShipyardError`.
    ``observer`` and ``admission`` are the server's (None: a private one, no limits).
    """

    def __init__(
        self,
        service: InferenceService,
        observer: Observer | None = None,
        admission: Admission | None = None,
        retry_after_s: int = 1,
    ) -> None:
        self.service = service
        self.observer = observer or Observer(ServerMetrics())
        self.admission = admission or Admission()
        self._pushback = (b"grpc-retry-pushback-ms", str(retry_after_s * 1000).encode())

    def methods(self) -> dict[str, tuple[Callable[[bytes], Any], _Handler]]:
        """``/inference.GRPCInferenceService/<Rpc>`` → (request parser, handler)."""
        return {
            SERVICE_PATH + name: (request_type.FromString, self._observed(name))
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

    def _observed(self, name: str) -> _Handler:
        """The handler of RPC ``name`` inside a request context, its answer observed."""
        handler: _Handler = getattr(self, name)
        inference = name == "ModelInfer"
        observer = self.observer
        admission = self.admission

        async def observed(request: Any, remaining_s: float | None) -> Any:
            call = current_call.get()
            request_id = traceparent = tracestate = None
            for key, value in call.metadata if call is not None else ():
                if key == _REQUEST_ID:
                    request_id = value
                elif key == b"traceparent":
                    traceparent = value.decode("latin-1")
                elif key == b"tracestate":
                    tracestate = value.decode("latin-1")
            ctx = observer.start("grpc", request_id, traceparent, tracestate)
            if call is not None and request_id is not None:
                call.trailers.append((_REQUEST_ID, ctx.request_id.encode()))
            current_request.set(ctx)  # the call's own task: no reset needed
            code = StatusCode.OK
            held = sent = 0
            try:
                if inference:
                    ctx.endpoint = name
                    ctx.bytes_in = held = call.size if call is not None else 0
                    admission.acquire_request()
                    try:
                        admission.acquire_bytes(held)
                    except ShipyardError:
                        held = 0
                        admission.release_request()
                        raise
                try:
                    response = await handler(request, remaining_s)
                except asyncio.CancelledError:
                    if not self.service.draining:
                        raise  # the client cancelled: nobody to answer
                    raise UnavailableError(
                        "the server shut down before the call finished; send it again"
                    ) from None
                finally:
                    if inference:
                        admission.release_bytes(held)
                        admission.release_request()
                ctx.outcome = "success"
                if observer.access_log_sample:
                    sent = response.ByteSize()
                return response
            except ShipyardError as exc:
                ctx.outcome = outcome(exc)
                code = GRPC_STATUS[exc.code]
                if code is StatusCode.UNAVAILABLE and call is not None:
                    call.trailers.append(self._pushback)
                raise
            except asyncio.CancelledError:
                ctx.outcome = "cancelled"
                code = StatusCode.CANCELLED
                raise
            except Exception:
                ctx.outcome = "internal"
                code = StatusCode.INTERNAL
                raise
            finally:
                failed = code is StatusCode.INTERNAL
                observer.finish(ctx, str(int(code)), failed, "POST", name, sent)

        return observed

    async def ServerLive(  # noqa: N802
        self, request: pb.ServerLiveRequest, remaining_s: float | None
    ) -> pb.ServerLiveResponse:
        """Answer whether the server is live."""
        return pb.ServerLiveResponse(live=self.service.live())

    async def ServerReady(  # noqa: N802
        self, request: pb.ServerReadyRequest, remaining_s: float | None
    ) -> pb.ServerReadyResponse:
        """Answer whether every model is ready and the server is not draining."""
        return pb.ServerReadyResponse(ready=await self.service.server_ready())

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
        ctx = current_request.get()
        if ctx is not None:
            ctx.decoded_at = time.perf_counter_ns()
        response = await self.service.infer(infer_request)
        start = time.perf_counter_ns()
        answer = encode_infer_response(response)
        if ctx is not None:
            ctx.encode_at, ctx.encode_ns = start, time.perf_counter_ns() - start
        return answer

    async def ModelStatistics(  # noqa: N802
        self, request: pb.ModelStatisticsRequest, remaining_s: float | None
    ) -> pb.ModelStatisticsResponse:
        """Answer the statistics of every model, a model, or one version."""
        name, version = request.name or None, request.version or None
        statistics = await self.service.server_statistics(name, version)
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
