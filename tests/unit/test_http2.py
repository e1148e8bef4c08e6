"""Shipyard's HTTP/2 state machines against an independent implementation (the ``h2`` package).

The server end talks to an ``h2`` client and the client end to an ``h2`` server, in memory:
bytes from one are fed to the other, so every frame either side writes is parsed by code
Shipyard did not write. Protocol violations are built frame by frame.
"""

from __future__ import annotations

import random
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings
import hpack
import pytest

from shipyard.protocol.http2 import (
    ClientConnection,
    ErrorCode,
    ProtocolError,
    Request,
    Response,
    ServerConnection,
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
RESPONSE_HEADERS = encode_headers([(b":status", b"200"), (b"content-type", b"application/grpc")])
OK_TRAILERS = encode_headers([(b"grpc-status", b"0")])
#: A Trailers-Only answer: one block that must carry :status too.
FAILED = encode_headers([(b":status", b"200"), (b"grpc-status", b"8")])


def h2_peer(client_side: bool) -> h2.connection.H2Connection:
    config = h2.config.H2Configuration(client_side=client_side, header_encoding="utf-8")
    peer = h2.connection.H2Connection(config=config)
    peer.initiate_connection()
    return peer


class Pair:
    """An ``h2`` client and a Shipyard server end, wired back to back."""

    def __init__(self, **options: Any) -> None:
        options.setdefault("max_body_bytes", 64 * 1024 * 1024)
        self.server = ServerConnection(**options)
        self.client = h2_peer(client_side=True)
        self.requests: list[Request] = []
        self.events: list[Any] = []

    def pump(self) -> None:
        """Move bytes both ways until neither side has anything to say."""
        for _ in range(100):
            out = self.client.data_to_send()
            if out:
                self.requests += self.server.receive(out)
            back = self.server.data_to_send()
            if back:
                self.events += self.client.receive_data(back)
            if not out and not back:
                return
        raise AssertionError("the two ends kept talking")

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    def send_request(self, body: bytes, end: bool = True) -> int:
        stream_id: int = self.client.get_next_available_stream_id()
        self.client.send_headers(stream_id, REQUEST_HEADERS)
        self.client.send_data(stream_id, body, end_stream=end)
        return stream_id


def test_request_and_answer_round_trip() -> None:
    pair = Pair()
    stream_id = pair.send_request(b"\x00\x00\x00\x00\x03abc")
    pair.pump()
    assert len(pair.requests) == 1
    request = pair.requests[0]
    assert request.stream_id == stream_id
    assert request.headers == REQUEST_HEADERS
    assert request.body == b"\x00\x00\x00\x00\x03abc"

    pair.server.respond(stream_id, RESPONSE_HEADERS, b"answer", OK_TRAILERS)
    pair.pump()
    (response,) = pair.of(h2.events.ResponseReceived)
    assert response.headers == [(":status", "200"), ("content-type", "application/grpc")]
    assert b"".join(e.data for e in pair.of(h2.events.DataReceived)) == b"answer"
    (trailers,) = pair.of(h2.events.TrailersReceived)
    assert trailers.headers == [("grpc-status", "0")]
    assert len(pair.of(h2.events.StreamEnded)) == 1
    assert pair.server.open_streams == 0


def test_trailers_only_answer() -> None:
    pair = Pair()
    stream_id = pair.send_request(b"")
    pair.pump()
    block = encode_headers(
        [(b":status", b"200"), (b"content-type", b"application/grpc"), (b"grpc-status", b"5")]
    )
    pair.server.respond(stream_id, b"", b"", block)
    pair.pump()
    (response,) = pair.of(h2.events.ResponseReceived)
    assert ("grpc-status", "5") in response.headers
    assert len(pair.of(h2.events.StreamEnded)) == 1


def test_settings_are_exchanged_and_acknowledged() -> None:
    pair = Pair(max_concurrent_streams=7, stream_window=1 << 20)
    pair.pump()
    (changed,) = pair.of(h2.events.RemoteSettingsChanged)
    settings = {k: v.new_value for k, v in changed.changed_settings.items()}
    assert settings[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS] == 7
    assert settings[h2.settings.SettingCodes.INITIAL_WINDOW_SIZE] == 1 << 20
    assert pair.of(h2.events.SettingsAcknowledged)  # the server acknowledged the client's


def test_ping_is_answered() -> None:
    pair = Pair()
    pair.client.ping(b"shipyard")
    pair.pump()
    (ack,) = pair.of(h2.events.PingAckReceived)
    assert ack.ping_data == b"shipyard"


def test_large_answer_waits_for_the_clients_window() -> None:
    """The server never sends past the client's window; WINDOW_UPDATE releases the rest."""
    pair = Pair()
    stream_id = pair.send_request(b"x")
    pair.pump()
    body = bytes(random.Random(0).randbytes(300_000))
    pair.server.respond(stream_id, RESPONSE_HEADERS, body, OK_TRAILERS)
    pair.pump()
    received = b"".join(e.data for e in pair.of(h2.events.DataReceived))
    assert len(received) == 65_535  # h2's default window, connection and stream
    assert not pair.of(h2.events.TrailersReceived)  # the trailers wait behind the data
    for _ in range(20):
        for event in pair.of(h2.events.DataReceived):
            pair.client.acknowledge_received_data(event.flow_controlled_length, stream_id)
        pair.events.clear()
        pair.pump()
        received += b"".join(e.data for e in pair.of(h2.events.DataReceived))
        if pair.of(h2.events.TrailersReceived):
            break
    assert received == body
    assert pair.server.open_streams == 0


def test_larger_initial_window_from_settings_releases_blocked_data() -> None:
    pair = Pair()
    stream_id = pair.send_request(b"x")
    pair.pump()
    pair.server.respond(stream_id, RESPONSE_HEADERS, b"y" * 100_000, OK_TRAILERS)
    pair.pump()
    pair.client.increment_flow_control_window(1 << 20)  # the connection window
    pair.client.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1 << 20})
    pair.pump()
    received = b"".join(e.data for e in pair.of(h2.events.DataReceived))
    assert received == b"y" * 100_000
    assert pair.of(h2.events.TrailersReceived)


