"""The gRPC server's HTTP/2 connection (h2 plus Shipyard's policy), in memory.

An ``h2`` client talks to :class:`ServerConnection`: bytes from one are fed to the other, so
every frame the server writes is parsed by an independent implementation. What no client
library sends (floods, violations) is built frame by frame. Time is a fake clock.
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

from shipyard.protocol.grpc_wire import frame_message
from shipyard.protocol.http2 import (
    PREFACE,
    ConnectionLimits,
    DataReceived,
    ErrorCode,
    Received,
    Request,
    ServerConnection,
    ServerEndpoint,
    frame,
)
from shipyard.protocol.http2 import frames as f

INFER = "/inference.GRPCInferenceService/ModelInfer"
REQUEST_HEADERS = [
    (":method", "POST"),
    (":scheme", "http"),
    (":path", INFER),
    (":authority", "127.0.0.1:8001"),
    ("content-type", "application/grpc"),
    ("te", "trailers"),
]
RESPONSE = (
    hpack.NeverIndexedHeaderTuple(b":status", b"200"),
    hpack.NeverIndexedHeaderTuple(b"content-type", b"application/grpc"),
)
OK = (hpack.NeverIndexedHeaderTuple(b"grpc-status", b"0"),)
FAILED = (
    hpack.NeverIndexedHeaderTuple(b":status", b"200"),
    hpack.NeverIndexedHeaderTuple(b"grpc-status", b"8"),
)
SETTINGS = frame(f.SETTINGS, 0, 0)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def h2_client(**settings: int) -> h2.connection.H2Connection:
    config = h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
    client = h2.connection.H2Connection(config=config)
    if settings:
        values = {getattr(h2.settings.SettingCodes, k.upper()): v for k, v in settings.items()}
        client.local_settings = h2.settings.Settings(client=True, initial_values=values)
    client.initiate_connection()
    return client


def server(**limits: Any) -> tuple[ServerConnection, Clock]:
    clock = Clock()
    return ServerConnection(ConnectionLimits(**limits), clock=clock), clock


class Pair:
    """An ``h2`` client and a server connection, wired back to back."""

    def __init__(self, client_settings: dict[str, int] | None = None, **limits: Any) -> None:
        self.server, self.clock = server(**limits)
        self.client = h2_client(**(client_settings or {}))
        self.requests: list[Request] = []
        self.received = Received()
        self.events: list[Any] = []

    def pump(self, start: bool = True) -> None:
        """Move bytes both ways until neither side has anything to say."""
        for _ in range(1000):
            out = self.client.data_to_send()
            if out:
                got = self.server.receive(out)
                self.received.cancelled += got.cancelled
                self.received.oversized += got.oversized
            if start:
                self.requests += self.server.take_ready()
            back = self.server.data_to_send()
            if back:
                self.events += self.client.receive_data(back)
            if not out and not back:
                return
        raise AssertionError("the two ends kept talking")

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    def call(self, body: bytes, end: bool = True) -> int:
        stream_id: int = self.client.get_next_available_stream_id()
        self.client.send_headers(stream_id, REQUEST_HEADERS)
        self.client.send_data(stream_id, body, end_stream=end)
        return stream_id

    def answer(self, stream_id: int, body: bytes = b"answer") -> None:
        self.server.respond(stream_id, RESPONSE, body, OK)
        self.server.call_done(stream_id)


def raw_request(stream_id: int, body: bytes, encoder: hpack.Encoder) -> bytes:
    """HEADERS and DATA(END_STREAM) of one call, as frames."""
    block = encoder.encode(REQUEST_HEADERS)
    return frame(f.HEADERS, f.FLAG_END_HEADERS, stream_id, block) + frame(
        f.DATA, f.FLAG_END_STREAM, stream_id, body
    )


def rst(stream_id: int, code: int = ErrorCode.CANCEL) -> bytes:
    return frame(f.RST_STREAM, 0, stream_id, code.to_bytes(4, "big"))


def goaway_of(data: bytes) -> h2.events.ConnectionTerminated:
    """The GOAWAY in what the server wrote, as an h2 client reads it."""
    client = h2_client()
    events = client.receive_data(data)
    (terminated,) = [e for e in events if isinstance(e, h2.events.ConnectionTerminated)]
    return terminated


# -- calls ------------------------------------------------------------------------------------


def test_request_and_answer_round_trip() -> None:
    """A call's headers and message reach the transport; the answer reaches an h2 client."""
    pair = Pair()
    body = frame_message(b"abc")
    stream_id = pair.call(body)
    pair.pump()
    (request,) = pair.requests
    assert request.stream_id == stream_id
    assert [(k.decode(), v.decode()) for k, v in request.headers] == REQUEST_HEADERS
    assert request.body == body
    pair.answer(stream_id)
    pair.pump()
    (response,) = pair.of(h2.events.ResponseReceived)
    assert response.headers == [(":status", "200"), ("content-type", "application/grpc")]
    assert b"".join(e.data for e in pair.of(h2.events.DataReceived)) == b"answer"
    (trailers,) = pair.of(h2.events.TrailersReceived)
    assert trailers.headers == [("grpc-status", "0")]
    assert pair.server.open_streams == 0
    assert pair.server.running == 0


