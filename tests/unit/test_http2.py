"""The load generator's HTTP/2 client end against an independent server (the ``h2`` package).

The client end talks to an ``h2`` server in memory: bytes from one are fed to the other, so
every frame either side writes is parsed by code Shipyard did not write. (The server end, with
Shipyard's policy around it, against an ``h2`` client: tests/unit/test_http2_server.py.)
"""

from __future__ import annotations

import random
from typing import Any

import h2.config
import h2.connection
import h2.events
import hpack
import pytest

from shipyard.protocol.http2 import (
    ClientConnection,
    ErrorCode,
    ProtocolError,
    Response,
    encode_headers,
    frame,
    frames,
)

REQUEST_HEADERS = [
    (":method", "POST"),
    (":scheme", "http"),
    (":path", "/inference.GRPCInferenceService/ModelInfer"),
    (":authority", "127.0.0.1:8001"),
    ("content-type", "application/grpc"),
    ("te", "trailers"),
]


def h2_peer(client_side: bool) -> h2.connection.H2Connection:
    config = h2.config.H2Configuration(client_side=client_side, header_encoding="utf-8")
    peer = h2.connection.H2Connection(config=config)
    peer.initiate_connection()
    return peer


class ClientPair:
    """A Shipyard client end and an ``h2`` server, wired back to back."""

    def __init__(self) -> None:
        self.client = ClientConnection(max_body_bytes=64 * 1024 * 1024)
        self.server = h2_peer(client_side=False)
        self.responses: list[Response] = []
        self.events: list[Any] = []

    def pump(self) -> None:
        for _ in range(1000):
            out = self.client.data_to_send()
            if out:
                self.events += self.server.receive_data(out)
            back = self.server.data_to_send()
            if back:
                self.responses += self.client.receive(back)
            if not out and not back:
                return
        raise AssertionError("the two ends kept talking")


def test_client_request_and_answer_with_indexed_headers() -> None:
    """h2's server indexes its headers (HPACK dynamic table); repeated calls decode right."""
    pair = ClientPair()
    block = encode_headers([(n.encode(), v.encode()) for n, v in REQUEST_HEADERS])
    for call in range(3):
        stream_id = pair.client.request(block, b"payload")
        pair.pump()
        received = [e for e in pair.events if isinstance(e, h2.events.RequestReceived)]
        assert received[-1].headers == REQUEST_HEADERS
        data = [e for e in pair.events if isinstance(e, h2.events.DataReceived)]
        assert data[-1].data == b"payload"
        assert data[-1].stream_ended is not None
        pair.server.send_headers(
            stream_id, [(":status", "200"), ("content-type", "application/grpc")]
        )
        pair.server.send_data(stream_id, f"answer {call}".encode())
        pair.server.send_headers(stream_id, [("grpc-status", "0")], end_stream=True)
        pair.pump()
        response = pair.responses[-1]
        assert response.stream_id == stream_id
        assert response.headers == [(":status", "200"), ("content-type", "application/grpc")]
        assert response.body == f"answer {call}".encode()
        assert response.trailers == [("grpc-status", "0")]
    assert pair.client.open_streams == 0


def test_client_trailers_only_reset_and_goaway() -> None:
    """Trailers-Only answers, a refused stream and a GOAWAY each reach the caller."""
    pair = ClientPair()
    block = encode_headers([(n.encode(), v.encode()) for n, v in REQUEST_HEADERS])
    first = pair.client.request(block, b"a")
    second = pair.client.request(block, b"b")
    pair.pump()
    pair.server.send_headers(
        first,
        [(":status", "200"), ("content-type", "application/grpc"), ("grpc-status", "14")],
        end_stream=True,
    )
    pair.server.reset_stream(second, ErrorCode.REFUSED_STREAM)
    pair.pump()
    by_id = {r.stream_id: r for r in pair.responses}
    assert ("grpc-status", "14") in by_id[first].trailers
    assert by_id[second].reset == ErrorCode.REFUSED_STREAM
    pair.server.close_connection(last_stream_id=second)
    pair.pump()
    assert pair.client.goaway_received == second


