"""gRPC load: lanes of ``ModelInfer`` calls on a shared ``grpc.aio`` channel.

The ``ModelInferRequest`` is built and serialized once, with the tensors in
``raw_input_contents``. Each call then sends those bytes through a generic unary method with no
serializer and takes the response as bytes with no deserializer, so per request Python only
awaits the call and records the outcome: protobuf never runs on the hot path. A lane is one
coroutine that keeps one call in flight; the channel multiplexes every lane over one HTTP/2
connection, as gRPC clients do.

Also here: building the request and reading a model's metadata over gRPC.

Needs the ``grpc`` extra (grpcio and protobuf).
"""

from __future__ import annotations

import asyncio
import urllib.parse
from collections.abc import Sequence
from typing import Any

import numpy.typing as npt

try:
    import grpc
    from grpc import aio

    from shipyard.protocol import grpc_service_pb2 as pb
    from shipyard.protocol import grpc_service_pb2_grpc as pb_grpc
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        f"gRPC load needs the 'grpc' extra ({exc.name} is missing): pip install 'shipyard[grpc]'"
    ) from exc

from shipyard.errors import LoadGeneratorError
from shipyard.loadgen.runner import Driver, clock
from shipyard.loadgen.stats import OK
from shipyard.protocol.binary import array_to_raw
from shipyard.types import DataType

__all__ = ["GrpcTransport", "encode_request", "fetch_metadata", "parse_address"]

INFER_METHOD = "/inference.GRPCInferenceService/ModelInfer"
CONNECT_TIMEOUT_S = 10.0
#: A call that takes longer than this is counted as DEADLINE_EXCEEDED.
CALL_TIMEOUT_S = 60.0
#: Message size limits well above anything a benchmark sends (gRPC's default is 4 MiB).
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 256 * 1024 * 1024),
    ("grpc.max_send_message_length", 256 * 1024 * 1024),
]


def parse_address(url: str) -> str:
    """``host:port`` from ``grpc://host:port``, ``http://host:port`` or ``host:port``."""
    parsed = urllib.parse.urlsplit(url if "://" in url else f"grpc://{url}")
    if parsed.scheme not in ("grpc", "http"):
        raise LoadGeneratorError(f"{url}: gRPC takes grpc://HOST:PORT or HOST:PORT (no TLS)")
    try:
        port = parsed.port
    except ValueError as exc:
        raise LoadGeneratorError(f"{url}: bad port ({exc})") from exc
    if not parsed.hostname or port is None:
        raise LoadGeneratorError(f"{url}: gRPC needs a host and a port, e.g. 127.0.0.1:8001")
    host = f"[{parsed.hostname}]" if ":" in parsed.hostname else parsed.hostname
    return f"{host}:{port}"


def fetch_metadata(address: str, model: str, version: str | None) -> dict[str, Any]:
    """The ``ModelMetadata`` RPC, as the HTTP metadata dictionary (inputs, outputs...)."""
    with grpc.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        request = pb.ModelMetadataRequest(name=model, version=version or "")
        try:  # not wait_for_ready: a refused connection fails at once with UNAVAILABLE
            response = stub.ModelMetadata(request, timeout=CONNECT_TIMEOUT_S)
        except grpc.RpcError as exc:
            code, details = exc.code(), exc.details()
            unreachable = code is grpc.StatusCode.DEADLINE_EXCEEDED or (
                code is grpc.StatusCode.UNAVAILABLE and "connect" in (details or "").lower()
            )
            if unreachable:
                raise LoadGeneratorError(f"cannot reach grpc://{address}: {details}") from exc
            if code is grpc.StatusCode.NOT_FOUND:
                what = f"model {model!r}" + (f" version {version}" if version else "")
                raise LoadGeneratorError(
                    f"{what} not found at grpc://{address}: {details}"
                ) from exc
            raise LoadGeneratorError(
                f"model metadata from grpc://{address}: {code.name}: {details}"
            ) from exc

    def tensors(specs: Any) -> list[dict[str, Any]]:
        return [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in specs]

    return {
        "name": response.name,
        "versions": list(response.versions),
        "platform": response.platform,
        "inputs": tensors(response.inputs),
        "outputs": tensors(response.outputs),
    }


def encode_request(
    model: str,
    version: str | None,
    inputs: Sequence[tuple[str, DataType, npt.NDArray[Any]]],
) -> bytes:
    """A serialized ``ModelInferRequest`` with the tensors in ``raw_input_contents``."""
    request = pb.ModelInferRequest(model_name=model, model_version=version or "")
    for name, datatype, array in inputs:
        tensor = request.inputs.add()
        tensor.name, tensor.datatype = name, datatype.value
        tensor.shape.extend(array.shape)
        request.raw_input_contents.append(array_to_raw(datatype, array))
    payload: bytes = request.SerializeToString()
    return payload


class _Lane:
    """One call in flight at a time on the shared channel (one slot)."""

    def __init__(self, call: Any, payload: bytes, driver: Driver) -> None:
        self.call = call
        self.payload = payload
        self.driver = driver
        self.task: asyncio.Task[None] | None = None

    def send(self, intended_ns: int) -> None:
        self.task = asyncio.get_running_loop().create_task(self._loop(intended_ns))

    async def _loop(self, intended_ns: int | None) -> None:
        call, payload, driver = self.call, self.payload, self.driver
        while intended_ns is not None:
            try:
                await call(payload, timeout=CALL_TIMEOUT_S)
            except grpc.aio.AioRpcError as exc:
                status, detail = exc.code().name, exc.details() or ""
            else:
                status, detail = OK, ""
            intended_ns = driver.completed(intended_ns, clock(), status, detail)
        driver.park(self)

    def close(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()


class GrpcTransport:
    """Lanes on one ``grpc.aio`` channel to ``address``, all sending ``payload``."""

    def __init__(self, address: str, payload: bytes) -> None:
        self.address = address
        self.payload = payload
        self.channel: aio.Channel | None = None

    async def open(self, count: int, driver: Driver) -> Sequence[_Lane]:
        channel = aio.insecure_channel(self.address, options=CHANNEL_OPTIONS)
        self.channel = channel
        try:
            await asyncio.wait_for(channel.channel_ready(), timeout=CONNECT_TIMEOUT_S)
        except TimeoutError as exc:
            await self.aclose()
            raise LoadGeneratorError(
                f"cannot reach grpc://{self.address} within {CONNECT_TIMEOUT_S:.0f} s"
            ) from exc
        # No serializer and no deserializer: bytes go out and come back untouched.
        call = channel.unary_unary(INFER_METHOD)
        return [_Lane(call, self.payload, driver) for _ in range(count)]

    async def aclose(self) -> None:
        if self.channel is not None:
            await self.channel.close()
            self.channel = None