def test_trailers_only_answer() -> None:
    """An answer without headers or body is one header block that ends the stream."""
    pair = Pair()
    stream_id = pair.call(frame_message(b""))
    pair.pump()
    pair.server.respond(stream_id, None, b"", FAILED)
    pair.pump()
    (response,) = pair.of(h2.events.ResponseReceived)
    assert ("grpc-status", "8") in response.headers
    assert len(pair.of(h2.events.StreamEnded)) == 1


def test_settings_advertise_the_limits() -> None:
    """SETTINGS carries the stream limit, stream window, frame and header list sizes."""
    pair = Pair(max_concurrent_streams=7, max_header_list_bytes=4096, max_frame_bytes=1 << 20)
    pair.pump()
    (changed,) = pair.of(h2.events.RemoteSettingsChanged)
    settings = {k: v.new_value for k, v in changed.changed_settings.items()}
    codes = h2.settings.SettingCodes
    assert settings[codes.MAX_CONCURRENT_STREAMS] == 7
    assert settings[codes.INITIAL_WINDOW_SIZE] == 65_535
    assert settings[codes.MAX_FRAME_SIZE] == 1 << 20
    assert settings[codes.MAX_HEADER_LIST_SIZE] == 4096
    assert pair.of(h2.events.SettingsAcknowledged)
    assert pair.server.handshake_done


def test_ping_is_answered() -> None:
    """A client's PING gets its ACK with the same data."""
    pair = Pair()
    pair.client.ping(b"shipyard")
    pair.pump()
    (ack,) = pair.of(h2.events.PingAckReceived)
    assert ack.ping_data == b"shipyard"


def test_large_request_gets_window_for_its_declared_length() -> None:
    """A 10 MB message passes a 64 KiB stream window: the server grants the declared rest."""
    pair = Pair()
    pair.pump()
    stream_id = pair.client.get_next_available_stream_id()
    pair.client.send_headers(stream_id, REQUEST_HEADERS)
    body = frame_message(random.Random(1).randbytes(10_000_000))
    sent = 0
    for _ in range(2000):
        window = pair.client.local_flow_control_window(stream_id)
        size = min(window, pair.client.max_outbound_frame_size, len(body) - sent)
        if size:
            pair.client.send_data(
                stream_id, body[sent : sent + size], end_stream=sent + size == len(body)
            )
            sent += size
        pair.pump()
        if sent == len(body):
            break
    (request,) = pair.requests
    assert request.body == body


def test_large_answer_waits_for_the_clients_window() -> None:
    """The server never sends past the client's window; WINDOW_UPDATE releases the rest."""
    pair = Pair()
    stream_id = pair.call(frame_message(b"x"))
    pair.pump()
    body = random.Random(0).randbytes(300_000)
    pair.answer(stream_id, body)
    pair.pump()
    received = b"".join(e.data for e in pair.of(h2.events.DataReceived))
    assert len(received) == 65_535  # h2's default windows, connection and stream
    assert pair.server.unsent_bytes == 300_000 - 65_535
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
    assert pair.server.unsent_bytes == 0


def test_larger_initial_window_from_settings_releases_blocked_data() -> None:
    """A client that raises SETTINGS_INITIAL_WINDOW_SIZE gets the waiting answer."""
    pair = Pair()
    stream_id = pair.call(frame_message(b"x"))
    pair.pump()
    pair.answer(stream_id, b"y" * 100_000)
    pair.pump()
    pair.client.increment_flow_control_window(1 << 20)  # the connection window
    pair.client.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1 << 20})
    pair.pump()
    assert b"".join(e.data for e in pair.of(h2.events.DataReceived)) == b"y" * 100_000
    assert pair.of(h2.events.TrailersReceived)


def test_long_header_block_is_split_into_continuations() -> None:
    """An answer block over the client's frame size goes out as HEADERS + CONTINUATION."""
    pair = Pair()
    stream_id = pair.call(frame_message(b"x"))
    pair.pump()
    trailers = (*FAILED, hpack.NeverIndexedHeaderTuple(b"grpc-message", b"m" * 40_000))
    pair.server.respond(stream_id, None, b"", trailers)
    pair.pump()
    (response,) = pair.of(h2.events.ResponseReceived)
    assert ("grpc-message", "m" * 40_000) in response.headers


def test_answers_follow_a_smaller_hpack_table() -> None:
    """A client that shrinks its HPACK table (SETTINGS_HEADER_TABLE_SIZE 0) is sent the size
    update RFC 7541 4.2 asks for, once, and decodes every answer."""
    pair = Pair({"header_table_size": 0})
    first = pair.call(frame_message(b"x"))
    second = pair.call(frame_message(b"y"))
    pair.pump()
    pair.answer(first)
    pair.answer(second)
    pair.pump()  # h2's decoder refuses a block without the update once it acknowledged 0
    assert len(pair.of(h2.events.TrailersReceived)) == 2
    assert pair.client.decoder.header_table_size == 0


