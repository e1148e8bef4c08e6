"""Malformed HTTP/2 against a live gRPC port: oversized frames, stream ids, closed streams.

Each connection at fault ends with the GOAWAY error code RFC 9113 gives, or its one stream is
reset where the fault is the stream's (a malformed request, DATA on a closed stream), while a
legitimate tritonclient.grpc client keeps calling, and nothing the attacker sent reaches the
model.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import hpack
import pytest
from hyperframe.frame import HeadersFrame, RstStreamFrame

from shipyard.protocol.http2 import ErrorCode, encode_headers, frame
from shipyard.protocol.http2 import frames as f
from shipyard.testing import RunningServer, running_server
from tests.adversarial.clients import (
    INFER,
    Attacker,
    LegitimateTraffic,
    goaway_code,
    infer_message,
    model_counts,
    request_headers,
)


@pytest.fixture(scope="module")
def server(hostile_repository: Path) -> Iterator[RunningServer]:
    with running_server(hostile_repository) as running:
        yield running


def test_oversized_frame_is_refused_before_its_payload(server: RunningServer) -> None:
    """A frame header announcing 16 MB (over the 1 MiB limit): FRAME_SIZE_ERROR at once."""
    with LegitimateTraffic(server), Attacker(server) as attacker:
        header = (16 * 1024 * 1024 - 1).to_bytes(3, "big") + b"\x00\x00\x00\x00\x00\x01"
        attacker.send(frame(f.HEADERS, 4, 1, request_headers(attacker.address)) + header)
        goaway = attacker.goaway()  # without sending one payload byte
    assert goaway_code(goaway) == ErrorCode.FRAME_SIZE_ERROR


def test_stream_id_out_of_order_ends_the_connection(server: RunningServer) -> None:
    """A new stream below the highest one seen: GOAWAY(PROTOCOL_ERROR); nothing runs."""
    before = model_counts(server, "victim")
    with LegitimateTraffic(server), Attacker(server) as attacker:
        attacker.send(frame(f.HEADERS, f.FLAG_END_HEADERS, 7, request_headers(attacker.address)))
        attacker.send(attacker.request(3, "victim"))
        goaway = attacker.goaway()
    assert goaway_code(goaway) == ErrorCode.PROTOCOL_ERROR
    assert model_counts(server, "victim") == before


def test_even_stream_id_ends_the_connection(server: RunningServer) -> None:
    """A client may only open odd streams: GOAWAY(PROTOCOL_ERROR)."""
    with LegitimateTraffic(server), Attacker(server) as attacker:
        attacker.send(attacker.request(2, "victim"))
        assert goaway_code(attacker.goaway()) == ErrorCode.PROTOCOL_ERROR


def test_data_on_a_closed_stream_resets_it(server: RunningServer) -> None:
    """DATA on a stream both sides finished: RST_STREAM(STREAM_CLOSED), nothing runs again."""
    before = model_counts(server, "mirror")
    with LegitimateTraffic(server), Attacker(server) as attacker:
        attacker.send(attacker.request(1, "mirror"))
        end = attacker.read(lambda fr: isinstance(fr, HeadersFrame) and "END_STREAM" in fr.flags)
        assert end is not None  # answered: the stream is closed
        attacker.send(frame(f.DATA, f.FLAG_END_STREAM, 1, infer_message("mirror")))
        reset = attacker.read(lambda fr: isinstance(fr, RstStreamFrame))
        assert isinstance(reset, RstStreamFrame)
        assert reset.error_code == ErrorCode.STREAM_CLOSED
        assert attacker.ping()
    assert model_counts(server, "mirror")[0] == before[0] + 1  # the one real call only


def test_data_on_an_idle_stream_ends_the_connection(server: RunningServer) -> None:
    """DATA on a stream never opened: GOAWAY(PROTOCOL_ERROR)."""
    with LegitimateTraffic(server), Attacker(server) as attacker:
        attacker.send(frame(f.DATA, f.FLAG_END_STREAM, 9, infer_message("victim")))
        assert goaway_code(attacker.goaway()) == ErrorCode.PROTOCOL_ERROR


def test_data_after_the_request_ended_resets_the_stream(server: RunningServer) -> None:
    """More DATA after END_STREAM (before the answer): the stream is reset STREAM_CLOSED."""
    with LegitimateTraffic(server), Attacker(server) as attacker:
        attacker.send(attacker.request(1, "victim") + frame(f.DATA, 0, 1, b"more"))
        reset = attacker.read(lambda fr: isinstance(fr, RstStreamFrame))
        assert isinstance(reset, RstStreamFrame)
        assert reset.error_code == ErrorCode.STREAM_CLOSED
        assert attacker.ping()  # the connection lives on


@pytest.mark.parametrize(
    "headers",
    [
        [(b":method", b"POST"), (b":path", INFER.encode()), (b"Content-Type", b"x")],
        [(b":method", b"POST"), (b":scheme", b"http"), (b":path", INFER.encode()), (b":x", b"y")],
        [(b":method", b"POST"), (b":scheme", b"http"), (b"connection", b"close")],
    ],
    ids=["uppercase", "unknown-pseudo-header", "connection-header"],
)
def test_malformed_headers_reset_the_stream(
    server: RunningServer, headers: list[tuple[bytes, bytes]]
) -> None:
    """RFC 9113 8.2 violations: RST_STREAM(PROTOCOL_ERROR) for that stream (RFC 9113 8.1.1),
    nothing runs, and the connection serves a valid call next."""
    before = model_counts(server, "victim")
    with LegitimateTraffic(server), Attacker(server) as attacker:
        block = encode_headers(headers)
        attacker.send(frame(f.HEADERS, f.FLAG_END_HEADERS, 1, block))
        attacker.send(frame(f.DATA, f.FLAG_END_STREAM, 1, infer_message("victim")))
        reset = attacker.read(lambda fr: isinstance(fr, RstStreamFrame))
        assert isinstance(reset, RstStreamFrame)
        assert (reset.stream_id, reset.error_code) == (1, ErrorCode.PROTOCOL_ERROR)
        assert model_counts(server, "victim") == before
        attacker.send(attacker.request(3, "victim"))
        end = attacker.read(lambda fr: isinstance(fr, HeadersFrame) and "END_STREAM" in fr.flags)
        assert isinstance(end, HeadersFrame)
        assert end.stream_id == 3
    assert model_counts(server, "victim")[0] == before[0] + 1  # the valid call only


@pytest.mark.parametrize(
    ("drop", "extra", "status", "grpc_status"),
    [
        (b"te", (), b"400", b"13"),
        (b"content-type", ((b"content-type", b"application/grpc+json"),), b"415", b"2"),
        (b"content-type", ((b"content-type", b"application/grpcx"),), b"415", b"2"),
    ],
    ids=["no-te", "grpc-json", "grpc-prefix"],
)
def test_requests_that_are_not_grpc_get_an_error_answer(
    server: RunningServer,
    drop: bytes,
    extra: tuple[tuple[bytes, bytes], ...],
    status: bytes,
    grpc_status: bytes,
) -> None:
    """Without ``te: trailers`` or with another content type: an error answer, nothing runs."""
    before = model_counts(server, "victim")
    base = [
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":path", INFER.encode()),
        (b":authority", server.grpc_address.encode()),
        (b"content-type", b"application/grpc"),
        (b"te", b"trailers"),
    ]
    headers = [(k, v) for k, v in base if k != drop] + list(extra)
    with Attacker(server) as attacker:
        attacker.send(frame(f.HEADERS, f.FLAG_END_HEADERS, 1, encode_headers(headers)))
        attacker.send(frame(f.DATA, f.FLAG_END_STREAM, 1, infer_message("victim")))
        end = attacker.read(lambda fr: isinstance(fr, HeadersFrame) and "END_STREAM" in fr.flags)
        assert isinstance(end, HeadersFrame)
        answer = dict(hpack.Decoder().decode(end.data, raw=True))
    assert answer[b":status"] == status
    assert answer[b"grpc-status"] == grpc_status
    assert model_counts(server, "victim") == before


def test_http1_on_the_grpc_port_is_told_to_use_http2(server: RunningServer) -> None:
    """An HTTP/1.1 request gets GOAWAY(PROTOCOL_ERROR) naming HTTP/2 with prior knowledge."""
    with LegitimateTraffic(server), Attacker(server, handshake=False) as attacker:
        attacker.send(b"POST /v2/models/victim/infer HTTP/1.1\r\nHost: x\r\n\r\n")
        goaway = attacker.goaway()
    assert goaway_code(goaway) == ErrorCode.PROTOCOL_ERROR
    assert b"prior knowledge" in goaway.additional_data
