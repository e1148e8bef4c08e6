"""gRPC on the wire: what reaches the gRPC port that no gRPC client library would send.

An ``h2`` client on a plain socket (and raw bytes) talks to a real server, to check the
transport's answers to HTTP/1.1, wrong content types, unknown methods, malformed and
compressed messages, and that the server keeps serving afterwards.
"""

from __future__ import annotations

import gzip
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.settings
import hpack
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from shipyard.protocol import grpc_service_pb2 as pb
from shipyard.protocol.grpc_wire import frame_message
from shipyard.protocol.http2 import ClientConnection, Response, encode_headers
from shipyard.testing import RunningServer, identity_model, running_server, write_model
from shipyard.types import DataType

TIMEOUT_S = 10.0
INFER = "/inference.GRPCInferenceService/ModelInfer"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    repo: Path = tmp_path_factory.mktemp("wire")
    write_model(repo, "wide", identity_model(DataType.FP32, [1, "n"]))
    with running_server(repo) as running:
        yield running


def connect(server: RunningServer) -> socket.socket:
    host, port = server.grpc_address.rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=TIMEOUT_S)


def call(
    server: RunningServer,
    path: str,
    body: bytes,
    content_type: str = "application/grpc",
    extra: tuple[tuple[str, str], ...] = (),
) -> dict[str, str]:
    """One request with an h2 client on a socket; the answer's headers and trailers merged."""
    client = h2.connection.H2Connection(
        config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
    )
    client.initiate_connection()
    with connect(server) as sock:
        stream_id = client.get_next_available_stream_id()
        client.send_headers(
            stream_id,
            [
                (":method", "POST"),
                (":scheme", "http"),
                (":path", path),
                (":authority", server.grpc_address),
                ("content-type", content_type),
                ("te", "trailers"),
                *extra,
            ],
        )
        client.send_data(stream_id, body, end_stream=True)
        sock.sendall(client.data_to_send())
        headers: dict[str, str] = {}
        while True:
            data = sock.recv(65536)
            assert data, "the server closed the connection without answering"
            for event in client.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived | h2.events.TrailersReceived):
                    headers.update(dict(event.headers))
                if isinstance(event, h2.events.StreamEnded):
                    return headers
            sock.sendall(client.data_to_send())


def still_serves(server: RunningServer) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_address)
    array = np.arange(8, dtype=np.float32).reshape(1, 8)
    tensor = grpcclient.InferInput("INPUT0", [1, 8], "FP32")
    tensor.set_data_from_numpy(array)
    assert np.array_equal(client.infer("wide", [tensor]).as_numpy("OUTPUT0"), array)


def framed(message: Any) -> bytes:
    return frame_message(message.SerializeToString())


def test_plain_h2_client_gets_an_answer(server: RunningServer) -> None:
    """A call from an HTTP/2 library that is not grpcio: headers, message and trailers."""
    answer = call(
        server, "/inference.GRPCInferenceService/ServerLive", framed(pb.ServerLiveRequest())
    )
    assert answer[":status"] == "200"
    assert answer["content-type"] == "application/grpc"
    assert answer["grpc-accept-encoding"] == "identity"
    assert answer["grpc-status"] == "0"


def test_http1_request_gets_goaway_and_close(server: RunningServer) -> None:
    """HTTP/1.1 on the gRPC port gets GOAWAY(PROTOCOL_ERROR) naming prior knowledge, then close."""
    with connect(server) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    client = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    events = client.receive_data(received)
    (goaway,) = [e for e in events if isinstance(e, h2.events.ConnectionTerminated)]
    assert goaway.error_code == h2.errors.ErrorCodes.PROTOCOL_ERROR
    assert b"prior knowledge" in (goaway.additional_data or b"")
    still_serves(server)


def test_wrong_content_type_is_415(server: RunningServer) -> None:
    """A call whose content type is not gRPC gets HTTP 415 naming the type it sent."""
    answer = call(server, INFER, b"{}", content_type="application/json")
    assert answer[":status"] == "415"
    assert "application/json" in answer["grpc-message"]
    still_serves(server)


def test_unknown_method_is_unimplemented(server: RunningServer) -> None:
    """A method the service does not implement gets UNIMPLEMENTED naming it."""
    answer = call(
        server, "/inference.GRPCInferenceService/ModelStreamInfer", framed(pb.ServerLiveRequest())
    )
    assert answer["grpc-status"] == "12"
    assert "ModelStreamInfer is not implemented" in answer["grpc-message"]


@pytest.mark.parametrize(
    ("body", "text"),
    [
        (b"", "exactly one length-prefixed message"),
        (b"\x00\x00\x00\x00\x09abc", "exactly one length-prefixed message"),
        (b"\x00\x00\x00\x00\x03abc", "cannot parse the message"),
    ],
    ids=["empty", "truncated", "not-protobuf"],
)
def test_malformed_messages_are_invalid_argument(
    server: RunningServer, body: bytes, text: str
) -> None:
    """A message that is empty, truncated or not protobuf is INVALID_ARGUMENT, saying which."""
    answer = call(server, INFER, body)
    assert answer["grpc-status"] == "3"
    assert text in answer["grpc-message"]
    still_serves(server)


def test_compressed_request_is_unimplemented_with_a_hint(server: RunningServer) -> None:
    """A compressed message gets UNIMPLEMENTED with the hint to send it uncompressed."""
    payload = gzip.compress(pb.ServerLiveRequest().SerializeToString())
    body = b"\x01" + len(payload).to_bytes(4, "big") + payload
    answer = call(
        server,
        "/inference.GRPCInferenceService/ServerLive",
        body,
        extra=(("grpc-encoding", "gzip"),),
    )
    assert answer["grpc-status"] == "12"
    assert "grpc-encoding gzip" in answer["grpc-message"]
    assert "send them uncompressed" in answer["grpc-message"]
    still_serves(server)