def test_large_request_body_is_given_window() -> None:
    """A 10 MB body passes: the server keeps opening its stream and connection windows."""
    pair = Pair()
    pair.pump()
    stream_id = pair.client.get_next_available_stream_id()
    pair.client.send_headers(stream_id, REQUEST_HEADERS)
    body = random.Random(1).randbytes(10_000_000)
    sent = 0
    for _ in range(1000):
        window = min(pair.client.local_flow_control_window(stream_id), 1 << 20)
        chunk = body[sent : sent + min(window, pair.client.max_outbound_frame_size)]
        sent += len(chunk)
        pair.client.send_data(stream_id, chunk, end_stream=sent == len(body))
        pair.pump()
        if sent == len(body):
            break
    (request,) = pair.requests
    assert request.body == body


def test_concurrent_streams_over_the_limit_are_refused() -> None:
    server = ServerConnection(max_body_bytes=1000, max_concurrent_streams=2)
    encoder = hpack.Encoder()
    data = frames.PREFACE + frame(frames.SETTINGS, 0, 0)
    for stream_id in (1, 3, 5):  # headers only: each stream stays open
        block = encoder.encode(REQUEST_HEADERS)
        data += frame(frames.HEADERS, frames.FLAG_END_HEADERS, stream_id, block)
    assert server.receive(data) == []
    refused = frame(frames.RST_STREAM, 0, 5, ErrorCode.REFUSED_STREAM.to_bytes(4, "big"))
    assert refused in server.data_to_send()
    assert server.open_streams == 2


def test_body_over_the_limit_is_reported_and_answered() -> None:
    pair = Pair(max_body_bytes=100)
    pair.pump()
    stream_id = pair.send_request(b"z" * 300)
    assert pair.server.receive(pair.client.data_to_send()) == []
    assert pair.server.oversized == [stream_id]
    pair.server.respond(stream_id, b"", b"", FAILED)  # what the transport does at once
    pair.pump()
    assert pair.of(h2.events.StreamEnded)
    assert pair.server.open_streams == 0