def test_continuation_and_padding_are_understood() -> None:
    """A header block split over HEADERS and CONTINUATION, and a padded DATA frame."""
    conn, _ = server()
    block = hpack.Encoder().encode(REQUEST_HEADERS)
    padded = bytes([3]) + b"body" + b"\x00" * 3
    data = PREFACE + SETTINGS
    data += frame(f.HEADERS, 0, 1, block[:10])
    data += frame(f.CONTINUATION, f.FLAG_END_HEADERS, 1, block[10:])
    data += frame(f.DATA, f.FLAG_PADDED | f.FLAG_END_STREAM, 1, padded)
    conn.receive(data)
    (request,) = conn.take_ready()
    assert request.body == b"body"
    assert conn.closed is None


def test_bytes_arriving_one_at_a_time() -> None:
    """Frames split at every byte still make one request."""
    conn, _ = server()
    data = PREFACE + SETTINGS + raw_request(1, b"abc", hpack.Encoder())
    for index in range(len(data)):
        conn.receive(data[index : index + 1])
    assert [r.body for r in conn.take_ready()] == [b"abc"]


# -- order, resets and the running limit ------------------------------------------------------


def test_call_reset_in_the_same_read_never_starts() -> None:
    """Rapid reset: HEADERS, DATA(END_STREAM), RST_STREAM in one read hand out nothing."""
    conn, _ = server()
    encoder = hpack.Encoder()
    data = PREFACE + SETTINGS
    for stream_id in range(1, 40, 2):
        data += raw_request(stream_id, frame_message(b"x"), encoder) + rst(stream_id)
    received = conn.receive(data)
    assert conn.take_ready() == []
    assert received.cancelled == []
    assert conn.open_streams == 0
    assert conn.closed is None


def test_reset_of_a_running_call_is_reported_and_its_answer_dropped() -> None:
    """A reset after the call started cancels it; a later answer sends nothing."""
    pair = Pair()
    stream_id = pair.call(frame_message(b"x"))
    pair.pump()
    assert [r.stream_id for r in pair.requests] == [stream_id]
    pair.client.reset_stream(stream_id, ErrorCode.CANCEL)
    pair.pump()
    assert pair.received.cancelled == [stream_id]
    assert pair.server.running == 1  # until the transport reports the call done
    pair.server.respond(stream_id, RESPONSE, b"late", OK)
    assert b"late" not in pair.server.data_to_send()
    pair.server.call_done(stream_id)
    assert pair.server.running == 0


def test_streams_over_the_limit_are_refused_and_counted() -> None:
    """A stream over max_concurrent_streams gets REFUSED_STREAM; the connection lives on."""
    conn, _ = server(max_concurrent_streams=2)
    encoder = hpack.Encoder()
    data = PREFACE + SETTINGS
    for stream_id in (1, 3, 5):  # headers only: each stream stays open
        block = encoder.encode(REQUEST_HEADERS)
        data += frame(f.HEADERS, f.FLAG_END_HEADERS, stream_id, block)
    conn.receive(data)
    assert rst(5, ErrorCode.REFUSED_STREAM) in conn.data_to_send()
    assert conn.open_streams == 2
    assert conn.closed is None


def test_running_calls_are_bounded_when_resets_free_their_streams() -> None:
    """Reset running calls keep their place until done: the next request waits for it."""
    conn, _ = server(max_concurrent_streams=2)
    encoder = hpack.Encoder()
    conn.receive(PREFACE + SETTINGS + raw_request(1, b"a", encoder) + raw_request(3, b"b", encoder))
    assert [r.stream_id for r in conn.take_ready()] == [1, 3]
    received = conn.receive(rst(1) + rst(3) + raw_request(5, b"c", encoder))
    assert received.cancelled == [1, 3]
    assert conn.take_ready() == []  # two cancelled calls still run
    assert conn.queued_calls == 1
    conn.call_done(1)
    assert [r.stream_id for r in conn.take_ready()] == [5]


def test_reset_budget_ends_the_connection_with_enhance_your_calm() -> None:
    """Past max_resets resets in the window: GOAWAY(ENHANCE_YOUR_CALM), nothing more runs."""
    conn, _ = server(max_resets=10)
    encoder = hpack.Encoder()
    data = PREFACE + SETTINGS
    for stream_id in range(1, 60, 2):
        data += raw_request(stream_id, frame_message(b"x"), encoder) + rst(stream_id)
    conn.receive(data)
    assert conn.take_ready() == []
    assert conn.closed is not None
    assert conn.closed.code == ErrorCode.ENHANCE_YOUR_CALM
    assert "grpc_max_resets" in conn.closed.message
    assert goaway_of(conn.data_to_send()).error_code == ErrorCode.ENHANCE_YOUR_CALM


