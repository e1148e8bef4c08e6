"""gRPC load: lanes of ``ModelInfer`` calls multiplexed on one HTTP/2 connection.

The ``ModelInferRequest`` is built and serialized once, with the tensors in
``raw_input_contents``. Each call then writes a constant header block and those bytes as one
HTTP/2 stream and reads only the ``grpc-status`` of the answer, so protobuf never runs on the
hot path. A lane keeps one call in flight; the channel multiplexes every lane over one HTTP/2
connection, as gRPC clients do. The client is Shipyard's own (:mod:`shipyard.protocol.http2`):
``grpc.aio`` cost more than twice the CPU per call of the HTTP load generator, which skewed
the comparison of the two protocols on a small machine (see docs/design-notes.md).

Also here: building the request and reading a model's metadata over gRPC (with grpcio).

Needs the ``grpc`` extra (grpcio, protobuf and hpack).
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import urllib.parse
from collections.abc import Sequence
from typing import Any, cast

try:
    import grpc

    from shipyard.protocol import grpc_service_pb2 as pb
    from shipyard.protocol import grpc_service_pb2_grpc as pb_grpc
    from shipyard.protocol import http2
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        f"gRPC load needs the 'grpc' extra ({exc.name} is missing): pip install 'shipyard[grpc]'"
    ) from exc

from shipyard.errors import LoadGeneratorError
from shipyard.loadgen.runner import (
    CONNECT_TIMEOUT_S,
    RECONNECT_PAUSE_S,
    Driver,
    clock,
    connect,
    wait_lost,
)
from shipyard.loadgen.stats import OK
from shipyard.protocol.binary import array_to_raw
from shipyard.protocol.grpc_wire import StatusCode, decode_message_text, frame_message
from shipyard.types import Array, DataType

__all__ = ["GrpcTransport", "encode_request", "fetch_metadata", "parse_address"]

INFER_METHOD = "/inference.GRPCInferenceService/ModelInfer"
#: A call that takes longer than this is counted as DEADLINE_EXCEEDED: sent as grpc-timeout,
#: and enforced here too (checked every second) for servers that ignore it.
CALL_TIMEOUT_S = 60.0
#: The largest answer a call accepts.
MAX_MESSAGE_BYTES = 256 * 1024 * 1024
#: Message size limits well above anything a benchmark sends (gRPC's default is 4 MiB).
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
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
    inputs: Sequence[tuple[str, DataType, Array]],
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
    """One call in flight at a time (one slot), multiplexed with the others on the channel."""

    __slots__ = ("channel", "connection", "driver", "intended_ns", "sent_ns", "stream_id")

    def __init__(self, channel: _Channel, driver: Driver) -> None:
        self.channel = channel
        self.driver = driver
        self.intended_ns = 0
        self.sent_ns = 0
        self.stream_id = 0  # of the call in flight; 0 when idle
        self.connection: _Connection | None = None  # that carries the call in flight

    def send(self, intended_ns: int) -> None:
        self.intended_ns = intended_ns
        self.channel.call(self)

    def report(self, status: str, detail: str) -> None:
        self.stream_id = 0
        self.connection = None
        following = self.driver.completed(self.intended_ns, clock(), status, detail)
        if following is not None:
            self.send(following)
        else:
            self.driver.park(self)

    def close(self) -> None:
        self.channel.cancel(self)


class _Connection(asyncio.Protocol):
    """One HTTP/2 connection of the channel: calls out, answers back to their lanes."""

    def __init__(self, channel: _Channel) -> None:
        self.channel = channel
        self.h2 = http2.ClientConnection(max_body_bytes=MAX_MESSAGE_BYTES + 5)
        self.transport: asyncio.Transport | None = None
        self.lanes: dict[int, _Lane] = {}
        self._flush_scheduled = False
        #: Resolved when the server's first SETTINGS arrive (its stream limit is known then).
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        #: Resolved when the connection is gone.
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.transport.write(self.h2.data_to_send())

    def start(self, lane: _Lane) -> None:
        lane.stream_id = self.h2.request(self.channel.headers, self.channel.body)
        lane.connection = self
        lane.sent_ns = clock()
        self.lanes[lane.stream_id] = lane
        if not self._flush_scheduled:  # calls started in one loop iteration leave together
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self._flush_scheduled = False
        data = self.h2.data_to_send()
        if data and self.transport is not None:
            self.transport.write(data)

    @property
    def full(self) -> bool:
        h2 = self.h2
        return h2.open_streams >= h2.peer_max_streams or h2.goaway_received is not None

    def data_received(self, data: bytes) -> None:
        try:
            responses = self.h2.receive(data)
        except http2.ProtocolError as exc:
            self.flush()
            self._lost(f"HTTP/2 protocol error: {exc.message}")
            return
        if self.h2.settings_received and not self.ready.done():
            self.ready.set_result(None)
        for stream_id in self.h2.oversized:
            lane = self.lanes.pop(stream_id, None)
            self.h2.reset_stream(stream_id, http2.ErrorCode.CANCEL)
            if lane is not None:
                lane.report("RESOURCE_EXHAUSTED", "response over the size limit")
        for response in responses:
            lane = self.lanes.pop(response.stream_id, None)
            if lane is not None:
                status, detail = _outcome(response)
                lane.report(status, detail)
        self.flush()
        last = self.h2.goaway_received
        if last is not None:  # the server is going away: calls it will not answer fail
            for stream_id in [s for s in self.lanes if s > last]:
                self.lanes.pop(stream_id).report("UNAVAILABLE", "the server sent GOAWAY")
            self.channel.retire(self)
        self.channel.start_waiting()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self.lost.done():
            self.lost.set_result(None)
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"{exc or 'closed by the server'}"))
            self.ready.exception()  # connect() may have stopped waiting: do not log it unseen
        self._lost(f"connection lost: {exc or 'closed by the server'}")

    def expire(self, now_ns: int) -> None:
        """Fail the calls older than CALL_TIMEOUT_S (the server ignored their grpc-timeout)."""
        limit_ns = int(CALL_TIMEOUT_S * 1e9)
        for stream_id, lane in list(self.lanes.items()):
            if now_ns - lane.sent_ns > limit_ns:
                del self.lanes[stream_id]
                self.h2.reset_stream(stream_id, http2.ErrorCode.CANCEL)
                lane.report("DEADLINE_EXCEEDED", f"no answer in {CALL_TIMEOUT_S:.0f} s")
        self.flush()

    def _lost(self, detail: str) -> None:
        if self.transport is not None:
            self.transport.close()
        self.channel.retire(self)
        lanes, self.lanes = self.lanes, {}
        for lane in lanes.values():
            if not self.channel.closing:
                lane.report("connection", detail)


def _outcome(response: http2.Response) -> tuple[str, str]:
    """(status, detail) of a finished call: OK, a gRPC status name, or what went wrong."""
    if response.reset is not None:
        return "RST_STREAM", f"the call was reset (HTTP/2 error {response.reset})"
    status = message = None
    for name, value in response.trailers:
        if name == "grpc-status":
            status = value
        elif name == "grpc-message":
            message = value
    if status == "0":
        return OK, ""
    if status is None:
        http_status = next((v for n, v in response.headers if n == ":status"), "?")
        return f"HTTP {http_status}", "the answer carries no grpc-status"
    try:
        name = StatusCode(int(status)).name
    except ValueError:
        name = f"status {status}"
    return name, decode_message_text(message or "")


class _Channel:
    """Calls from every lane over one HTTP/2 connection, reconnecting when it goes away."""

    def __init__(
        self, host: str, port: int, authority: str, payload: bytes, tls: ssl.SSLContext | None
    ) -> None:
        self.host = host
        self.port = port
        self.tls = tls
        self.headers = http2.encode_headers(
            [
                (b":method", b"POST"),
                (b":scheme", b"http" if tls is None else b"https"),
                (b":path", INFER_METHOD.encode()),
                (b":authority", authority.encode()),
                (b"content-type", b"application/grpc"),
                (b"te", b"trailers"),
                (b"grpc-timeout", f"{int(CALL_TIMEOUT_S)}S".encode()),
            ]
        )
        self.body = frame_message(payload)
        self.connection: _Connection | None = None
        self.connections: set[_Connection] = set()  # the current one and retired ones draining
        self.waiting: collections.deque[_Lane] = collections.deque()
        self.connecting: asyncio.Task[None] | None = None
        self.closing = False
        self.connected_ns = 0
        self.watchdog: asyncio.TimerHandle | None = None

    async def connect(self) -> None:
        """Open a connection and start the calls waiting for one."""
        loop = asyncio.get_running_loop()
        connection = _Connection(self)
        self.connected_ns = clock()
        await connect(connection, self.host, self.port, self.tls)
        try:  # calls wait for the server's SETTINGS, so they respect its stream limit
            await asyncio.wait_for(asyncio.shield(connection.ready), timeout=CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError) as exc:
            if connection.transport is not None:
                connection.transport.close()
            raise LoadGeneratorError(
                f"no HTTP/2 SETTINGS from {self.host}:{self.port}: {exc or 'timed out'}"
            ) from exc
        self.connection = connection
        self.connections.add(connection)
        if self.watchdog is None:
            self.watchdog = loop.call_later(1.0, self._check_deadlines)
        self.start_waiting()

    def _check_deadlines(self) -> None:
        now_ns = clock()
        for connection in list(self.connections):
            connection.expire(now_ns)
        self.watchdog = None
        if not self.closing:
            self.watchdog = asyncio.get_running_loop().call_later(1.0, self._check_deadlines)

    def call(self, lane: _Lane) -> None:
        connection = self.connection
        if connection is None or connection.full:
            self.waiting.append(lane)
            if connection is None and self.connecting is None and not self.closing:
                self.connecting = asyncio.get_running_loop().create_task(self._reconnect())
            return
        connection.start(lane)

    def start_waiting(self) -> None:
        connection = self.connection
        while self.waiting and connection is not None and not connection.full:
            connection.start(self.waiting.popleft())

    def retire(self, connection: _Connection) -> None:
        """``connection`` takes no new calls (it failed or the server is going away)."""
        if connection.transport is None:
            self.connections.discard(connection)
        if self.connection is connection:
            self.connection = None
            if self.waiting and self.connecting is None and not self.closing:
                self.connecting = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        # A server that accepts and then drops every connection is not hammered either.
        pause_s = RECONNECT_PAUSE_S - (clock() - self.connected_ns) / 1e9
        if pause_s > 0:
            await asyncio.sleep(pause_s)
        try:
            await self.connect()
        except LoadGeneratorError as exc:
            await asyncio.sleep(RECONNECT_PAUSE_S)
            self.connecting = None
            waiting, self.waiting = self.waiting, collections.deque()
            for lane in waiting:
                lane.report("connection", exc.message)
            return
        self.connecting = None

    def cancel(self, lane: _Lane) -> None:
        """Cancel the lane's call in flight, if any (RST_STREAM CANCEL)."""
        if lane in self.waiting:
            self.waiting.remove(lane)
        connection = lane.connection  # not the channel's: that may be a newer connection
        if lane.stream_id and connection is not None:
            connection.lanes.pop(lane.stream_id, None)
            connection.h2.reset_stream(lane.stream_id, http2.ErrorCode.CANCEL)
            connection.flush()
        lane.stream_id = 0
        lane.connection = None

    def close(self) -> list[_Connection]:
        """Close every connection (GOAWAY first); return them, to wait until they are gone."""
        self.closing = True
        if self.connecting is not None:
            self.connecting.cancel()
        if self.watchdog is not None:
            self.watchdog.cancel()
            self.watchdog = None
        closed = list(self.connections)
        for connection in closed:
            if connection.transport is not None:
                connection.h2.goaway()
                connection.flush()
                connection.transport.close()
        self.connections.clear()
        return closed


class GrpcTransport:
    """Lanes multiplexed on one HTTP/2 connection to ``address``, all sending ``payload``.

    Shipyard's own minimal gRPC client (frames from :mod:`shipyard.protocol.http2`): per call
    it writes a constant header block and the pre-serialized message and reads the status from
    the trailers, so the load generator stays far from being the bottleneck it measures, as
    the HTTP one does. Calls started in one loop iteration leave in one write. ``tls``, when
    given, is the client context of a TLS connection (it must offer ALPN ``h2``).
    """

    def __init__(self, address: str, payload: bytes, tls: ssl.SSLContext | None = None) -> None:
        self.address = address
        host, _, port = address.rpartition(":")
        self.channel = _Channel(host.strip("[]"), int(port), address, payload, tls)

    async def open(self, count: int, driver: Driver) -> Sequence[_Lane]:
        await self.channel.connect()
        return [_Lane(self.channel, driver) for _ in range(count)]

    async def aclose(self) -> None:
        closed = self.channel.close()
        await wait_lost([(c.lost, c.transport) for c in closed])