def test_oversized_stream_is_listed() -> None:
    server = ServerConnection(max_body_bytes=100)
    block = hpack.Encoder().encode(REQUEST_HEADERS)
    data = frames.PREFACE + frame(frames.HEADERS, frames.FLAG_END_HEADERS, 1, block)
    data += frame(frames.DATA, 0, 1, b"a" * 80) + frame(
        frames.DATA, frames.FLAG_END_STREAM, 1, b"a" * 80
    )
    assert server.receive(data) == []
    assert server.oversized == [1]


def test_answer_before_the_request_ends_stops_the_client() -> None:
    """Answered early (say, over the limit), the stream is reset with NO_ERROR after trailers."""
    pair = Pair()
    stream_id = pair.send_request(b"partial", end=False)
    pair.pump()
    pair.server.respond(stream_id, b"", b"", FAILED)
    pair.pump()
    assert pair.of(h2.events.StreamEnded)
    (reset,) = pair.of(h2.events.StreamReset)
    assert reset.error_code == ErrorCode.NO_ERROR
    assert pair.server.open_streams == 0
    # Data the client sent before it saw the reset is dropped quietly.
    late = frame(frames.DATA, frames.FLAG_END_STREAM, stream_id, b"late")
    assert pair.server.receive(late) == []


def test_client_reset_is_reported_and_later_answer_ignored() -> None:
    pair = Pair()
    stream_id = pair.send_request(b"x")
    pair.pump()
    pair.client.reset_stream(stream_id, ErrorCode.CANCEL)
    out = pair.client.data_to_send()
    assert pair.server.receive(out) == []
    assert pair.server.reset == [stream_id]
    pair.server.respond(stream_id, RESPONSE_HEADERS, b"late", OK_TRAILERS)
    assert b"late" not in pair.server.data_to_send()


def test_continuation_and_padding() -> None:
    """A header block split over HEADERS and CONTINUATION, and a padded DATA frame."""
    server = ServerConnection(max_body_bytes=1000)
    block = hpack.Encoder().encode(REQUEST_HEADERS)
    padded = bytes([3]) + b"body" + b"\x00" * 3
    data = frames.PREFACE
    data += frame(frames.HEADERS, 0, 1, block[:10])
    data += frame(frames.CONTINUATION, frames.FLAG_END_HEADERS, 1, block[10:])
    data += frame(frames.DATA, frames.FLAG_PADDED | frames.FLAG_END_STREAM, 1, padded)
    (request,) = server.receive(data)
    assert request.headers == REQUEST_HEADERS
    assert request.body == b"body"


def test_bytes_arriving_one_at_a_time() -> None:
    server = ServerConnection(max_body_bytes=1000)
    block = hpack.Encoder().encode(REQUEST_HEADERS)
    data = frames.PREFACE + frame(frames.HEADERS, frames.FLAG_END_HEADERS, 1, block)
    data += frame(frames.DATA, frames.FLAG_END_STREAM, 1, b"abc")
    requests: list[Request] = []
    for index in range(len(data)):
        requests += server.receive(data[index : index + 1])
    assert [r.body for r in requests] == [b"abc"]


