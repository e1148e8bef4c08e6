"""Fuzzing the gRPC server's HTTP/2 connection with random frame sequences, in memory.

Frames of every type, valid and not (random flags, stream ids, payloads, header blocks from a
shared HPACK encoder), split into random reads, are fed to a :class:`ServerConnection` with
small limits, between random acts of the transport (take the ready calls, answer or drop
them, move the clock, GOAWAY). Whatever arrives, the connection never raises, what it writes
is well-formed HTTP/2, and its counts stay consistent; once closed, it stays closed.
"""

from __future__ import annotations

from typing import Any

import hpack
from hyperframe.frame import Frame
from hypothesis import event, given
from hypothesis import strategies as st

from shipyard.protocol.grpc_wire import frame_message
from shipyard.protocol.http2 import PREFACE, ConnectionLimits, ServerConnection, frame
from shipyard.protocol.http2 import frames as f
from tests.fuzz.profile import fuzz_settings

LIMITS = ConnectionLimits(
    max_message_bytes=64,
    max_concurrent_streams=3,
    max_header_list_bytes=1024,
    max_continuation_frames=2,
    max_frame_bytes=16_384,
    max_unsent_bytes=100,
    max_resets=5,
    max_pings=5,
    max_settings=5,
    flood_window_s=10.0,
    handshake_timeout_s=1.0,
    idle_timeout_s=2.0,
    keepalive_interval_s=1.0,
    keepalive_timeout_s=1.0,
)
STREAMS = st.sampled_from([0, 1, 1, 3, 3, 5, 7, 2, 4, 101, 2**31 - 1])
HEADER_NAMES = [":method", ":scheme", ":path", ":authority", "content-type", "te", "x-a", "X-B"]
HEADER_VALUES = ["POST", "GET", "http", "/p", "application/grpc", "trailers", "", "a\r\nb"]
REQUEST = [
    (":method", "POST"),
    (":scheme", "http"),
    (":path", "/inference.GRPCInferenceService/ModelInfer"),
    (":authority", "x"),
    ("content-type", "application/grpc"),
    ("te", "trailers"),
]


@st.composite
def header_lists(draw: Any) -> list[tuple[str, str]]:
    """A valid gRPC request's headers, perhaps disturbed, or random ones."""
    if draw(st.booleans()):
        headers = list(REQUEST)
        for _ in range(draw(st.integers(0, 2))):
            headers.insert(
                draw(st.integers(0, len(headers))),
                (draw(st.sampled_from(HEADER_NAMES)), draw(st.sampled_from(HEADER_VALUES))),
            )
        return headers
    names, values = st.sampled_from(HEADER_NAMES), st.sampled_from(HEADER_VALUES)
    return draw(st.lists(st.tuples(names, values), max_size=6))


@st.composite
def payloads(draw: Any, kind: int) -> Any:
    """A payload for a frame of ``kind``: well-formed for its type, or any bytes."""
    if draw(st.integers(0, 4)) == 0:
        return draw(st.binary(max_size=48))
    if kind in (f.HEADERS, f.CONTINUATION):
        return draw(header_lists())  # encoded later, with the example's encoder
    if kind == f.DATA:
        body = frame_message(draw(st.binary(max_size=80)))
        return body if draw(st.booleans()) else body[: draw(st.integers(0, len(body)))]
    if kind == f.SETTINGS:
        pairs = st.tuples(st.integers(0, 8), st.sampled_from([0, 1, 100, 16_384, 2**31, 2**32 - 1]))
        return b"".join(
            a.to_bytes(2, "big") + b.to_bytes(4, "big")
            for a, b in draw(st.lists(pairs, max_size=3))
        )
    if kind == f.WINDOW_UPDATE:
        return draw(st.sampled_from([0, 1, 65_535, 2**31 - 1])).to_bytes(4, "big")
    if kind == f.RST_STREAM:
        return draw(st.integers(0, 13)).to_bytes(4, "big")
    if kind == f.PING:
        return draw(st.binary(min_size=8, max_size=8))
    if kind == f.GOAWAY:
        return draw(st.binary(min_size=8, max_size=12))
    if kind == f.PRIORITY:
        return draw(st.binary(min_size=5, max_size=5))
    return draw(st.binary(max_size=16))


@st.composite
def frame_steps(draw: Any) -> tuple[str, int, int, int, Any, int]:
    """One frame to send: kind, flags, stream, payload, and where to split it into reads."""
    kind = draw(st.sampled_from([0, 0, 0, 1, 1, 1, 2, 3, 3, 4, 5, 6, 7, 8, 8, 9, 9, 10, 0xFF]))
    common = {f.HEADERS: 0x05, f.DATA: 0x01, f.CONTINUATION: 0x04}.get(kind, 0)
    flags = draw(st.one_of(st.just(common), st.integers(0, 255)))
    return ("frame", kind, flags, draw(STREAMS), draw(payloads(kind)), draw(st.integers(0, 3)))


