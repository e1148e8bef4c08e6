"""The load generator's own gRPC client against grpcio's server (the C core, not Shipyard's).

``shipyard bench --protocol grpc`` must measure any Open Inference Protocol server, such as
Triton, whose HTTP/2 stack indexes response headers in its HPACK table, answers errors as
Trailers-Only and may send GOAWAY. A ``grpc.aio`` server on 127.0.0.1 stands in for one.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import grpc
import numpy as np
import pytest
from grpc import aio

from shipyard.loadgen import grpc as grpc_load
from shipyard.loadgen.grpc import GrpcTransport, encode_request
from shipyard.loadgen.runner import run
from shipyard.protocol import grpc_service_pb2 as pb
from shipyard.protocol.http2 import ConnectionLimits, ServerConnection
from shipyard.types import DataType


class Reference:
    """A grpc.aio server answering ModelInfer: echo for model "echo", NOT_FOUND otherwise."""

    def __init__(self) -> None:
        self.calls = 0
        self.bodies: set[bytes] = set()
        self.port = 0
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True)

    async def _infer(self, request: bytes, context: Any) -> bytes:
        self.calls += 1
        self.bodies.add(request)
        message = pb.ModelInferRequest.FromString(request)
        if message.model_name != "echo":
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no model {message.model_name!r} hér")
        response = pb.ModelInferResponse(model_name="echo", id=str(self.calls))
        response.raw_output_contents.extend(message.raw_input_contents)
        return bytes(response.SerializeToString())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = aio.server()
        handler = grpc.method_handlers_generic_handler(
            "inference.GRPCInferenceService",
            {"ModelInfer": grpc.unary_unary_rpc_method_handler(self._infer)},
        )
        server.add_generic_rpc_handlers((handler,))
        self.port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        self._ready.set()
        await self._stop.wait()
        await server.stop(1)

    def __enter__(self) -> Reference:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


@pytest.fixture(scope="module")
def reference() -> Iterator[Reference]:
    with Reference() as server:
        yield server


def payload(model: str) -> bytes:
    x = np.arange(784, dtype=np.float32).reshape(1, 1, 28, 28)
    return encode_request(model, None, [("input", DataType.FP32, x)])


def test_closed_loop_against_grpcio_server(reference: Reference) -> None:
    """The closed loop drives grpcio's own server without errors: every one of the 16 clients
    completes calls (how many depends on the machine), and every call arrives intact."""
    before = reference.calls
    reference.bodies.clear()
    transport = GrpcTransport(f"127.0.0.1:{reference.port}", payload("echo"))
    summary = run(transport, 16, 0.2, 1.0)
    assert summary.errors == {}
    assert summary.requests >= 16
    assert summary.p50_ms is not None
    # Every call reached the server intact (one distinct body: the prepared request).
    assert reference.calls - before >= summary.requests
    assert reference.bodies == {payload("echo")}


def test_errors_are_counted_by_status_name(reference: Reference) -> None:
    """Failed calls are counted under their gRPC status name, with the first message kept."""
    transport = GrpcTransport(f"127.0.0.1:{reference.port}", payload("missing"))
    summary = run(transport, 4, 0.1, 0.5)
    assert summary.requests == 0
    assert set(summary.errors) == {"NOT_FOUND"}
    assert summary.errors["NOT_FOUND"] >= 4  # each of the 4 clients failed at least once
    assert "no model 'missing' hér" in summary.first_error


def test_open_loop_against_grpcio_server(reference: Reference) -> None:
    """At a fixed rate of 200 calls/s for 1 s, about 200 calls are sent, none fails."""
    transport = GrpcTransport(f"127.0.0.1:{reference.port}", payload("echo"))
    summary = run(transport, 8, 0.2, 1.0, rate=200)
    assert summary.errors == {}
    assert 150 <= summary.requests <= 250


class Misbehaving(asyncio.Protocol):
    """An HTTP/2 server end (Shipyard's) that never answers, or closes on the first call."""

    connections = 0

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.h2 = ServerConnection(ConnectionLimits())
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        Misbehaving.connections += 1
        self.transport = transport
        transport.write(self.h2.data_to_send())

    def data_received(self, data: bytes) -> None:
        self.h2.receive(data)
        requests = self.h2.take_ready()
        self.transport.write(self.h2.data_to_send())
        if requests and self.mode == "close":
            self.transport.close()


@contextlib.contextmanager
def misbehaving(mode: str) -> Iterator[int]:
    """A Misbehaving server on 127.0.0.1 in a thread; yields its port."""
    ready = threading.Event()
    holder: dict[str, Any] = {}

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: Misbehaving(mode), "127.0.0.1", 0)
        holder["port"] = server.sockets[0].getsockname()[1]
        holder["stop"] = stop = asyncio.Event()
        holder["loop"] = loop
        ready.set()
        await stop.wait()
        server.close()

    thread = threading.Thread(target=lambda: asyncio.run(serve()), daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield int(holder["port"])
    finally:
        holder["loop"].call_soon_threadsafe(holder["stop"].set)
        thread.join(10)


def test_calls_without_an_answer_end_as_deadline_exceeded(monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that ignores grpc-timeout cannot hold a lane: the client's own timer fails it."""
    monkeypatch.setattr(grpc_load, "CALL_TIMEOUT_S", 0.5)
    with misbehaving("silent") as port:
        summary = run(GrpcTransport(f"127.0.0.1:{port}", payload("echo")), 2, 0.0, 2.5)
    assert summary.requests == 0
    assert set(summary.errors) == {"DEADLINE_EXCEEDED"}
    assert summary.errors["DEADLINE_EXCEEDED"] >= 2
    assert "no answer in" in summary.first_error


def test_reconnects_are_paced() -> None:
    """A server that drops every connection at the first call is not hammered with reconnects."""
    Misbehaving.connections = 0
    with misbehaving("close") as port:
        summary = run(GrpcTransport(f"127.0.0.1:{port}", payload("echo")), 4, 0.0, 1.0)
    assert summary.requests == 0
    assert set(summary.errors) == {"connection"}
    # One reconnect per RECONNECT_PAUSE_S at most (about 20 in the second), with slack.
    assert Misbehaving.connections <= 1.0 / grpc_load.RECONNECT_PAUSE_S * 2 + 5
