"""The server end of Shipyard's HTTP/2 endpoint on its own: events in order, stream errors.

Frames are built by hand and fed to :class:`ServerEndpoint`; the events it returns and the
frames it writes are checked, the frames parsed by ``hyperframe``, an independent parser.
(Against an ``h2`` client, with the policy around it: tests/unit/test_http2_server.py.)
"""

from __future__ import annotations

import hpack
from hyperframe.frame import Frame, GoAwayFrame, RstStreamFrame

from shipyard.protocol.grpc_wire import frame_message
from shipyard.protocol.http2 import (
    PREFACE,
    ConnectionLimits,
    DataReceived,
    ErrorCode,
    FrameGuard,
    GoAwayReceived,
    HeadersReceived,
    PingReceived,
    ServerConnection,
    ServerEndpoint,
    SettingsReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
    WindowUpdated,
    frame,
)
from shipyard.protocol.http2 import frames as f

REQUEST = [
    (b":method", b"POST"),
    (b":scheme", b"http"),
    (b":path", b"/inference.GRPCInferenceService/ModelInfer"),
    (b":authority", b"127.0.0.1"),
    (b"content-type", b"application/grpc"),
    (b"te", b"trailers"),
]
SETTINGS = frame(f.SETTINGS, 0, 0)
OK = ((b"grpc-status", b"0"),)


class Clock:
    """A clock that stands still."""

    def __call__(self) -> float:
        return 0.0


def endpoint(**limits: int) -> ServerEndpoint:
    """A server end with ConnectionLimits' defaults (or ``limits``) and their guard."""
    chosen = ConnectionLimits(**limits)
    return ServerEndpoint(
        max_concurrent_streams=chosen.max_concurrent_streams,
        max_header_list_bytes=chosen.max_header_list_bytes,
        stream_window=chosen.stream_window_bytes,
        connection_window=chosen.connection_window_bytes,
        max_frame_size=chosen.max_frame_bytes,
        guard=FrameGuard(chosen, Clock()),
    )


def headers(stream_id: int, encoder: hpack.Encoder, end: bool = False, **extra: str) -> bytes:
    """A HEADERS frame of a request (``extra`` fields added)."""
    fields = REQUEST + [(k.replace("_", "-").encode(), v.encode()) for k, v in extra.items()]
    flags = f.FLAG_END_HEADERS | (f.FLAG_END_STREAM if end else 0)
    return frame(f.HEADERS, flags, stream_id, encoder.encode(fields))


def rst(stream_id: int, code: int) -> bytes:
    return frame(f.RST_STREAM, 0, stream_id, code.to_bytes(4, "big"))


def frames_of(data: bytes) -> list[Frame]:
    """Parse what the endpoint wrote with hyperframe."""
    out = []
    view = memoryview(data)
    while view:
        parsed, length = Frame.parse_frame_header(view[:9])
        parsed.parse_body(view[9 : 9 + length])
        out.append(parsed)
        view = view[9 + length :]
    return out


def test_events_come_in_the_order_the_frames_came() -> None:
    """One read: a request, its data and end, another's reset, a PING, a WINDOW_UPDATE."""
    end = endpoint()
    encoder = hpack.Encoder()
    data = PREFACE + SETTINGS + headers(1, encoder) + frame(f.DATA, 0, 1, b"ab")
    data += headers(3, encoder) + frame(f.DATA, 1, 1, b"cd") + rst(3, ErrorCode.CANCEL)
    data += frame(f.PING, 0, 0, b"12345678") + frame(f.WINDOW_UPDATE, 0, 0, b"\x00\x00\x00\x09")
    events = end.receive(data)
    assert [type(e) for e in events] == [
        SettingsReceived,
        HeadersReceived,
        DataReceived,
        HeadersReceived,
        DataReceived,
        StreamEnded,
        StreamReset,
        PingReceived,
        WindowUpdated,
    ]
    assert [e.stream_id for e in events if isinstance(e, DataReceived)] == [1, 1]
    (reset,) = [e for e in events if isinstance(e, StreamReset)]
    assert (reset.stream_id, reset.error_code, reset.remote) == (3, ErrorCode.CANCEL, True)
    assert end.open_streams == 1


def test_trailers_are_their_own_event() -> None:
    """Trailers after the data come as TrailersReceived, then StreamEnded."""
    end = endpoint()
    encoder = hpack.Encoder()
    data = PREFACE + SETTINGS + headers(1, encoder) + frame(f.DATA, 0, 1, b"x")
    data += frame(f.HEADERS, 5, 1, encoder.encode([(b"x-t", b"1")]))
    events = end.receive(data)
    assert [type(e) for e in events][-2:] == [TrailersReceived, StreamEnded]