def test_long_error_message_header_block_is_split_into_continuations() -> None:
    pair = Pair()
    stream_id = pair.send_request(b"x")
    pair.pump()
    long_block = encode_headers([(b":status", b"200"), (b"grpc-message", b"m" * 40_000)])
    pair.server.respond(stream_id, b"", b"", long_block)
    pair.pump()
    (response,) = pair.of(h2.events.ResponseReceived)
    assert ("grpc-message", "m" * 40_000) in response.headers


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", ErrorCode.PROTOCOL_ERROR),
        (frames.PREFACE + frame(frames.DATA, 0, 0, b"x"), ErrorCode.PROTOCOL_ERROR),
        (
            frames.PREFACE + frame(frames.HEADERS, frames.FLAG_END_HEADERS, 2, b"\x82"),
            ErrorCode.PROTOCOL_ERROR,
        ),
        (frames.PREFACE + frame(frames.PING, 0, 0, b"short"), ErrorCode.FRAME_SIZE_ERROR),
        (frames.PREFACE + frame(frames.CONTINUATION, 4, 1, b"\x82"), ErrorCode.PROTOCOL_ERROR),
        (
            frames.PREFACE + frame(frames.SETTINGS, 0, 0, b"\x00\x05\x00\x00\x00\x01"),
            ErrorCode.PROTOCOL_ERROR,
        ),
        (
            frames.PREFACE + frame(frames.WINDOW_UPDATE, 0, 0, b"\x00\x00\x00\x00"),
            ErrorCode.PROTOCOL_ERROR,
        ),
        (
            frames.PREFACE + frame(frames.HEADERS, frames.FLAG_END_HEADERS, 1, b"\xff\xff\xff\x7f"),
            ErrorCode.COMPRESSION_ERROR,
        ),
        (frames.PREFACE + b"\x10\x00\x01\x00\x00\x00\x00\x00\x01", ErrorCode.FRAME_SIZE_ERROR),
        (
            frames.PREFACE + frame(frames.PUSH_PROMISE, 4, 1, b"\x00\x00\x00\x02"),
            ErrorCode.PROTOCOL_ERROR,
        ),
        (
            frames.PREFACE + frame(frames.HEADERS, 5, 1, b"\x20" * (64 * 1024 + 1)),
            ErrorCode.ENHANCE_YOUR_CALM,
        ),
        (
            frames.PREFACE + frame(frames.WINDOW_UPDATE, 0, 7, b"\x00\x00\x00\x01"),
            ErrorCode.PROTOCOL_ERROR,
        ),
    ],
    ids=[
        "http1",
        "data-on-stream-0",
        "even-stream",
        "short-ping",
        "stray-continuation",
        "bad-max-frame-size",
        "zero-window-update",
        "bad-hpack",
        "frame-over-limit",
        "push-promise",
        "huge-headers-frame",
        "window-update-on-idle-stream",
    ],
)
def test_protocol_violations_end_the_connection_with_goaway(data: bytes, code: int) -> None:
    server = ServerConnection(max_body_bytes=1000, max_frame_size=1 << 20)
    with pytest.raises(ProtocolError) as info:
        server.receive(data)
    assert info.value.code == code
    client = h2_peer(client_side=True)
    events = client.receive_data(server.data_to_send())
    (terminated,) = [e for e in events if isinstance(e, h2.events.ConnectionTerminated)]
    assert terminated.error_code == code


def test_header_cache_follows_the_decoder_table() -> None:
    """Cached decoding agrees with a plain decoder over blocks that grow and evict the table."""
    rng = random.Random(2)
    encoder = hpack.Encoder()
    encoder.header_table_size = 256  # small: entries get evicted
    reference = hpack.Decoder()
    reference.header_table_size = 256
    server = ServerConnection(max_body_bytes=1000)
    server._decoder.header_table_size = 256
    values = [f"value-{i}" for i in range(12)]
    for _ in range(400):
        headers = [(":path", "/p"), ("x-a", rng.choice(values)), ("x-b", rng.choice(values[:3]))]
        block = encoder.encode(headers)
        assert server._decode(block) == reference.decode(block) == headers


# -- the client end against an h2 server ------------------------------------------------------


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
    (response,) = client.receive(frame(frames.DATA, 0, stream_id, b"early"))
    assert response.stream_id == stream_id
    assert response.reset == ErrorCode.STREAM_CLOSED
    reset = frame(frames.RST_STREAM, 0, stream_id, ErrorCode.STREAM_CLOSED.to_bytes(4, "big"))
    assert reset in client.data_to_send()
    assert client.open_streams == 0


