"""The two sides of every adversarial test: a hostile client on a raw socket, a legitimate one.

:class:`Attacker` writes HTTP/2 frames by hand (no library would send them) and reads the
server's frames with ``hyperframe``, an independent parser. :class:`LegitimateTraffic` keeps
unmodified ``tritonclient.grpc`` calls going in a thread while an attack runs, and fails the
test if any of them failed. :func:`model_counts` reads a model's statistics, so a test can
prove that the model executed nothing an attacker cancelled.
"""

from __future__ import annotations

import collections
import itertools
import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient
from hyperframe.frame import Frame, GoAwayFrame, PingFrame

from shipyard.protocol import grpc_service_pb2 as pb
from shipyard.protocol.grpc_wire import frame_message
from shipyard.protocol.http2 import PREFACE, encode_headers, frame
from shipyard.protocol.http2 import frames as f
from shipyard.testing import RunningServer

#: How long any single wait of a test may take before it fails (never a sleep).
TIMEOUT_S = 20.0
INFER = "/inference.GRPCInferenceService/ModelInfer"


def request_headers(address: str, extra: tuple[tuple[bytes, bytes], ...] = ()) -> bytes:
    """A ModelInfer call's header block: literals never indexed, so no HPACK table state."""
    return encode_headers(
        [
            (b":method", b"POST"),
            (b":scheme", b"http"),
            (b":path", INFER.encode()),
            (b":authority", address.encode()),
            (b"content-type", b"application/grpc"),
            (b"te", b"trailers"),
            *extra,
        ]
    )


def infer_message(model: str, width: int = 4) -> bytes:
    """A framed ModelInferRequest of one FP32 row of ``width`` values."""
    request = pb.ModelInferRequest(model_name=model)
    tensor = request.inputs.add()
    tensor.name, tensor.datatype = "INPUT0", "FP32"
    tensor.shape.extend([1, width])
    request.raw_input_contents.append(np.arange(width, dtype=np.float32).tobytes())
    return frame_message(request.SerializeToString())


class Attacker:
    """A client on a raw socket that sends frames by hand and reads the server's frames."""

    def __init__(self, server: RunningServer, handshake: bool = True) -> None:
        host, port = server.grpc_address.rsplit(":", 1)
        self.address = server.grpc_address
        self.sock = socket.create_connection((host, int(port)), timeout=TIMEOUT_S)
        self.buffer = bytearray()
        self.frames: list[Frame] = []
        self.closed = False
        self._pings = itertools.count(1)
        self._unread: collections.deque[Frame] = collections.deque()
        if handshake:
            self.send(PREFACE + frame(f.SETTINGS, 0, 0))

    def __enter__(self) -> Attacker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def send(self, data: bytes) -> bool:
        """Write ``data``; False once the server has closed the connection."""
        try:
            self.sock.sendall(data)
        except OSError:  # reset or broken pipe: the server closed it
            self.closed = True
        return not self.closed

    def request(self, stream_id: int, model: str, end: bool = True) -> bytes:
        """HEADERS and DATA of one ModelInfer call (END_STREAM on the DATA when ``end``)."""
        headers = frame(f.HEADERS, f.FLAG_END_HEADERS, stream_id, request_headers(self.address))
        flags = f.FLAG_END_STREAM if end else 0
        return headers + frame(f.DATA, flags, stream_id, infer_message(model))

    def read(self, until: Callable[[Frame], bool], timeout_s: float = TIMEOUT_S) -> Frame | None:
        """Read frames until one satisfies ``until`` (returned) or the server closes (None)."""
        deadline = time.monotonic() + timeout_s
        while True:
            while self._unread:
                parsed = self._unread.popleft()
                if until(parsed):
                    return parsed
            if self.closed:
                return None
            remaining = deadline - time.monotonic()
            assert remaining > 0, "the server neither answered nor closed the connection"
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                data = b""
            if not data:
                self.closed = True
            self.buffer += data
            self._parse()

    def _parse(self) -> None:
        """Move the complete frames of the buffer to :attr:`frames` and the unread queue."""
        while len(self.buffer) >= 9:
            parsed, length = Frame.parse_frame_header(memoryview(self.buffer[:9]))
            if len(self.buffer) < 9 + length:
                return
            parsed.parse_body(memoryview(self.buffer[9 : 9 + length]))
            del self.buffer[: 9 + length]
            self.frames.append(parsed)
            self._unread.append(parsed)

    def goaway(self, timeout_s: float = TIMEOUT_S) -> GoAwayFrame:
        """Wait for the server's GOAWAY (perhaps read already) and for the connection to close."""
        seen = [fr for fr in self.frames if isinstance(fr, GoAwayFrame)]
        found = seen[0] if seen else self.read(lambda fr: isinstance(fr, GoAwayFrame), timeout_s)
        assert isinstance(found, GoAwayFrame), "the server closed without GOAWAY"
        assert self.read(lambda fr: False, timeout_s) is None  # then it closes
        return found

    def ping(self) -> bool:
        """A PING round trip: True once acknowledged (everything sent before is processed)."""
        data = next(self._pings).to_bytes(8, "big")
        if not self.send(frame(f.PING, 0, 0, data)):
            return False
        acked = self.read(
            lambda fr: isinstance(fr, PingFrame) and "ACK" in fr.flags and fr.opaque_data == data
        )
        return acked is not None

    def wait_closed(self, timeout_s: float) -> float:
        """Seconds until the server closes the connection (fails after ``timeout_s``)."""
        started = time.monotonic()
        assert self.read(lambda fr: False, timeout_s) is None
        return time.monotonic() - started


