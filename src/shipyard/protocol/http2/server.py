"""The server end of an HTTP/2 connection: streams the client opens become requests."""

from __future__ import annotations

from typing import Any

from shipyard.protocol.http2.endpoint import Endpoint, Stream
from shipyard.protocol.http2.frames import (
    FLAG_END_STREAM,
    PREFACE,
    RST_STREAM,
    UINT32,
    ErrorCode,
    ProtocolError,
    Request,
    frame,
)

__all__ = ["ServerConnection"]


class ServerConnection(Endpoint):
    """The server end: streams the client opens become :class:`Request` objects.

    ``max_concurrent_streams`` bounds the streams open at once; more are refused with
    RST_STREAM REFUSED_STREAM, as RFC 9113 says.
    """

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._preface_seen = False

    def respond(self, stream_id: int, headers: bytes, body: bytes, trailers: bytes) -> None:
        """Answer a stream: the header block, the body as DATA, the trailer block (END_STREAM).

        ``headers`` and ``trailers`` are HPACK blocks (see :func:`encode_headers`); an empty
        ``body`` with empty ``headers`` sends the trailers alone (gRPC's Trailers-Only form).
        The DATA frames wait for flow-control window when the client's is spent; the trailers
        follow them. Answering a stream that is gone (reset, connection closing) does nothing.
        """
        stream = self._streams.get(stream_id)
        if stream is None:
            return
        if headers:
            self._queue_header_block(stream_id, headers, 0)
        stream.pending_data = body
        stream.pending_trailers = trailers
        self._flush_stream(stream)

    def _sent_all(self, stream: Stream) -> None:
        trailers = stream.pending_trailers
        if trailers is None:
            return
        self._queue_header_block(stream.stream_id, trailers, FLAG_END_STREAM)
        if not stream.remote_closed:  # answered early: tell the client to stop sending
            self._out.append(
                frame(RST_STREAM, 0, stream.stream_id, UINT32.pack(ErrorCode.NO_ERROR))
            )
        self._close_stream(stream.stream_id)

    def _preface(self, buffer: bytes) -> bytes | None:
        if self._preface_seen:
            return buffer
        if len(buffer) < len(PREFACE):
            if not PREFACE.startswith(buffer):
                raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "not an HTTP/2 preface")
            self._buffer = buffer
            return None
        if not buffer.startswith(PREFACE):
            raise ProtocolError(
                ErrorCode.PROTOCOL_ERROR,
                "not an HTTP/2 connection preface (gRPC needs HTTP/2 with prior knowledge)",
            )
        self._preface_seen = True
        self._buffer = b""
        return buffer[len(PREFACE) :]

    def _header_block(
        self, flags: int, stream_id: int, headers: list[tuple[str, str]], messages: list[Any]
    ) -> None:
        stream = self._streams.get(stream_id)
        if stream is not None:  # trailers from the client: they must end the stream
            if not flags & FLAG_END_STREAM or stream.remote_closed:
                self._stream_error(stream_id, ErrorCode.PROTOCOL_ERROR, messages)
                return
            self._end_stream(stream, headers, messages)
            return
        if stream_id % 2 == 0:
            raise ProtocolError(
                ErrorCode.PROTOCOL_ERROR, f"stream {stream_id} is not a client stream"
            )
        if stream_id <= self._last_stream_id:
            return  # a stream already closed (answered early, refused, reset): ignored
        self._last_stream_id = stream_id
        if self.goaway_sent:
            return  # after GOAWAY new streams are ignored (RFC 9113 section 6.8)
        if len(self._streams) >= self.max_concurrent_streams:
            self._out.append(frame(RST_STREAM, 0, stream_id, UINT32.pack(ErrorCode.REFUSED_STREAM)))
            return
        stream = Stream(stream_id, self._peer_initial_window, self._stream_window, headers)
        self._streams[stream_id] = stream
        if flags & FLAG_END_STREAM:
            self._end_stream(stream, [], messages)

    def _end_stream(
        self, stream: Stream, trailers: list[tuple[str, str]], messages: list[Any]
    ) -> None:
        stream.remote_closed = True
        if stream.discarding:
            return  # reported in ``oversized`` already
        messages.append(Request(stream.stream_id, stream.headers or [], bytes(stream.body)))
        stream.body = bytearray()
