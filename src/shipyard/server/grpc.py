"""The gRPC transport: ``inference.GRPCInferenceService`` on ``grpc.aio``.

Each RPC decodes its message, calls the same :class:`InferenceService` as HTTP and encodes the
answer. Errors become a gRPC status from :data:`GRPC_STATUS`, the one table this transport has,
with the same message text as over HTTP; unexpected exceptions are logged with their traceback
and answered INTERNAL without one.

A call's deadline becomes the request's queue ``timeout`` when it is the tighter limit, so a
request whose client has given up never reaches the model and the client hears why.

Needs the ``grpc`` extra; :mod:`shipyard.server.app` imports this module only when gRPC is on.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

try:
    import grpc
    from grpc import aio

    from shipyard.protocol import grpc_service_pb2 as pb
    from shipyard.protocol import grpc_service_pb2_grpc as pb_grpc
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        f"gRPC support needs the 'grpc' extra ({exc.name} is missing): "
        "pip install 'shipyard[grpc]', or turn gRPC off with --grpc-port 0"
    ) from exc

from shipyard.errors import ConfigError, ErrorCode, ShipyardError, UnsupportedError
from shipyard.protocol.grpc import (
    decode_infer_request,
    decode_parameters,
    encode_infer_response,
    encode_model_config,
    encode_model_metadata,
    encode_repository_index,
    encode_statistics,
)
from shipyard.server.service import InferenceService
from shipyard.types import InferRequest

__all__ = ["GRPC_STATUS", "InferenceServicer", "create_grpc_server"]

log = logging.getLogger(__name__)

#: The transport's one error table. A payload over a limit is RESOURCE_EXHAUSTED, the status
#: gRPC itself gives a message over the size limit, so clients see one code for both.
GRPC_STATUS: dict[ErrorCode, grpc.StatusCode] = {
    ErrorCode.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorCode.PAYLOAD_TOO_LARGE: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorCode.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorCode.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    ErrorCode.DEADLINE_EXCEEDED: grpc.StatusCode.DEADLINE_EXCEEDED,
    ErrorCode.UNIMPLEMENTED: grpc.StatusCode.UNIMPLEMENTED,
    ErrorCode.INTERNAL: grpc.StatusCode.INTERNAL,
}

#: The request's queue timeout ends this long before the call's deadline, so that the server's
#: DEADLINE_EXCEEDED (naming the model and the time queued) reaches the client before the
#: client's own deadline fires.
DEADLINE_MARGIN_US = 1_000

_Message = TypeVar("_Message")
_Handler = Callable[["InferenceServicer", Any, Any], Awaitable[_Message]]


def _rpc(method: _Handler[_Message]) -> _Handler[_Message]:
    """Turn ShipyardError (and anything unexpected) into a gRPC status by GRPC_STATUS."""

    @functools.wraps(method)
    async def handler(self: InferenceServicer, request: Any, context: Any) -> _Message:
        try:
            return await method(self, request, context)
        except ShipyardError as exc:
            code, message = GRPC_STATUS[exc.code], exc.message
        except Exception as exc:
            log.exception("unexpected error in gRPC %s", method.__name__)
            code = grpc.StatusCode.INTERNAL
            message = f"internal server error ({type(exc).__name__}); see server log"
        await context.abort(code, message)
        raise AssertionError("context.abort returned")  # pragma: no cover

    return handler


class InferenceServicer:
    """The ``GRPCInferenceService`` RPCs, each a thin adapter over one service method."""

    def __init__(self, service: InferenceService) -> None:
        self.service = service

    @_rpc
    async def ServerLive(self, request: pb.ServerLiveRequest, context: Any) -> Any:  # noqa: N802
        return pb.ServerLiveResponse(live=self.service.live())

    @_rpc
    async def ServerReady(self, request: pb.ServerReadyRequest, context: Any) -> Any:  # noqa: N802
        return pb.ServerReadyResponse(ready=self.service.ready())

    @_rpc
    async def ModelReady(self, request: pb.ModelReadyRequest, context: Any) -> Any:  # noqa: N802
        ready = self.service.model_ready(request.name, request.version or None)
        return pb.ModelReadyResponse(ready=ready)

    @_rpc
    async def ServerMetadata(self, request: pb.ServerMetadataRequest, context: Any) -> Any:  # noqa: N802
        metadata = self.service.server_metadata()
        return pb.ServerMetadataResponse(
            name=metadata["name"], version=metadata["version"], extensions=metadata["extensions"]
        )

    @_rpc
    async def ModelMetadata(self, request: pb.ModelMetadataRequest, context: Any) -> Any:  # noqa: N802
        metadata = self.service.model_metadata(request.name, request.version or None)
        return encode_model_metadata(metadata)

    @_rpc
    async def ModelConfig(self, request: pb.ModelConfigRequest, context: Any) -> Any:  # noqa: N802
        return encode_model_config(self.service.model_config(request.name, request.version or None))

    @_rpc
    async def ModelInfer(self, request: pb.ModelInferRequest, context: Any) -> Any:  # noqa: N802
        infer_request = decode_infer_request(request, self.service.max_tensor_elements)
        remaining_s = context.time_remaining()
        if remaining_s is not None:
            self._apply_deadline(infer_request, remaining_s)
        response = await self.service.infer(infer_request)
        return encode_infer_response(response)

    def _apply_deadline(self, request: InferRequest, remaining_s: float) -> None:
        """Make the call's deadline the request's ``timeout`` when it is the tighter one."""
        deadline_us = max(1, int(remaining_s * 1e6) - DEADLINE_MARGIN_US)
        current = request.parameters.get("timeout", 0)
        if isinstance(current, bool) or not isinstance(current, int) or current < 0:
            return  # the service refuses it with its usual message
        if current == 0:  # no timeout of the client's own: the model's default applies
            current = self.service.default_timeout_us(request.model_name, request.model_version)
        if current == 0 or deadline_us < current:
            request.parameters["timeout"] = deadline_us

    @_rpc
    async def ModelStatistics(self, request: pb.ModelStatisticsRequest, context: Any) -> Any:  # noqa: N802
        statistics = self.service.statistics(request.name or None, request.version or None)
        return encode_statistics(statistics)

    @_rpc
    async def RepositoryIndex(self, request: pb.RepositoryIndexRequest, context: Any) -> Any:  # noqa: N802
        _check_repository(request.repository_name)
        return encode_repository_index(self.service.repository_index(request.ready))

    @_rpc
    async def RepositoryModelLoad(  # noqa: N802
        self, request: pb.RepositoryModelLoadRequest, context: Any
    ) -> Any:
        _check_repository(request.repository_name)
        parameters = decode_parameters(request.parameters, "load")
        await self.service.load_model(request.model_name, parameters)
        return pb.RepositoryModelLoadResponse()

    @_rpc
    async def RepositoryModelUnload(  # noqa: N802
        self, request: pb.RepositoryModelUnloadRequest, context: Any
    ) -> Any:
        _check_repository(request.repository_name)
        parameters = decode_parameters(request.parameters, "unload")
        await self.service.unload_model(request.model_name, parameters)
        return pb.RepositoryModelUnloadResponse()


def _check_repository(name: str) -> None:
    """Shipyard serves one repository; naming one is refused, as Triton does."""
    if name:
        raise UnsupportedError(
            f"repository_name {name!r}: naming a repository is not supported; leave it empty"
        )


def create_grpc_server(
    service: InferenceService, address: str, max_message_bytes: int
) -> tuple[Any, int]:
    """Build a ``grpc.aio`` server for ``service`` bound to ``address`` ("host:port").

    Returns the (not yet started) server and the port it bound; port 0 picks a free one.
    Must be called on the event loop that will run the server.
    """
    server = aio.server(
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            # Never share a port with another process: a second server must fail to bind.
            ("grpc.so_reuseport", 0),
        ]
    )
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceServicer(service), server)
    try:
        port = server.add_insecure_port(address)
    except RuntimeError as exc:
        raise ConfigError(
            f"cannot listen for gRPC on {address}: {exc}; choose another port with "
            "--grpc-port (0 turns gRPC off)"
        ) from exc
    if port == 0:  # older grpcio reports a failed bind this way
        raise ConfigError(
            f"cannot listen for gRPC on {address}; choose another port with --grpc-port "
            "(0 turns gRPC off)"
        )
    return server, port
