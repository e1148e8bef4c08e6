"""A black-box run of malformed gRPC calls against a live server: no server fault, no crash,
and correct answers afterwards.

Calls come from a seeded generator (the seed is in every failure message, so a failure
replays) and go out on an HTTP/2 connection of the ``h2`` package, 20 at a time: mutated
``ModelInferRequest`` messages, random bytes, broken gRPC framing, other RPCs with junk
arguments, and headers a gRPC client would not send. A fault is an HTTP status of 500 or more,
``INTERNAL``/``UNKNOWN``/``DATA_LOSS`` with HTTP 200 (what a handler's crash becomes), an
"internal server error" message, or a GOAWAY other than NO_ERROR or ENHANCE_YOUR_CALM (past
the reset budget: a request whose headers HTTP/2 forbids is reset, and resets are budgeted).
``SHIPYARD_BLACKBOX_REQUESTS`` sets how many calls (10,000 by default).
"""

from __future__ import annotations

import os
import random
import socket
import string
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import h2.config
import h2.connection
import h2.events
import pytest
import tritonclient.grpc as grpcclient

from shipyard.protocol import grpc_service_pb2 as pb
from shipyard.protocol.grpc_wire import frame_message
from shipyard.testing import (
    RunningServer,
    add_sub_model,
    identity_model,
    running_server,
    write_model,
)
from shipyard.types import DataType
from tests.adversarial.clients import LegitimateTraffic