def goaway_code(goaway: GoAwayFrame) -> int:
    """The error code of a GOAWAY frame."""
    return int(goaway.error_code)


def model_counts(server: RunningServer, model: str) -> tuple[int, int]:
    """(inference_count, execution_count) of ``model`` from its statistics."""
    client = grpcclient.InferenceServerClient(server.grpc_address)
    stats: Any = client.get_inference_statistics(model, as_json=True)
    (entry,) = stats["model_stats"]
    return int(entry.get("inference_count", 0)), int(entry.get("execution_count", 0))


class LegitimateTraffic:
    """Unmodified tritonclient.grpc calls in a thread while an attack runs; all must succeed."""

    def __init__(self, server: RunningServer, model: str = "simple") -> None:
        self.server = server
        self.model = model
        self.ok = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._first = threading.Event()
        self._thread = threading.Thread(target=self._run, name="legitimate-client", daemon=True)

    def call(self, client: grpcclient.InferenceServerClient) -> None:
        """One ``simple`` (add/sub) call, its answer checked."""
        ones = np.ones((1, 16), np.float32)
        inputs = []
        for name in ("INPUT0", "INPUT1"):
            tensor = grpcclient.InferInput(name, [1, 16], "FP32")
            tensor.set_data_from_numpy(ones)
            inputs.append(tensor)
        result = client.infer(self.model, inputs, client_timeout=TIMEOUT_S)
        assert np.array_equal(result.as_numpy("OUTPUT0"), ones * 2)

    def _run(self) -> None:
        client = grpcclient.InferenceServerClient(self.server.grpc_address)
        while not self._stop.is_set():
            try:
                self.call(client)
                self.ok += 1
            except Exception as exc:  # recorded: the test fails on any
                self.errors.append(f"{type(exc).__name__}: {exc}")
            self._first.set()

    def __enter__(self) -> LegitimateTraffic:
        self._thread.start()
        assert self._first.wait(TIMEOUT_S), "the legitimate client got no answer"
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(TIMEOUT_S)
        if kind is not None:
            return
        assert not self.errors, f"the legitimate client failed: {self.errors[:3]}"
        assert self.ok >= 1
        self.call(grpcclient.InferenceServerClient(self.server.grpc_address))  # and after