def test_client_large_answer_opens_its_windows() -> None:
    """A 12 MB answer arrives whole: the client keeps giving the server window."""
    pair = ClientPair()
    block = encode_headers([(n.encode(), v.encode()) for n, v in REQUEST_HEADERS])
    stream_id = pair.client.request(block, b"")
    pair.pump()
    body = random.Random(3).randbytes(12_000_000)
    pair.server.send_headers(stream_id, [(":status", "200")])
    sent = 0
    for _ in range(10_000):
        window = pair.server.local_flow_control_window(stream_id)
        size = min(window, pair.server.max_outbound_frame_size, len(body) - sent)
        if size:
            pair.server.send_data(stream_id, body[sent : sent + size])
            sent += size
        if sent == len(body):
            pair.server.send_headers(stream_id, [("grpc-status", "0")], end_stream=True)
            pair.pump()
            break
        pair.pump()
    (response,) = pair.responses
    assert response.body == body


def test_client_stream_error_fails_the_call() -> None:
    """DATA before any response headers is a stream error: the call ends as reset."""
    client = ClientConnection(max_body_bytes=1000)
    block = encode_headers([(n.encode(), v.encode()) for n, v in REQUEST_HEADERS])
    stream_id = client.request(block, b"x")
    client.data_to_send()
    settings = frame(frames.SETTINGS, 0, 0)  # the server's preface
    (response,) = client.receive(settings + frame(frames.DATA, 0, stream_id, b"early"))
    assert response.stream_id == stream_id
    assert response.reset == ErrorCode.STREAM_CLOSED
    reset = frame(frames.RST_STREAM, 0, stream_id, ErrorCode.STREAM_CLOSED.to_bytes(4, "big"))
    assert reset in client.data_to_send()
    assert client.open_streams == 0


def test_server_preface_must_be_settings() -> None:
    """A server whose first frame is not SETTINGS is refused: GOAWAY(PROTOCOL_ERROR)."""
    client = ClientConnection(max_body_bytes=1000)
    client.data_to_send()
    with pytest.raises(ProtocolError) as info:
        client.receive(frame(frames.PING, 0, 0, b"12345678"))
    assert info.value.code == ErrorCode.PROTOCOL_ERROR
    out = client.data_to_send()
    assert out[3] == frames.GOAWAY
    assert int.from_bytes(out[13:17], "big") == ErrorCode.PROTOCOL_ERROR


def test_header_cache_survives_evicting_the_front_entry() -> None:
    """Blocks that replace the whole table, then a cached indexed block: still decoded right.

    Each round's block adds two headers over half the 4 KiB table, so the second evicts the
    first and everything before it. A cache that compared only the front entry's id() could
    meet the same address again (the old entry freed, a new one allocated there) and answer
    a stale value for the indexed block ``\\xbe`` (dynamic entry 1).
    """

    def string(value: bytes) -> bytes:
        return frames.encode_integer(len(value), 7, 0) + value

    def indexed_literal(name: bytes, value: bytes) -> bytes:  # literal, incremental indexing
        return b"\x40" + string(name) + string(value)

    prefix = b"\x83\x86" + b"\x04" + string(b"/inference.GRPCInferenceService/ServerLive")
    client = ClientConnection(max_body_bytes=100)
    reference = hpack.Decoder()
    blocks = [prefix + indexed_literal(b"authorization", b"Bearer " + b"a" * 2500)]
    blocks.append(prefix + b"\xbe")
    for token in b"bcdef":
        big = [b"Bearer " + bytes([token]) * 2500, b"Bearer " + bytes([token - 32]) * 2500]
        blocks.append(prefix + b"".join(indexed_literal(b"authorization", v) for v in big))
        blocks.append(prefix + b"\xbe")
    for block in blocks:
        assert client.decoder.decode(block) == reference.decode(block)


def test_header_cache_follows_the_decoder_table() -> None:
    """Cached decoding agrees with a plain decoder over blocks that grow and evict the table."""
    rng = random.Random(2)
    encoder = hpack.Encoder()
    encoder.header_table_size = 256  # small: entries get evicted
    reference = hpack.Decoder()
    reference.header_table_size = 256
    client = ClientConnection(max_body_bytes=1000)
    client.decoder.header_table_size = 256
    values = [f"value-{i}" for i in range(12)]
    for _ in range(400):
        headers = [(":path", "/p"), ("x-a", rng.choice(values)), ("x-b", rng.choice(values[:3]))]
        block = encoder.encode(headers)
        assert client.decoder.decode(block) == reference.decode(block) == headers