CALLS = int(os.environ.get("SHIPYARD_BLACKBOX_REQUESTS", "10000"))
SEED = 20261205
AT_ONCE = 20
TIMEOUT_S = 20.0
SERVICE = "/inference.GRPCInferenceService/"
#: Statuses a handler's crash would produce (with HTTP 200).
FAULTS = {"2", "13", "15"}
DATATYPES = ["FP32", "FP16", "BF16", "INT8", "UINT64", "BOOL", "BYTES", "fp32", "", "X"]
NAMES = ["simple", "strings", "nope", "", "a" * 300, "..", "x/y", "ünï", "simple\x00"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """``simple`` for inference, ``strings`` (BYTES) and ``spare`` for repository calls."""
    repo = tmp_path_factory.mktemp("grpc-blackbox")
    write_model(repo, "simple", add_sub_model())
    write_model(repo, "strings", identity_model(DataType.BYTES))
    write_model(repo, "spare", identity_model(DataType.FP32))
    with running_server(repo, grpc_max_message_bytes=1 << 20) as running:
        yield running


class Generator:
    """Malformed gRPC calls from one seed: (path, extra or replaced headers, body)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def text(self, size: int = 8) -> str:
        """A short random string, sometimes with odd characters."""
        alphabet = string.ascii_letters + "_-./ é\x00"
        return "".join(self.rng.choices(alphabet, k=self.rng.randrange(size)))

    def infer_message(self) -> bytes:
        """A ModelInferRequest for ``simple``, mutated a few times."""
        rng = self.rng
        message = pb.ModelInferRequest(model_name="simple")
        for name in ("INPUT0", "INPUT1"):
            tensor = message.inputs.add(name=name, datatype="FP32", shape=[1, 16])
            message.raw_input_contents.append(bytes(64))
        for _ in range(rng.randrange(1, 4)):
            tensor = rng.choice(message.inputs) if message.inputs else message.inputs.add()
            choice = rng.randrange(12)
            if choice == 0:
                del tensor.shape[:]
                tensor.shape.extend(rng.randrange(-3, 6) for _ in range(rng.randrange(5)))
            elif choice == 1:
                del tensor.shape[:]
                tensor.shape.extend([1] * rng.randrange(60, 70))
            elif choice == 2:
                tensor.shape.append(rng.choice([2**62, -(2**63), 2**31]))
            elif choice == 3:
                tensor.datatype = rng.choice(DATATYPES)
            elif choice == 4:
                contents = list(message.raw_input_contents) or [b""]
                contents[rng.randrange(len(contents))] = rng.randbytes(rng.randrange(100))
                del message.raw_input_contents[:]
                message.raw_input_contents.extend(contents)
            elif choice == 5:
                del message.raw_input_contents[:]
                tensor.contents.fp32_contents.extend([1.5] * rng.randrange(20))
                tensor.contents.int_contents.extend([1] * rng.randrange(3))
            elif choice == 6:
                tensor.name = rng.choice(["INPUT9", "", "INPUT0", self.text()])
            elif choice == 7:
                message.model_name = rng.choice(NAMES)
                message.model_version = rng.choice(["", "1", "0", "01", "x", "9" * 30])
            elif choice == 8:
                parameter = message.parameters[rng.choice(["timeout", "priority", "x", ""])]
                kind = rng.randrange(3)
                if kind == 0:
                    parameter.int64_param = rng.choice([-1, 0, 2**62])  # never a small timeout
                elif kind == 1:
                    parameter.string_param = self.text()
                else:
                    parameter.bool_param = True
            elif choice == 9:
                message.outputs.add(name=rng.choice(["OUTPUT0", "OUTPUT9", "", self.text()]))
            elif choice == 10:
                message.raw_input_contents.append(b"extra")
            else:
                output = message.outputs.add(name="OUTPUT0")
                output.parameters["classification"].int64_param = rng.randrange(-2, 40)
        return message.SerializeToString()

    def body(self, message: bytes) -> bytes:
        """``message`` framed, sometimes badly."""
        rng = self.rng
        choice = rng.randrange(20)
        if choice == 0:
            return b""
        if choice == 1:
            return b"\x01" + len(message).to_bytes(4, "big") + message  # "compressed"
        if choice == 2:
            return b"\x00" + (len(message) + rng.randrange(1, 9)).to_bytes(4, "big") + message
        if choice == 3:
            return frame_message(message) + frame_message(message)
        if choice == 4:
            return frame_message(message)[: rng.randrange(1, 5)]
        return frame_message(message)

    def call(self) -> tuple[str, list[tuple[str, str]], bytes]:
        """One call: its path, header changes and body."""
        rng = self.rng
        choice = rng.randrange(10)
        if choice < 6:
            path, message = SERVICE + "ModelInfer", self.infer_message()
        elif choice == 6:
            message = rng.randbytes(rng.randrange(200))
            path = SERVICE + rng.choice(["ModelInfer", "ModelMetadata", "RepositoryIndex"])
        elif choice == 7:
            rpc = rng.choice(["ModelMetadata", "ModelReady", "ModelConfig", "ModelStatistics"])
            request: Any = getattr(pb, f"{rpc}Request")(
                name=rng.choice(NAMES), version=rng.choice(["", "1", "0", "x"])
            )
            path, message = SERVICE + rpc, request.SerializeToString()
        elif choice == 8:
            rpc = rng.choice(["RepositoryModelLoad", "RepositoryModelUnload", "RepositoryIndex"])
            if rpc == "RepositoryIndex":
                request = pb.RepositoryIndexRequest(repository_name=rng.choice(["", "x"]))
            else:
                # Never simple or strings: unloading them would make later answers correct 503s.
                name = rng.choice([n for n in NAMES if n not in ("simple", "strings")] + ["spare"])
                request = getattr(pb, f"{rpc}Request")(model_name=name)
                if rng.randrange(2):
                    request.parameters[rng.choice(["config", "file:1/m", "x"])].string_param = "{}"
            path, message = SERVICE + rpc, request.SerializeToString()
        else:
            path = rng.choice(
                [SERVICE + "Nope", "/grpc.health.v1.Health/Check", "/", "/x/y", SERVICE]
            )
            message = rng.randbytes(rng.randrange(20))
        headers: list[tuple[str, str]] = []
        if rng.randrange(5) == 0:
            headers.append(
                rng.choice(
                    [
                        ("content-type", rng.choice(["application/json", "application/grpc+json"])),
                        ("te", rng.choice(["", "gzip"])),
                        ("grpc-timeout", rng.choice(["", "1X", "-1S", "9" * 20 + "S", "100m"])),
                        ("grpc-encoding", "gzip"),
                        (":method", rng.choice(["GET", "PUT"])),
                        ("x-junk", self.text(30)),
                        ("authorization", "Bearer " + self.text()),
                    ]
                )
            )
        return path, headers, self.body(message)


@dataclass
class Outcome:
    """What came back on one stream."""

    status: str = ""
    grpc_status: str = ""
    message: str = ""
    reset: bool = False
    ended: bool = False
    what: str = ""
    headers: dict[str, str] = field(default_factory=dict)


class Client:
    """An h2 client connection that sends batches of calls and collects their outcomes."""

    def __init__(self, address: str) -> None:
        host, port = address.rsplit(":", 1)
        self.address = address
        self.sock = socket.create_connection((host, int(port)), timeout=TIMEOUT_S)
        config = h2.config.H2Configuration(
            client_side=True, validate_outbound_headers=False, normalize_outbound_headers=False
        )
        self.h2 = h2.connection.H2Connection(config)
        self.h2.initiate_connection()
        self.h2.increment_flow_control_window(1 << 24)
        self.sock.sendall(self.h2.data_to_send())
        self.closed: int | None = None  # the GOAWAY error code, once the server ends it

    def send(self, path: str, changes: list[tuple[str, str]], body: bytes) -> int:
        """Start one call; return its stream id."""
        headers = {
            ":method": "POST",
            ":scheme": "http",
            ":path": path,
            ":authority": self.address,
            "content-type": "application/grpc",
            "te": "trailers",
        }
        headers.update(changes)
        stream_id = self.h2.get_next_available_stream_id()
        self.h2.send_headers(stream_id, list(headers.items()), end_stream=not body)
        if body:
            self.h2.send_data(stream_id, body, end_stream=True)
        return stream_id

    def wait(self, outcomes: dict[int, Outcome]) -> None:
        """Read until every stream of ``outcomes`` ended, was reset, or the connection closed."""
        self.sock.sendall(self.h2.data_to_send())
        deadline = time.monotonic() + TIMEOUT_S
        while self.closed is None and not all(o.ended or o.reset for o in outcomes.values()):
            assert time.monotonic() < deadline, "the server neither answered nor closed"
            try:
                data = self.sock.recv(1 << 16)
            except (ConnectionResetError, BrokenPipeError):
                data = b""
            if not data:
                self.closed = 0
                break
            for event in self.h2.receive_data(data):
                self._event(event, outcomes)
            self.sock.sendall(self.h2.data_to_send())

    def _event(self, event: h2.events.Event, outcomes: dict[int, Outcome]) -> None:
        stream_id = getattr(event, "stream_id", None)
        outcome = outcomes.get(stream_id) if stream_id is not None else None
        if isinstance(event, h2.events.ResponseReceived | h2.events.TrailersReceived):
            assert outcome is not None
            for name, value in event.headers:
                key = name.decode() if isinstance(name, bytes) else name
                text = value.decode("latin-1") if isinstance(value, bytes) else value
                outcome.headers[key] = text
            outcome.status = outcome.headers.get(":status", outcome.status)
            outcome.grpc_status = outcome.headers.get("grpc-status", "")
            outcome.message = outcome.headers.get("grpc-message", "")
        elif isinstance(event, h2.events.DataReceived):
            self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.StreamEnded) and outcome is not None:
            outcome.ended = True
        elif isinstance(event, h2.events.StreamReset) and outcome is not None:
            outcome.reset = True
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.closed = int(event.error_code)

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()


def fault(outcome: Outcome) -> str | None:
    """Why ``outcome`` shows a server fault, or None."""
    if outcome.status.startswith("5"):
        return f"HTTP {outcome.status}"
    if outcome.status == "200" and outcome.grpc_status in FAULTS:
        return f"grpc-status {outcome.grpc_status}"
    if "internal server error" in outcome.message:
        return "internal server error"
    return None


def test_malformed_grpc_calls_never_fault(server: RunningServer) -> None:
    """CALLS malformed gRPC calls: no server fault, the legitimate client is served
    throughout, and the server answers correctly afterwards."""
    generator = Generator(SEED)
    seen: Counter[str] = Counter()
    failures: list[str] = []
    sent = 0
    started = time.monotonic()
    with LegitimateTraffic(server):
        client = Client(server.grpc_address)
        try:
            while sent < CALLS:
                if client.closed is not None:
                    # NO_ERROR, or ENHANCE_YOUR_CALM past the reset budget (a malformed request
                    # is reset, and resets are budgeted).
                    assert client.closed in (0, 11), f"GOAWAY error code {client.closed}"
                    seen[f"goaway {client.closed}"] += 1
                    client.close()
                    client = Client(server.grpc_address)
                outcomes: dict[int, Outcome] = {}
                for _ in range(min(AT_ONCE, CALLS - sent)):
                    path, headers, body = generator.call()
                    sent += 1
                    what = f"{path} {headers} {body[:60]!r}"
                    outcomes[client.send(path, headers, body)] = Outcome(what=what)
                client.wait(outcomes)
                for stream_id, outcome in outcomes.items():
                    seen[outcome.grpc_status or ("reset" if outcome.reset else "none")] += 1
                    why = fault(outcome)
                    if why is not None:
                        failures.append(f"stream {stream_id} (seed {SEED}): {why}: {outcome}")
        finally:
            client.close()
    elapsed = time.monotonic() - started
    assert not failures, failures[:5]
    assert seen["0"] > 0  # some calls were good enough to run
    legit = grpcclient.InferenceServerClient(server.grpc_address)
    try:
        assert legit.is_server_ready()
        assert legit.is_model_ready("simple")
    finally:
        legit.close()
    print(f"{CALLS} malformed gRPC calls in {elapsed:.1f} s: {dict(seen)}")