def test_header_cache_survives_evicting_the_front_entry() -> None:
    """Blocks that replace the whole table, then a cached indexed block: still decoded right.

    Each round's block adds two headers over half the 4 KiB table, so the second evicts the
    first and everything before it. A cache that compared only the front entry's id() could
    meet the same address again (the old entry freed, a new one allocated there) and answer
    a stale value for the indexed block ``\\xbe`` (dynamic entry 1).
    """

    def string(value: bytes) -> bytes:
        return frames._encode_integer(len(value), 7, 0) + value

    def indexed_literal(name: bytes, value: bytes) -> bytes:  # literal, incremental indexing
        return b"\x40" + string(name) + string(value)

    prefix = b"\x83\x86" + b"\x04" + string(b"/inference.GRPCInferenceService/ServerLive")
    server = ServerConnection(max_body_bytes=100)
    reference = hpack.Decoder()
    server.receive(frames.PREFACE)
    blocks = [prefix + indexed_literal(b"authorization", b"Bearer " + b"a" * 2500)]
    blocks.append(prefix + b"\xbe")
    for token in b"bcdef":
        big = [b"Bearer " + bytes([token]) * 2500, b"Bearer " + bytes([token - 32]) * 2500]
        blocks.append(prefix + b"".join(indexed_literal(b"authorization", v) for v in big))
        blocks.append(prefix + b"\xbe")
    for block in blocks:
        assert server._decode(block) == reference.decode(block)


def test_stream_error_after_the_request_reports_the_stream() -> None:
    """DATA after END_STREAM resets the stream and lists it, so its call gets cancelled."""
    server = ServerConnection(max_body_bytes=100)
    block = hpack.Encoder().encode(REQUEST_HEADERS)
    data = frames.PREFACE + frame(frames.HEADERS, frames.FLAG_END_HEADERS, 1, block)
    data += frame(frames.DATA, frames.FLAG_END_STREAM, 1, b"x")
    assert len(server.receive(data)) == 1
    assert server.open_streams == 1
    assert server.receive(frame(frames.DATA, 0, 1, b"more")) == []
    assert server.reset == [1]
    assert server.open_streams == 0


def test_headers_on_a_closed_stream_are_ignored() -> None:
    """A client may still send on a stream the server answered early: no connection error."""
    server = ServerConnection(max_body_bytes=100)
    encoder = hpack.Encoder()
    data = frames.PREFACE + frame(
        frames.HEADERS, frames.FLAG_END_HEADERS, 1, encoder.encode(REQUEST_HEADERS)
    )
    server.receive(data)
    server.respond(1, b"", b"", FAILED)  # answered before the request ended
    server.data_to_send()
    late = encoder.encode([("grpc-trailer", "x")])
    assert server.receive(frame(frames.HEADERS, 5, 1, late)) == []
    block = encoder.encode(REQUEST_HEADERS)
    (request,) = server.receive(frame(frames.HEADERS, 5, 3, block))
    assert request.stream_id == 3


def test_larger_initial_window_overflowing_a_stream_is_a_connection_error() -> None:
    pair = Pair()
    stream_id = pair.send_request(b"x")
    pair.pump()
    window_update = frame(frames.WINDOW_UPDATE, 0, stream_id, (2**31 - 65_536).to_bytes(4, "big"))
    pair.server.receive(window_update)  # the stream's window is now 2^31-1
    settings = frame(frames.SETTINGS, 0, 0, b"\x00\x04" + (100_000).to_bytes(4, "big"))
    with pytest.raises(ProtocolError) as info:
        pair.server.receive(settings)
    assert info.value.code == ErrorCode.FLOW_CONTROL_ERROR


def test_data_over_the_connection_window_is_a_connection_error() -> None:
    server = ServerConnection(max_body_bytes=1 << 30, connection_window=65_535)
    encoder = hpack.Encoder()
    data = frames.PREFACE
    for stream_id in (1, 3):
        data += frame(
            frames.HEADERS, frames.FLAG_END_HEADERS, stream_id, encoder.encode(REQUEST_HEADERS)
        )
    server.receive(data)
    with pytest.raises(ProtocolError) as info:
        server.receive(
            frame(frames.DATA, 0, 1, b"a" * 40_000) + frame(frames.DATA, 0, 3, b"a" * 40_000)
        )
    assert info.value.code == ErrorCode.FLOW_CONTROL_ERROR