def test_reset_budget_refills_with_time() -> None:
    """Resets spread over time stay within the budget."""
    conn, clock = server(max_resets=10, flood_window_s=10.0)
    encoder = hpack.Encoder()
    conn.receive(PREFACE + SETTINGS)
    for stream_id in range(1, 100, 2):
        conn.receive(raw_request(stream_id, b"x", encoder) + rst(stream_id))
        clock.now += 1.0  # one reset a second: the budget's rate
    assert conn.closed is None


def test_refused_streams_count_against_the_reset_budget() -> None:
    """Opening streams over the limit again and again ends the connection."""
    conn, _ = server(max_concurrent_streams=1, max_resets=5)
    encoder = hpack.Encoder()
    data = PREFACE + SETTINGS
    for stream_id in range(1, 30, 2):
        data += frame(f.HEADERS, f.FLAG_END_HEADERS, stream_id, encoder.encode(REQUEST_HEADERS))
    conn.receive(data)
    assert conn.closed is not None
    assert conn.closed.code == ErrorCode.ENHANCE_YOUR_CALM


# -- flow control ----------------------------------------------------------------------------


def test_oversized_message_is_reported_and_answered_early() -> None:
    """A prefix declaring more than max_message_bytes: reported, dropped, stream reset after."""
    pair = Pair(max_message_bytes=100)
    pair.pump()
    stream_id = pair.call(frame_message(b"z" * 300)[:50], end=False)
    pair.pump()
    assert pair.received.oversized == [stream_id]
    pair.server.respond(stream_id, None, b"", FAILED)  # what the transport does at once
    pair.pump()
    assert pair.of(h2.events.StreamEnded)
    (reset,) = pair.of(h2.events.StreamReset)
    assert reset.error_code == ErrorCode.NO_ERROR
    assert pair.server.open_streams == 0
    assert pair.server.buffered_bytes == 0


def test_answers_over_the_unsent_budget_hold_new_calls_and_their_window() -> None:
    """A client that does not read stops the server: no new call starts, its bytes are held."""
    pair = Pair({"initial_window_size": 0}, max_unsent_bytes=1000)
    first = pair.call(frame_message(b"a"))
    pair.pump()
    pair.answer(first, b"y" * 5000)  # nothing can be sent: the client's window is 0
    second = pair.call(frame_message(b"b" * 500))
    pair.pump()
    assert pair.server.unsent_bytes == 5000
    assert [r.stream_id for r in pair.requests] == [first]
    assert pair.server.queued_calls == 1
    assert pair.server.buffered_bytes == 505  # not given back: not consumed
    pair.client.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 65_535})
    pair.pump()
    assert [r.stream_id for r in pair.requests] == [first, second]
    assert pair.server.buffered_bytes == 0


def test_reserve_is_granted_in_arrival_order() -> None:
    """Two large messages and a reserve for one: the second gets window when the first is in."""
    pair = Pair(max_message_bytes=200_000)
    pair.pump()
    bodies = [frame_message(bytes([n]) * 180_000) for n in (1, 2)]
    ids = []
    for body in bodies:
        stream_id = pair.client.get_next_available_stream_id()
        pair.client.send_headers(stream_id, REQUEST_HEADERS)
        pair.client.send_data(stream_id, body[:16_000])
        ids.append(stream_id)
    pair.pump()
    windows = [pair.client.local_flow_control_window(s) for s in ids]
    assert windows[0] >= 180_005 - 16_000  # granted its declared rest
    assert windows[1] == 65_535 - 16_000  # waits for the reserve
    sent = [16_000, 16_000]
    for _ in range(200):
        for index, stream_id in enumerate(ids):
            body = bodies[index]
            size = min(
                pair.client.local_flow_control_window(stream_id),
                pair.client.max_outbound_frame_size,
                len(body) - sent[index],
            )
            if size > 0:
                end = sent[index] + size == len(body)
                pair.client.send_data(stream_id, body[sent[index] : sent[index] + size], end)
                sent[index] += size
        pair.pump()
        if len(pair.requests) == 2:
            break
    assert [r.body for r in pair.requests] == bodies