def test_headers_on_an_answered_stream_reset_it_stream_closed() -> None:
    """HEADERS on a stream both sides finished: RST_STREAM(STREAM_CLOSED), a stream error."""
    end = endpoint()
    encoder = hpack.Encoder()
    end.receive(PREFACE + SETTINGS + headers(1, encoder, end=True))
    assert end.respond(1, None, b"", OK)
    end.data_to_send()
    events = end.receive(headers(1, encoder, end=True))
    (reset,) = [e for e in events if isinstance(e, StreamReset)]
    assert (reset.error_code, reset.remote) == (ErrorCode.STREAM_CLOSED, False)
    assert end.data_to_send() == rst(1, ErrorCode.STREAM_CLOSED)
    assert end.closed is None


def test_a_stream_id_skipped_cannot_be_opened_later() -> None:
    """Opening 7 closes 1, 3 and 5 for good: HEADERS on 3 then is GOAWAY(PROTOCOL_ERROR)."""
    end = endpoint()
    encoder = hpack.Encoder()
    end.receive(PREFACE + SETTINGS + headers(1, encoder, end=True) + headers(7, encoder))
    end.receive(headers(3, encoder))
    assert end.closed is not None
    assert end.closed.code == ErrorCode.PROTOCOL_ERROR
    (goaway,) = [fr for fr in frames_of(end.data_to_send()) if isinstance(fr, GoAwayFrame)]
    assert goaway.last_stream_id == 7


def test_frames_on_a_stream_this_end_reset_are_dropped() -> None:
    """What the client still sends on a stream the server reset is dropped quietly, and the
    connection window it took is given back."""
    end = endpoint(max_concurrent_streams=1)
    encoder = hpack.Encoder()
    end.receive(PREFACE + SETTINGS + headers(1, encoder) + headers(3, encoder))  # 3 refused
    assert rst(3, ErrorCode.REFUSED_STREAM) in end.data_to_send()
    events = end.receive(frame(f.DATA, 0, 3, b"x" * 1000) + frame(f.HEADERS, 5, 3, b"\x82"))
    assert events == []
    assert end.data_to_send() == b""
    assert end.closed is None


def test_priority_on_its_own_stream_resets_that_stream() -> None:
    """A PRIORITY frame making a stream depend on itself: RST_STREAM(PROTOCOL_ERROR)."""
    end = endpoint()
    encoder = hpack.Encoder()
    end.receive(PREFACE + SETTINGS + headers(1, encoder))
    end.data_to_send()
    events = end.receive(frame(f.PRIORITY, 0, 1, b"\x00\x00\x00\x01\x10"))
    assert [type(e) for e in events] == [StreamReset]
    assert frames_of(end.data_to_send())[0].error_code == ErrorCode.PROTOCOL_ERROR


def test_streams_refused_after_goaway_do_not_spend_the_budget() -> None:
    """After the server's GOAWAY, new streams are refused (the client's race, not its fault)
    without counting against the reset budget."""
    end = endpoint(max_resets=5)
    encoder = hpack.Encoder()
    end.receive(PREFACE + SETTINGS)
    end.goaway()
    data = b"".join(headers(stream_id, encoder, end=True) for stream_id in range(1, 40, 2))
    events = end.receive(data)
    assert events == []
    assert end.closed is None
    refused = [fr for fr in frames_of(end.data_to_send()) if isinstance(fr, RstStreamFrame)]
    assert len(refused) == 20
    assert {fr.error_code for fr in refused} == {ErrorCode.REFUSED_STREAM}


def test_client_goaway_lets_running_calls_finish() -> None:
    """A client's GOAWAY(NO_ERROR): its running call is still answered, then the connection
    is finished; a GOAWAY with an error code ends it at once."""
    conn = ServerConnection(ConnectionLimits())
    encoder = hpack.Encoder()
    body = frame_message(b"x")
    conn.receive(PREFACE + SETTINGS + headers(1, encoder) + frame(f.DATA, 1, 1, body))
    (request,) = conn.take_ready()
    conn.receive(frame(f.GOAWAY, 0, 0, bytes(8)))
    assert conn.closed is None
    assert not conn.finished
    conn.respond(request.stream_id, ((b":status", b"200"),), b"answer", OK)
    conn.call_done(request.stream_id)
    assert conn.finished
    assert conn.closed is None
    other = ServerConnection(ConnectionLimits())
    other.receive(PREFACE + SETTINGS + frame(f.GOAWAY, 0, 0, bytes(4) + b"\x00\x00\x00\x02"))
    assert other.closed is not None


def test_goaway_received_is_an_event() -> None:
    """The client's GOAWAY is reported with its last stream and error code."""
    end = endpoint()
    events = end.receive(PREFACE + SETTINGS + frame(f.GOAWAY, 0, 0, bytes(7) + b"\x01" + b"bye"))
    (goaway,) = [e for e in events if isinstance(e, GoAwayReceived)]
    assert (goaway.last_stream_id, goaway.error_code, goaway.additional_data) == (0, 1, b"bye")