def test_error_text_is_percent_encoded(server: RunningServer) -> None:
    """A message with non-ASCII text survives the grpc-message encoding (tritonclient decodes)."""
    client = grpcclient.InferenceServerClient(server.grpc_address)
    with pytest.raises(InferenceServerException) as info:
        client.get_model_metadata("modèle-100%")
    assert info.value.status() == "StatusCode.NOT_FOUND"
    assert "modèle-100%" in info.value.message()


def test_calls_over_max_concurrent_streams_are_refused(tmp_path: Path) -> None:
    """The limit is advertised in SETTINGS, and a stream over it gets REFUSED_STREAM."""
    repo = tmp_path / "repo"
    write_model(repo, "wide", identity_model(DataType.FP32, [1, "n"]))
    with running_server(repo, grpc_max_concurrent_streams=2) as limited, connect(limited) as sock:
        client = h2.connection.H2Connection(
            config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        )
        client.initiate_connection()
        sock.sendall(client.data_to_send())
        events = client.receive_data(sock.recv(65536))
        (settings,) = [e for e in events if isinstance(e, h2.events.RemoteSettingsChanged)]
        limit = settings.changed_settings[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS]
        assert limit.new_value == 2
        # Headers without END_STREAM keep each call open; the third is over the limit. The h2
        # client itself refuses to open it, so its frame is written by hand.
        headers = [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", INFER),
            (":authority", limited.grpc_address),
            ("content-type", "application/grpc"),
        ]
        for stream_id in (1, 3):
            client.send_headers(stream_id, headers)
        sock.sendall(client.data_to_send())
        block = hpack.Encoder().encode(headers)  # static entries and literals: valid
        third = b"".join(
            [len(block).to_bytes(3, "big"), b"\x01\x04", (5).to_bytes(4, "big"), block]
        )
        sock.sendall(third)
        received = b""
        while b"\x00\x00\x04\x03\x00\x00\x00\x00\x05" not in received:
            chunk = sock.recv(65536)
            assert chunk, "connection closed before the refusal"
            received += chunk
        at = received.index(b"\x00\x00\x04\x03\x00\x00\x00\x00\x05")
        assert received[at + 9 : at + 13] == (7).to_bytes(4, "big")  # REFUSED_STREAM


def test_stop_waits_for_an_answer_held_by_flow_control(tmp_path: Path) -> None:
    """An answer larger than the client's window still completes when the server stops.

    The call is answered (its task done) but most of the answer waits for the client's
    WINDOW_UPDATE; the drain must wait for the connection to finish, not only for the calls'
    tasks. The client is Shipyard's own HTTP/2 client end (h2's treats GOAWAY as the end of
    the connection, which RFC 9113 does not), with 64 KiB windows, reading nothing while the
    server stops. The 300 kB request is larger than the server's 64 KiB stream window: the
    server grants the rest once the message's length prefix arrives.
    """
    repo = tmp_path / "repo"
    write_model(repo, "wide", identity_model(DataType.FP32, [1, "n"]))
    array = np.arange(75_000, dtype=np.float32).reshape(1, -1)  # 300 kB each way
    request = pb.ModelInferRequest(model_name="wide")
    tensor = request.inputs.add()
    tensor.name, tensor.datatype = "INPUT0", "FP32"
    tensor.shape.extend(array.shape)
    request.raw_input_contents.append(array.tobytes())
    client = ClientConnection(
        max_body_bytes=1 << 20, stream_window=65_535, connection_window=65_535
    )
    with running_server(repo) as running, connect(running) as sock:
        block = encode_headers(
            [
                (b":method", b"POST"),
                (b":scheme", b"http"),
                (b":path", INFER.encode()),
                (b":authority", running.grpc_address.encode()),
                (b"content-type", b"application/grpc"),
                (b"te", b"trailers"),
            ]
        )
        sock.sendall(client.data_to_send())
        client.receive(sock.recv(65536))  # the server's SETTINGS: 64 KiB stream windows
        client.request(block, framed(request))
        sock.sendall(client.data_to_send())  # the first 64 KiB of the request
        # The server gives the stream window for the rest of the declared message; relay it.
        out = b""
        while len(out) < 200_000:
            chunk = sock.recv(65536)
            assert chunk, "no window for the rest of the request"
            client.receive(chunk)
            out = client.data_to_send()
            sock.sendall(out)
        responses: list[Response] = []
        data = b""
        while len(data) < 60_000:  # the answer has started: the first 64 KiB of it
            chunk = sock.recv(65536)
            assert chunk, "no answer"
            data += chunk
        running.server.stop()  # the answer is computed; most of it waits for our window
        # Read, granting no window, until the server's GOAWAY arrives: a drain that does not
        # wait for the connection closes it right after sending GOAWAY.
        responses += client.receive(data)
        while client.goaway_received is None:
            data = sock.recv(65536)
            assert data, "the server closed the connection before its GOAWAY"
            responses += client.receive(data)
        sock.sendall(client.data_to_send())
        while not responses:
            data = sock.recv(65536)
            assert data, "the server closed the connection before the answer was complete"
            responses += client.receive(data)
            sock.sendall(client.data_to_send())
    (response,) = responses
    assert ("grpc-status", "0") in response.trailers
    answer = pb.ModelInferResponse.FromString(response.body[5:])
    assert np.array_equal(np.frombuffer(answer.raw_output_contents[0], np.float32), array[0])