# -- violations -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", ErrorCode.PROTOCOL_ERROR),
        (PREFACE + frame(f.PING, 0, 0, b"12345678"), ErrorCode.PROTOCOL_ERROR),
        (PREFACE + SETTINGS + frame(f.DATA, 0, 0, b"x"), ErrorCode.PROTOCOL_ERROR),
        (
            PREFACE + SETTINGS + frame(f.HEADERS, f.FLAG_END_HEADERS, 2, b"\x82"),
            ErrorCode.PROTOCOL_ERROR,
        ),
        (PREFACE + SETTINGS + frame(f.PING, 0, 0, b"short"), ErrorCode.FRAME_SIZE_ERROR),
        (PREFACE + SETTINGS + frame(f.CONTINUATION, 4, 1, b"\x82"), ErrorCode.PROTOCOL_ERROR),
        (
            PREFACE + frame(f.SETTINGS, 0, 0, b"\x00\x05\x00\x00\x00\x01"),
            ErrorCode.PROTOCOL_ERROR,
        ),
        (
            PREFACE + SETTINGS + frame(f.WINDOW_UPDATE, 0, 0, b"\x00\x00\x00\x00"),
            ErrorCode.PROTOCOL_ERROR,
        ),
        (  # an index far past the HPACK tables: RFC 7541's COMPRESSION_ERROR
            PREFACE + SETTINGS + frame(f.HEADERS, 5, 1, b"\xff\xff\xff\x7f"),
            ErrorCode.COMPRESSION_ERROR,
        ),
        (PREFACE + SETTINGS + b"\x20\x00\x01\x00\x00\x00\x00\x00\x01", ErrorCode.FRAME_SIZE_ERROR),
        (
            PREFACE + SETTINGS + frame(f.PUSH_PROMISE, 4, 1, b"\x00\x00\x00\x02"),
            ErrorCode.PROTOCOL_ERROR,
        ),
        (
            PREFACE + SETTINGS + frame(f.HEADERS, 5, 1, b"\x20" * (16 * 1024 + 1)),
            ErrorCode.ENHANCE_YOUR_CALM,
        ),
        (
            PREFACE + SETTINGS + frame(f.WINDOW_UPDATE, 0, 7, b"\x00\x00\x00\x01"),
            ErrorCode.PROTOCOL_ERROR,
        ),
    ],
    ids=[
        "http1",
        "first-frame-not-settings",
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
    """Each violation closes the connection with the RFC's error code, read by an h2 client."""
    conn, _ = server()
    conn.receive(data)
    assert conn.closed is not None
    assert conn.closed.code == code
    assert goaway_of(conn.data_to_send()).error_code == code
    assert conn.take_ready() == []


def test_http1_gets_a_hint() -> None:
    """HTTP/1.1 on the gRPC port is told that gRPC needs HTTP/2 with prior knowledge."""
    conn, _ = server()
    conn.receive(b"POST / HTTP/1.1\r\n")
    assert b"prior knowledge" in (goaway_of(conn.data_to_send()).additional_data or b"")


@pytest.mark.parametrize(
    "headers",
    [
        [*REQUEST_HEADERS, ("X-Upper", "a")],
        [*REQUEST_HEADERS, ("connection", "keep-alive")],
        [*REQUEST_HEADERS[1:]],  # no :method
        [("content-type", "application/grpc"), *REQUEST_HEADERS],  # pseudo-header after
        [*REQUEST_HEADERS, (":path", "/again")],
        [*REQUEST_HEADERS, ("te", "gzip")],
        [*REQUEST_HEADERS, ("x-bad", "a\r\nb")],
    ],
    ids=["uppercase", "connection", "no-method", "pseudo-last", "two-paths", "te-gzip", "crlf"],
)
def test_malformed_request_headers_are_refused(headers: list[tuple[str, str]]) -> None:
    """RFC 9113 8.2 header rules are enforced: the request never starts, its stream is reset
    PROTOCOL_ERROR (a stream error, RFC 9113 8.1.1), and the connection serves the next call."""
    conn, _ = server()
    encoder = hpack.Encoder()
    block = encoder.encode(headers)
    data = PREFACE + SETTINGS + frame(f.HEADERS, 4, 1, block)
    received = conn.receive(data + frame(f.DATA, f.FLAG_END_STREAM, 1, frame_message(b"x")))
    assert conn.take_ready() == []
    assert received.cancelled == []
    assert rst(1, ErrorCode.PROTOCOL_ERROR) in conn.data_to_send()
    assert conn.closed is None
    conn.receive(raw_request(3, frame_message(b"y"), encoder))
    assert [r.stream_id for r in conn.take_ready()] == [3]


def test_malformed_requests_count_against_the_reset_budget() -> None:
    """Malformed requests again and again end the connection like resets do."""
    conn, _ = server(max_resets=10)
    encoder = hpack.Encoder()
    data = PREFACE + SETTINGS
    for stream_id in range(1, 60, 2):
        block = encoder.encode([*REQUEST_HEADERS, ("connection", "close")])
        data += frame(f.HEADERS, 5, stream_id, block)
    conn.receive(data)
    assert conn.take_ready() == []
    assert conn.closed is not None
    assert conn.closed.code == ErrorCode.ENHANCE_YOUR_CALM
    assert "grpc_max_resets" in conn.closed.message


@pytest.mark.parametrize(
    "trailers",
    [[("grpc-x", "1"), (":path", "/p")], [("Grpc-X", "1")], [("connection", "close")]],
    ids=["pseudo-header", "uppercase", "connection"],
)
def test_malformed_trailers_reset_the_stream(trailers: list[tuple[str, str]]) -> None:
    """Trailers with a pseudo-header or a bad field: the stream is reset, nothing starts."""
    conn, _ = server()
    encoder = hpack.Encoder()
    block = encoder.encode(REQUEST_HEADERS)
    data = PREFACE + SETTINGS + frame(f.HEADERS, 4, 1, block) + frame(f.DATA, 0, 1, b"x")
    conn.receive(data + frame(f.HEADERS, 5, 1, encoder.encode(trailers)))
    assert conn.take_ready() == []
    assert rst(1, ErrorCode.PROTOCOL_ERROR) in conn.data_to_send()
    assert conn.closed is None


def test_trailers_end_a_request() -> None:
    """A request that ends with trailers instead of END_STREAM on its data starts."""
    conn, _ = server()
    encoder = hpack.Encoder()
    block = encoder.encode(REQUEST_HEADERS)
    data = PREFACE + SETTINGS + frame(f.HEADERS, 4, 1, block) + frame(f.DATA, 0, 1, b"body")
    conn.receive(data + frame(f.HEADERS, 5, 1, encoder.encode([("x-trailer", "t")])))
    assert [r.body for r in conn.take_ready()] == [b"body"]


def test_content_length_must_match_the_data() -> None:
    """A content-length the DATA does not add up to makes the request malformed."""
    conn, _ = server()
    encoder = hpack.Encoder()
    data = PREFACE + SETTINGS
    for stream_id, length in ((1, "3"), (3, "9"), (5, "4")):
        block = encoder.encode([*REQUEST_HEADERS, ("content-length", length)])
        data += frame(f.HEADERS, 4, stream_id, block) + frame(f.DATA, 1, stream_id, b"body")
    conn.receive(data)
    assert [r.stream_id for r in conn.take_ready()] == [5]
    out = conn.data_to_send()
    assert rst(1, ErrorCode.PROTOCOL_ERROR) in out
    assert rst(3, ErrorCode.PROTOCOL_ERROR) in out


def test_continuation_flood_is_cut() -> None:
    """Empty CONTINUATION frames past the limit: GOAWAY(ENHANCE_YOUR_CALM) before h2 buffers."""
    conn, _ = server(max_continuation_frames=8)
    data = PREFACE + SETTINGS + frame(f.HEADERS, 0, 1, b"\x82")
    data += frame(f.CONTINUATION, 0, 1, b"") * 1000
    conn.receive(data)
    assert conn.closed is not None
    assert conn.closed.code == ErrorCode.ENHANCE_YOUR_CALM
    assert "CONTINUATION" in conn.closed.message


def test_header_block_over_the_limit_across_continuations_is_cut() -> None:
    """A header block whose CONTINUATIONs add up past max_header_list_bytes is refused."""
    conn, _ = server(max_header_list_bytes=4096)
    data = PREFACE + SETTINGS + frame(f.HEADERS, 0, 1, b"\x82" * 2000)
    data += frame(f.CONTINUATION, 0, 1, b"\x82" * 2000) * 2
    conn.receive(data)
    assert conn.closed is not None
    assert conn.closed.code == ErrorCode.ENHANCE_YOUR_CALM


def test_hpack_bomb_is_refused() -> None:
    """A small block naming a large table entry many times decodes past the list limit."""
    conn, _ = server(max_header_list_bytes=16 * 1024)
    encoder = hpack.Encoder()
    first = encoder.encode([*REQUEST_HEADERS, ("x-bomb", "b" * 3000)])
    bomb = encoder.encode([*REQUEST_HEADERS, *[("x-bomb", "b" * 3000)] * 100])
    assert len(bomb) < 1000  # 100 indexed references: a few hundred bytes
    data = PREFACE + SETTINGS + frame(f.HEADERS, 5, 1, first) + frame(f.HEADERS, 5, 3, bomb)
    conn.receive(data)
    assert conn.closed is not None
    assert conn.closed.code == ErrorCode.ENHANCE_YOUR_CALM
    assert [r.stream_id for r in conn.take_ready()] == []


@pytest.mark.parametrize(
    ("make", "setting"),
    [
        (lambda n: frame(f.PING, 0, 0, n.to_bytes(8, "big")), "grpc_max_pings"),
        (lambda n: frame(f.SETTINGS, 0, 0), "grpc_max_settings"),
    ],
    ids=["ping", "settings"],
)
def test_floods_end_the_connection_and_are_cut_short(make: Any, setting: str) -> None:
    """Past the budget, GOAWAY(ENHANCE_YOUR_CALM); frames after the limit are not answered."""
    conn, _ = server(max_pings=20, max_settings=20)
    conn.receive(PREFACE + SETTINGS)
    conn.data_to_send()
    conn.receive(b"".join(make(n) for n in range(5000)))
    assert conn.closed is not None
    assert conn.closed.code == ErrorCode.ENHANCE_YOUR_CALM
    assert setting in conn.closed.message
    out = conn.data_to_send()
    assert out.count(b"\x06\x01\x00\x00\x00\x00") + out.count(b"\x04\x01\x00\x00\x00\x00") <= 20


# -- graceful GOAWAY --------------------------------------------------------------------------


def test_goaway_refuses_new_streams_and_answers_open_ones() -> None:
    """After the server's GOAWAY, a call in flight is answered and a new one refused."""
    conn, _ = server()
    encoder = hpack.Encoder()
    conn.receive(PREFACE + SETTINGS + raw_request(1, b"a", encoder))
    (request,) = conn.take_ready()
    conn.goaway()
    assert not conn.finished
    conn.receive(raw_request(3, b"b", encoder))
    assert conn.take_ready() == []
    out = conn.data_to_send()
    assert rst(3, ErrorCode.REFUSED_STREAM) in out
    conn.respond(request.stream_id, RESPONSE, b"answer", OK)
    conn.call_done(request.stream_id)
    assert conn.finished
    assert conn.closed is None
    assert b"answer" in conn.data_to_send()


# -- timers -----------------------------------------------------------------------------------


def test_handshake_timeout_closes_a_silent_connection() -> None:
    """No preface within the handshake timeout: closed, GOAWAY sent."""
    conn, clock = server(handshake_timeout_s=5.0)
    conn.receive(PREFACE[:10])
    assert conn.next_deadline() == clock.now + 5.0
    clock.now += 4.9
    conn.check_timers()
    assert conn.closed is None
    clock.now += 0.2
    conn.check_timers()
    assert conn.closed is not None
    assert "grpc_handshake_timeout_s" in conn.closed.message


def test_preface_without_settings_is_not_a_handshake() -> None:
    """The preface alone does not complete the handshake."""
    conn, clock = server(handshake_timeout_s=5.0)
    conn.receive(PREFACE)
    clock.now += 6
    conn.check_timers()
    assert conn.closed is not None


def test_idle_timeout_closes_a_connection_without_streams() -> None:
    """No open stream and no running call for idle_timeout_s: GOAWAY and close."""
    pair = Pair(idle_timeout_s=30.0, keepalive_interval_s=0)
    stream_id = pair.call(frame_message(b"x"))
    pair.pump()
    pair.clock.now += 100  # a running call is not idle
    pair.server.check_timers()
    assert pair.server.closed is None
    pair.answer(stream_id)
    pair.pump()
    assert pair.server.next_deadline() == pair.clock.now + 30.0
    pair.clock.now += 30
    pair.server.check_timers()
    assert pair.server.closed is not None
    assert "grpc_idle_timeout_s" in pair.server.closed.message


def test_keepalive_pings_a_silent_client_and_closes_without_an_ack() -> None:
    """After keepalive_interval_s of silence a PING goes out; no ACK in time closes."""
    pair = Pair(keepalive_interval_s=60.0, keepalive_timeout_s=20.0, idle_timeout_s=0)
    pair.pump()
    pair.clock.now += 60
    pair.server.check_timers()
    pair.pump()  # the h2 client acknowledges
    assert pair.of(h2.events.PingReceived)
    pair.clock.now += 21
    pair.server.check_timers()
    assert pair.server.closed is None
    pair.clock.now += 60
    pair.server.check_timers()  # a second PING, left unanswered
    assert pair.server.data_to_send()
    pair.clock.now += 20
    pair.server.check_timers()
    assert pair.server.closed is not None
    assert "grpc_keepalive_timeout_s" in pair.server.closed.message


def test_partial_frame_held_open_is_closed_by_keepalive() -> None:
    """A client stopped inside a frame cannot acknowledge a PING: closed after the timeout."""
    conn, clock = server(keepalive_interval_s=10.0, keepalive_timeout_s=5.0, idle_timeout_s=0)
    conn.receive(PREFACE + SETTINGS + frame(f.DATA, 0, 1, b"x" * 100)[:50])
    clock.now += 10
    conn.check_timers()
    clock.now += 5
    conn.check_timers()
    assert conn.closed is not None


def test_late_data_after_an_early_answer_is_dropped_quietly() -> None:
    """Data the client sent before it saw the early answer's reset does not end the connection."""
    pair = Pair(max_message_bytes=100)
    stream_id = pair.call(frame_message(b"z" * 300)[:50], end=False)
    pair.pump()
    pair.server.respond(stream_id, None, b"", FAILED)
    pair.pump()
    pair.server.receive(frame(f.DATA, f.FLAG_END_STREAM, stream_id, b"late"))
    assert pair.server.closed is None


def test_trailers_on_a_stream_answered_early_are_ignored() -> None:
    """A client may still send on a stream the server answered early: no connection error."""
    conn, _ = server(max_message_bytes=10)
    encoder = hpack.Encoder()
    block = encoder.encode(REQUEST_HEADERS)
    received = conn.receive(
        PREFACE + SETTINGS + frame(f.HEADERS, 4, 1, block) + frame(f.DATA, 0, 1, b"\x00\x00\x01")
    )
    assert received.oversized == []  # the prefix is not complete yet
    received = conn.receive(frame(f.DATA, 0, 1, b"\x00\x00"))
    assert received.oversized == [1]
    conn.respond(1, None, b"", FAILED)
    conn.data_to_send()
    conn.receive(frame(f.HEADERS, 5, 1, encoder.encode([("grpc-trailer", "x")])))
    conn.receive(raw_request(3, b"\x00\x00\x00\x00\x00", encoder))
    assert conn.closed is None
    assert [r.stream_id for r in conn.take_ready()] == [3]


def test_data_after_the_end_of_a_stream_resets_it_and_cancels_the_call() -> None:
    """DATA on a stream the client already ended: RST_STREAM(STREAM_CLOSED), call cancelled."""
    conn, _ = server()
    conn.receive(PREFACE + SETTINGS + raw_request(1, b"x", hpack.Encoder()))
    assert len(conn.take_ready()) == 1
    conn.data_to_send()
    received = conn.receive(frame(f.DATA, 0, 1, b"more"))
    assert received.cancelled == [1]
    assert conn.data_to_send() == rst(1, ErrorCode.STREAM_CLOSED)
    assert conn.closed is None


def test_stream_id_going_backwards_is_a_connection_error() -> None:
    """A new stream with an id lower than one already used: GOAWAY(PROTOCOL_ERROR)."""
    conn, _ = server()
    encoder = hpack.Encoder()
    conn.receive(PREFACE + SETTINGS + raw_request(5, b"x", encoder) + raw_request(3, b"y", encoder))
    assert conn.closed is not None
    assert conn.closed.code == ErrorCode.PROTOCOL_ERROR


def test_larger_initial_window_overflowing_a_stream_is_a_connection_error() -> None:
    """SETTINGS that push an answer's send window past 2^31-1: FLOW_CONTROL_ERROR."""
    pair = Pair()
    stream_id = pair.call(frame_message(b"x"))
    pair.pump()
    increment = (2**31 - 65_536).to_bytes(4, "big")
    pair.server.receive(frame(f.WINDOW_UPDATE, 0, stream_id, increment))
    pair.server.receive(frame(f.SETTINGS, 0, 0, b"\x00\x04" + (100_000).to_bytes(4, "big")))
    assert pair.server.closed is not None
    assert pair.server.closed.code == ErrorCode.FLOW_CONTROL_ERROR


def test_data_over_the_stream_window_is_a_flow_control_error() -> None:
    """A client that sends past a stream's window: that stream is reset FLOW_CONTROL_ERROR
    (a stream error, RFC 9113 6.9.1), its request never starts, the connection lives on."""
    conn, _ = server(max_frame_bytes=1 << 20)
    encoder = hpack.Encoder()
    block = encoder.encode(REQUEST_HEADERS)
    conn.receive(PREFACE + SETTINGS + frame(f.HEADERS, f.FLAG_END_HEADERS, 1, block))
    conn.data_to_send()
    body = b"\x00\x00\x00\x00\x01" + b"a" * 70_000
    conn.receive(frame(f.DATA, 0, 1, body) + frame(f.DATA, f.FLAG_END_STREAM, 1, b"late"))
    assert conn.take_ready() == []
    assert conn.data_to_send() == rst(1, ErrorCode.FLOW_CONTROL_ERROR)  # once, late data dropped
    assert conn.closed is None
    conn.receive(raw_request(3, frame_message(b"y"), encoder))
    assert [r.stream_id for r in conn.take_ready()] == [3]


def test_data_over_the_connection_window_is_a_connection_error() -> None:
    """Unconsumed DATA past the connection's window, each stream within its own: the
    endpoint ends the connection with GOAWAY(FLOW_CONTROL_ERROR)."""
    end = ServerEndpoint(
        max_concurrent_streams=10,
        max_header_list_bytes=16_384,
        stream_window=65_535,
        connection_window=65_535,
        max_frame_size=16_384,
    )
    encoder = hpack.Encoder()
    data = PREFACE + SETTINGS
    for stream_id in (1, 3):
        data += frame(f.HEADERS, f.FLAG_END_HEADERS, stream_id, encoder.encode(REQUEST_HEADERS))
        data += frame(f.DATA, 0, stream_id, b"\x00" * 16_000) * 3
    events = end.receive(data)
    assert end.closed is not None
    assert end.closed.code == ErrorCode.FLOW_CONTROL_ERROR
    assert sum(isinstance(e, DataReceived) for e in events) == 4  # the frames before the fault
    assert goaway_of(end.data_to_send()).error_code == ErrorCode.FLOW_CONTROL_ERROR


def test_streams_reset_for_the_clients_errors_count_against_the_budget() -> None:
    """Rapid reset without RST_STREAM (DATA after END_STREAM makes h2 reset): still counted."""
    conn, _ = server(max_resets=10)
    encoder = hpack.Encoder()
    data = PREFACE + SETTINGS
    for stream_id in range(1, 60, 2):
        data += raw_request(stream_id, b"x", encoder) + frame(f.DATA, 0, stream_id, b"more")
    conn.receive(data)
    assert conn.take_ready() == []
    assert conn.closed is not None
    assert conn.closed.code == ErrorCode.ENHANCE_YOUR_CALM