#: A well-formed call on the next stream: its message size, whether the request ends, and
#: whether a RST_STREAM follows in the same read.
calls = st.tuples(
    st.just("call"),
    st.one_of(st.integers(0, 60), st.integers(0, 100)),  # over 64: oversized
    st.sampled_from([True, True, True, False]),
    st.sampled_from([False, False, False, True]),
)
resets = st.tuples(st.just("reset"), st.integers(0, 5), st.integers(0, 8))
actions = st.one_of(
    st.tuples(st.just("answer"), st.integers(0, 3), st.integers(0, 300)),
    st.tuples(st.just("clock"), st.sampled_from([0.1, 0.6, 1.1, 2.5]), st.just(0)),
    st.tuples(st.just("goaway"), st.just(0), st.just(0)),
    st.tuples(st.just("respond"), STREAMS, st.integers(0, 300)),
)


#: Half the steps are calls, a fifth raw frames, a tenth resets, the rest the transport's acts.
steps = st.integers(0, 9).flatmap(
    lambda n: calls if n < 5 else frame_steps() if n < 7 else resets if n < 8 else actions
)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def well_formed(data: bytes) -> list[Frame]:
    """Parse what the server wrote: only whole, valid frames."""
    frames: list[Frame] = []
    view = memoryview(data)
    while view:
        assert len(view) >= 9, "a partial frame header"
        parsed, length = Frame.parse_frame_header(view[:9])
        assert len(view) >= 9 + length, "a partial frame"
        parsed.parse_body(view[9 : 9 + length])
        frames.append(parsed)
        view = view[9 + length :]
    return frames


def consistent(conn: ServerConnection, handed: set[int]) -> None:
    """The connection's counts agree with each other and with its limits."""
    assert 0 <= conn.running <= LIMITS.max_concurrent_streams
    assert 0 <= conn.open_streams <= LIMITS.max_concurrent_streams
    assert conn.unsent_bytes >= 0
    assert conn.buffered_bytes >= 0
    assert 0 <= conn._reserved <= LIMITS.reserve_bytes
    assert all(stream_id % 2 == 1 for stream_id in handed)


@fuzz_settings(1000)
@given(
    st.integers(0, 9),
    st.lists(steps, min_size=1, max_size=40),
)
def test_random_frames_never_break_the_connection(preface: int, steps: list[Any]) -> None:
    """Any sequence: no exception, well-formed output, consistent counts, closed stays closed."""
    clock = Clock()
    conn = ServerConnection(LIMITS, clock=clock)
    encoder = hpack.Encoder()
    handed: set[int] = set()
    running: list[int] = []
    opened: list[int] = []
    well_formed(conn.data_to_send())
    if preface:  # most examples start well; one in ten does not
        conn.receive(PREFACE + frame(f.SETTINGS, 0, 0))
    for step in steps:
        closed = conn.closed
        if step[0] == "frame":
            _, kind, flags, stream_id, payload, split = step
            if isinstance(payload, list):
                payload = encoder.encode(payload)
            data = frame(kind, flags, stream_id, payload)
            cut = len(data) * split // 4
            for part in (data[:cut], data[cut:]):
                if part:
                    conn.receive(part)
        elif step[0] == "call":
            _, size, ends, reset = step
            stream_id = (opened[-1] if opened else -1) + 2
            opened.append(stream_id)
            data = frame(f.HEADERS, f.FLAG_END_HEADERS, stream_id, encoder.encode(REQUEST))
            data += frame(
                f.DATA, f.FLAG_END_STREAM if ends else 0, stream_id, frame_message(b"m" * size)
            )
            if reset:
                data += frame(f.RST_STREAM, 0, stream_id, (8).to_bytes(4, "big"))
            conn.receive(data)
        elif step[0] == "reset":
            if opened:
                stream_id = opened[-1 - step[1] % len(opened)]
                conn.receive(frame(f.RST_STREAM, 0, stream_id, step[2].to_bytes(4, "big")))
        elif step[0] == "answer":  # answer some running calls (Trailers-Only or with data)
            for stream_id in running[: step[1]]:
                conn.respond(stream_id, None, b"", ((b"grpc-status", b"0"),))
                conn.call_done(stream_id)
            for stream_id in running[step[1] : step[1] + 1]:
                ok = ((b"grpc-status", b"0"),)
                conn.respond(stream_id, ((b":status", b"200"),), b"a" * step[2], ok)
                conn.call_done(stream_id)
            del running[: step[1] + 1]
        elif step[0] == "clock":
            clock.now += step[1]
            conn.check_timers()
        elif step[0] == "goaway":
            conn.goaway()
        else:
            conn.respond(step[1], None, b"b" * step[2], ((b"grpc-status", b"13"),))
        for request in conn.take_ready():  # as the transport does after every read
            assert request.stream_id not in handed, "a call handed out twice"
            handed.add(request.stream_id)
            running.append(request.stream_id)
        out = well_formed(conn.data_to_send())
        consistent(conn, handed)
        if closed is not None:
            assert conn.closed is closed, "a closed connection changed its reason"
            assert conn.take_ready() == []
            assert not any(type(fr).__name__ in ("DataFrame", "HeadersFrame") for fr in out)
    # What the examples reached (pytest --hypothesis-show-statistics).
    event(f"closed: {conn.closed.code.name}" if conn.closed else "open at the end")
    event(f"calls handed out: {min(len(handed), 3)}")


