"""Floods against a live gRPC port: rapid reset, PING, SETTINGS, CONTINUATION, HPACK bomb.

Each attack runs on its own connection while a legitimate tritonclient.grpc client keeps
calling; each ends with GOAWAY(ENHANCE_YOUR_CALM) and a closed connection, the legitimate
calls all succeed, and the ``victim`` model executed nothing the attacker cancelled.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import hpack
import pytest
from hyperframe.frame import HeadersFrame, PingFrame, SettingsFrame

from shipyard.protocol.http2 import ErrorCode, frame
from shipyard.protocol.http2 import frames as f
from shipyard.testing import RunningServer, running_server
from tests.adversarial.clients import (
    Attacker,
    LegitimateTraffic,
    goaway_code,
    infer_message,
    model_counts,
    request_headers,
)

BUDGET = 50


@pytest.fixture(scope="module")
def server(hostile_repository: Path) -> Iterator[RunningServer]:
    with running_server(
        hostile_repository,
        grpc_max_resets=BUDGET,
        grpc_max_pings=BUDGET,
        grpc_max_settings=BUDGET,
        grpc_max_header_list_bytes=8192,
    ) as running:
        yield running


def test_rapid_reset_never_reaches_the_model(server: RunningServer) -> None:
    """HEADERS + DATA + RST_STREAM per call: nothing runs, and past the budget GOAWAY."""
    before = model_counts(server, "victim")
    with LegitimateTraffic(server), Attacker(server) as attacker:
        stream_id = 1
        while not attacker.closed and stream_id < 20 * BUDGET:
            burst = b""
            for _ in range(10):  # one write, one read on the server: calls and resets together
                burst += attacker.request(stream_id, "victim")
                burst += frame(f.RST_STREAM, 0, stream_id, ErrorCode.CANCEL.to_bytes(4, "big"))
                stream_id += 2
            if not attacker.send(burst) or not attacker.ping():
                break
        goaway = attacker.goaway()
    assert goaway_code(goaway) == ErrorCode.ENHANCE_YOUR_CALM
    assert b"grpc_max_resets" in goaway.additional_data
    assert stream_id < 20 * BUDGET  # cut long before the attacker was done
    assert model_counts(server, "victim") == before  # no cancelled call executed


def test_resets_after_the_call_started_cancel_it(server: RunningServer) -> None:
    """A call reset in a later read than its request is cancelled; the connection survives."""
    with LegitimateTraffic(server), Attacker(server) as attacker:
        for stream_id in range(1, 21, 2):
            assert attacker.send(attacker.request(stream_id, "victim"))
            assert attacker.ping()  # the call has started
            reset = frame(f.RST_STREAM, 0, stream_id, ErrorCode.CANCEL.to_bytes(4, "big"))
            assert attacker.send(reset)
        assert attacker.ping()
        assert not attacker.closed


@pytest.mark.parametrize(
    ("flood", "setting"),
    [
        (b"".join(frame(f.PING, 0, 0, n.to_bytes(8, "big")) for n in range(5000)), b"pings"),
        (frame(f.SETTINGS, 0, 0) * 5000, b"settings"),
    ],
    ids=["ping", "settings"],
)
def test_control_frame_floods_are_cut_off(
    server: RunningServer, flood: bytes, setting: bytes
) -> None:
    """5,000 PINGs or SETTINGS in one burst: at most the budget answered, then GOAWAY."""
    with LegitimateTraffic(server), Attacker(server) as attacker:
        attacker.send(flood)
        goaway = attacker.goaway()
        acks = [
            fr
            for fr in attacker.frames
            if isinstance(fr, PingFrame | SettingsFrame) and "ACK" in fr.flags
        ]
    assert goaway_code(goaway) == ErrorCode.ENHANCE_YOUR_CALM
    assert b"grpc_max_" + setting in goaway.additional_data
    assert len(acks) <= BUDGET + 1  # + the ACK of the handshake's SETTINGS


def test_continuation_flood_is_cut_off(server: RunningServer) -> None:
    """A header block that never ends (empty CONTINUATION frames): GOAWAY at once."""
    with LegitimateTraffic(server), Attacker(server) as attacker:
        attacker.send(frame(f.HEADERS, 0, 1, request_headers(attacker.address)[:20]))
        for _ in range(100):
            if not attacker.send(frame(f.CONTINUATION, 0, 1, b"") * 100):
                break
        goaway = attacker.goaway()
    assert goaway_code(goaway) == ErrorCode.ENHANCE_YOUR_CALM
    assert b"CONTINUATION" in goaway.additional_data


def test_header_block_too_large_is_refused_before_it_is_buffered(server: RunningServer) -> None:
    """CONTINUATION frames adding up past the header limit: GOAWAY(ENHANCE_YOUR_CALM)."""
    with LegitimateTraffic(server), Attacker(server) as attacker:
        block = request_headers(attacker.address, ((b"x-junk", b"j" * 4000),))
        attacker.send(frame(f.HEADERS, 0, 1, block))
        attacker.send(frame(f.CONTINUATION, 0, 1, b"\x40" + b"j" * 5000))
        goaway = attacker.goaway()
    assert goaway_code(goaway) == ErrorCode.ENHANCE_YOUR_CALM
    assert b"grpc_max_header_list_bytes" in goaway.additional_data


def test_hpack_bomb_is_refused(server: RunningServer) -> None:
    """A 4 KB table entry named 1,000 times in a 1 KB block: refused, nothing runs."""
    before = model_counts(server, "victim")
    encoder = hpack.Encoder()
    with LegitimateTraffic(server), Attacker(server) as attacker:
        # A call that never ends puts the 4 KB entry in the server's HPACK table...
        seed = request_headers(attacker.address) + encoder.encode([("x-bomb", "b" * 4000)])
        attacker.send(frame(f.HEADERS, f.FLAG_END_HEADERS, 1, seed))
        # ... and the next call names it 1,000 times: 4 MB of headers from a 1 KB block.
        bomb = request_headers(attacker.address) + encoder.encode([("x-bomb", "b" * 4000)] * 1000)
        assert len(bomb) < 2000
        call = frame(f.HEADERS, f.FLAG_END_HEADERS, 3, bomb)
        attacker.send(call + frame(f.DATA, f.FLAG_END_STREAM, 3, infer_message("victim")))
        goaway = attacker.goaway()
    assert goaway_code(goaway) == ErrorCode.ENHANCE_YOUR_CALM
    assert model_counts(server, "victim") == before


def test_the_attack_requests_are_valid_calls(server: RunningServer) -> None:
    """The control: the same request without a reset runs and is answered grpc-status 0."""
    before, _ = model_counts(server, "victim")
    with Attacker(server) as attacker:
        attacker.send(attacker.request(1, "victim"))
        end = attacker.read(lambda fr: isinstance(fr, HeadersFrame) and "END_STREAM" in fr.flags)
        assert isinstance(end, HeadersFrame)
        assert (b"grpc-status", b"0") in hpack.Decoder().decode(end.data, raw=True)
    assert model_counts(server, "victim")[0] == before + 1
