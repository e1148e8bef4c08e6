"""Slow and stingy clients against a live gRPC port: slowloris and a zero-window client.

The server's limits are small here (handshake 0.5 s, idle 1 s, keepalive 0.5 s + 0.5 s,
100 kB of unsent answers per connection) so that each stuck connection must be closed within
a second or two, while a legitimate tritonclient.grpc client keeps calling.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import hpack
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from hyperframe.frame import HeadersFrame

from shipyard.protocol import grpc_service_pb2 as pb
from shipyard.protocol.grpc_wire import frame_message
from shipyard.protocol.http2 import PREFACE, ErrorCode, frame
from shipyard.protocol.http2 import frames as f
from shipyard.testing import RunningServer, running_server
from tests.adversarial.clients import (
    TIMEOUT_S,
    Attacker,
    LegitimateTraffic,
    goaway_code,
    model_counts,
    request_headers,
)

HANDSHAKE_S, IDLE_S, KEEPALIVE_S = 0.5, 1.0, 0.5
#: Widest answer of the zero-window test: 60 kB, under the 64 KiB stream window each way.
WIDTH = 15_000


@pytest.fixture(scope="module")
def server(hostile_repository: Path) -> Iterator[RunningServer]:
    with running_server(
        hostile_repository,
        grpc_handshake_timeout_s=HANDSHAKE_S,
        grpc_idle_timeout_s=IDLE_S,
        grpc_keepalive_interval_s=KEEPALIVE_S,
        grpc_keepalive_timeout_s=KEEPALIVE_S,
        grpc_max_unsent_bytes=100_000,
    ) as running:
        yield running


@pytest.mark.parametrize(
    "sent",
    [b"", PREFACE[:10], PREFACE],
    ids=["nothing", "partial-preface", "preface-without-settings"],
)
def test_handshake_not_finished_is_closed_in_time(server: RunningServer, sent: bytes) -> None:
    """No preface and SETTINGS within grpc_handshake_timeout_s: closed, GOAWAY first."""
    with LegitimateTraffic(server), Attacker(server, handshake=False) as attacker:
        attacker.send(sent)
        elapsed = attacker.wait_closed(TIMEOUT_S)
        goaway = attacker.goaway()
    assert HANDSHAKE_S * 0.8 <= elapsed < TIMEOUT_S
    assert b"grpc_handshake_timeout_s" in goaway.additional_data


def test_partial_frame_without_a_stream_is_closed_when_idle(server: RunningServer) -> None:
    """Half a frame after the handshake, no stream open: closed by the idle or keepalive limit."""
    with LegitimateTraffic(server), Attacker(server) as attacker:
        attacker.send(
            frame(f.HEADERS, f.FLAG_END_HEADERS, 1, request_headers(attacker.address))[:20]
        )
        elapsed = attacker.wait_closed(TIMEOUT_S)
        goaway = attacker.goaway()
    assert elapsed < TIMEOUT_S
    assert goaway_code(goaway) == ErrorCode.NO_ERROR
    assert (
        b"grpc_idle_timeout_s" in goaway.additional_data or b"keepalive" in goaway.additional_data
    )


def test_partial_frame_inside_an_open_stream_is_closed_by_keepalive(
    server: RunningServer,
) -> None:
    """A call opened, then half a DATA frame held: the keepalive PING goes unanswered."""
    with LegitimateTraffic(server), Attacker(server) as attacker:
        headers = frame(f.HEADERS, f.FLAG_END_HEADERS, 1, request_headers(attacker.address))
        attacker.send(headers + frame(f.DATA, 0, 1, b"\x00" * 100)[:40])
        elapsed = attacker.wait_closed(TIMEOUT_S)
        goaway = attacker.goaway()
    assert 2 * KEEPALIVE_S * 0.8 <= elapsed < TIMEOUT_S
    assert b"grpc_keepalive_timeout_s" in goaway.additional_data


def mirror_call(stream_id: int, address: str) -> bytes:
    """A ``mirror`` call of WIDTH FP32 values (its answer is as large)."""
    request = pb.ModelInferRequest(model_name="mirror")
    tensor = request.inputs.add()
    tensor.name, tensor.datatype = "INPUT0", "FP32"
    tensor.shape.extend([1, WIDTH])
    request.raw_input_contents.append(np.ones(WIDTH, np.float32).tobytes())
    headers = frame(f.HEADERS, f.FLAG_END_HEADERS, stream_id, request_headers(address))
    body = frame_message(request.SerializeToString())
    return headers + frame(f.DATA, f.FLAG_END_STREAM, stream_id, body)


def test_zero_window_client_cannot_make_the_server_hold_more(server: RunningServer) -> None:
    """A client that reads nothing: past 100 kB of held answers no call of it starts; once it
    reads, every call is answered."""
    before, _ = model_counts(server, "mirror")
    zero_window = frame(f.SETTINGS, 0, 0, b"\x00\x04" + (0).to_bytes(4, "big"))
    with LegitimateTraffic(server), Attacker(server, handshake=False) as attacker:
        attacker.send(PREFACE + zero_window)
        attacker.send(b"".join(mirror_call(s, attacker.address) for s in (1, 3)))
        for _ in (1, 3):  # answered: response headers go out, the data waits for window
            assert attacker.read(lambda fr: isinstance(fr, HeadersFrame)) is not None
        # 120 kB held: the next calls arrive and wait, unconsumed.
        attacker.send(b"".join(mirror_call(s, attacker.address) for s in (5, 7, 9)))
        assert attacker.ping()
        legit = grpcclient.InferenceServerClient(server.grpc_address)
        tensor = grpcclient.InferInput("INPUT0", [1, WIDTH], "FP32")
        tensor.set_data_from_numpy(np.ones((1, WIDTH), np.float32))
        legit.infer("mirror", [tensor], client_timeout=TIMEOUT_S)  # behind any started call
        assert model_counts(server, "mirror")[0] == before + 2 + 1
        # The client reads at last: every call is answered.
        big = (1 << 24).to_bytes(4, "big")
        attacker.send(
            frame(f.SETTINGS, 0, 0, b"\x00\x04" + (1 << 20).to_bytes(4, "big"))
            + frame(f.WINDOW_UPDATE, 0, 0, big)
        )
        ended: list[int] = []
        while len(ended) < 5:
            end = attacker.read(
                lambda fr: isinstance(fr, HeadersFrame) and "END_STREAM" in fr.flags
            )
            assert isinstance(end, HeadersFrame), "the server closed before answering"
            assert (b"grpc-status", b"0") in hpack.Decoder().decode(end.data, raw=True)
            ended.append(end.stream_id)
    assert sorted(ended) == [1, 3, 5, 7, 9]
    assert model_counts(server, "mirror")[0] == before + 5 + 1