@fuzz_settings(200)
@given(
    st.lists(
        st.tuples(st.sampled_from([0, 100, 60_000, 70_000, 140_000, 150_000]), st.booleans()),
        min_size=1,
        max_size=8,
    ),
    st.integers(1, 4),
    st.sampled_from([100, 1000, 65_535]),
)
def test_flow_controlled_calls_always_complete(
    calls: list[tuple[int, bool]], concurrency: int, client_window: int
) -> None:
    """An h2 client that respects flow control gets every call it does not reset answered:
    stream windows granted per declared length, a reserve for one message, answers held by a
    small client window; no order of these deadlocks. (Two 150 kB messages do not fit the
    reserve together: the second waits for the first.)"""
    import h2.config
    import h2.connection
    import h2.events
    import h2.settings

    limits = ConnectionLimits(
        max_message_bytes=150_000,
        max_concurrent_streams=4,
        max_unsent_bytes=2000,
        keepalive_interval_s=0,
        idle_timeout_s=0,
    )
    conn = ServerConnection(limits, clock=Clock())
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.local_settings = h2.settings.Settings(
        client=True, initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: client_window}
    )
    client.initiate_connection()
    bodies: dict[int, bytes] = {}
    sent: dict[int, int] = {}
    waiting = list(enumerate(calls))
    answered: set[int] = set()
    expected: set[int] = set()
    for _ in range(1000):
        while waiting and client.open_outbound_streams < concurrency:
            index, (size, reset) = waiting.pop(0)
            stream_id = client.get_next_available_stream_id()
            client.send_headers(stream_id, REQUEST)
            bodies[stream_id] = frame_message(bytes([index]) * size)
            sent[stream_id] = 0
            if reset:
                client.reset_stream(stream_id)
                del sent[stream_id]
            else:
                expected.add(stream_id)
        for stream_id in list(sent):
            body, done = bodies[stream_id], sent[stream_id]
            window = client.local_flow_control_window(stream_id)
            size = min(window, client.max_outbound_frame_size, len(body) - done)
            if size > 0 or (done == len(body) == 0):
                client.send_data(
                    stream_id, body[done : done + size], end_stream=done + size == len(body)
                )
                sent[stream_id] = done + size
                if sent[stream_id] == len(body):
                    del sent[stream_id]
        conn.receive(client.data_to_send())
        for request in conn.take_ready():
            assert request.body == bodies[request.stream_id]  # whole, in order
            answer, ok = request.body[:1000], ((b"grpc-status", b"0"),)
            conn.respond(request.stream_id, ((b":status", b"200"),), answer, ok)
            conn.call_done(request.stream_id)
        for happened in client.receive_data(conn.data_to_send()):
            if isinstance(happened, h2.events.DataReceived):
                length = happened.flow_controlled_length
                client.acknowledge_received_data(length, happened.stream_id)
            elif isinstance(happened, h2.events.StreamEnded):
                answered.add(happened.stream_id)
        assert conn.closed is None, conn.closed
        consistent_with(conn, limits)
        if answered >= expected and not waiting and not sent:
            break
    assert answered >= expected, f"calls {sorted(expected - answered)} never completed"


def consistent_with(conn: ServerConnection, limits: ConnectionLimits) -> None:
    """The counts of a connection with ``limits`` agree with each other."""
    assert 0 <= conn.running <= limits.max_concurrent_streams
    assert conn.unsent_bytes >= 0
    assert conn.buffered_bytes >= 0
    assert 0 <= conn._reserved <= limits.reserve_bytes
