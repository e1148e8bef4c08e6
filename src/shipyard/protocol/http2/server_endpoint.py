"""The server end of an HTTP/2 connection: the streams a client opens, and their answers.

:class:`ServerEndpoint` checks the client's connection preface, validates each request's
header fields (RFC 9113 sections 8.2 and 8.3, :mod:`.headers`) and reports a valid request as
:class:`~.events.HeadersReceived`, followed by its data and end. A malformed request, a stream
over SETTINGS_MAX_CONCURRENT_STREAMS, or frames on a stream the client already ended reset
that stream only (PROTOCOL_ERROR, REFUSED_STREAM, STREAM_CLOSED: a stream error, as RFC 9113
allows); a stream id going backwards, an even one, or broken framing end the connection.
:meth:`ServerEndpoint.respond` queues an answer: headers, DATA as the client's windows allow,
then trailers; an answer sent before the request ended is followed by RST_STREAM(NO_ERROR).
"""

from __future__ import annotations

from collections.abc import Sequence

from shipyard.protocol.http2.endpoint import REMEMBERED_GAPS, Endpoint, Stream
from shipyard.protocol.http2.events import Event, HeadersReceived, TrailersReceived
from shipyard.protocol.http2.frames import (
    DATA,
    FLAG_END_STREAM,
    FRAME_HEADER,
    PREFACE,
    RST_STREAM,
    SETTINGS_INITIAL_WINDOW_SIZE,
    SETTINGS_MAX_CONCURRENT_STREAMS,
    SETTINGS_MAX_FRAME_SIZE,
    SETTINGS_MAX_HEADER_LIST_SIZE,
    UINT32,
    ErrorCode,
    ProtocolError,
    encode_headers,
    frame,
)
from shipyard.protocol.http2.guard import FrameGuard
from shipyard.protocol.http2.headers import request_error, trailers_error

__all__ = ["Headers", "ServerEndpoint"]

Headers = Sequence[tuple[bytes, bytes]]

#: Header lists whose encoded block is kept (the transport's answers are a few constants).
CACHED_BLOCKS = 64


class ServerEndpoint(Endpoint):
    """The server end; see the module's description."""

    def __init__(
        self,
        *,
        max_concurrent_streams: int,
        max_header_list_bytes: int,
        stream_window: int,
        connection_window: int,
        max_frame_size: int,
        guard: FrameGuard | None = None,
    ) -> None:
        super().__init__(
            max_concurrent_streams=max_concurrent_streams,
            max_header_list_bytes=max_header_list_bytes,
            stream_window=stream_window,
            connection_window=connection_window,
            max_frame_size=max_frame_size,
            guard=guard,
        )
        self._preface_left = PREFACE
        # id(headers) -> (headers, error, content-length): the decoder hands out the same
        # list for a repeated block, and holding it here keeps its id from being reused.
        self._validated: dict[int, tuple[Headers, str | None, int]] = {}
        self._blocks: dict[int, tuple[Headers, bytes]] = {}
        settings = [
            (SETTINGS_MAX_CONCURRENT_STREAMS, max_concurrent_streams),
            (SETTINGS_INITIAL_WINDOW_SIZE, stream_window),
            (SETTINGS_MAX_FRAME_SIZE, max_frame_size),
            (SETTINGS_MAX_HEADER_LIST_SIZE, max_header_list_bytes),
        ]
        self._start(settings, connection_window)

    def receive(self, data: bytes) -> list[Event]:
        """Take the client's bytes; return the events of its complete frames, in order.

        Never raises for what a client sends: a connection error stops at the frame at fault
        (the events before it are returned), queues GOAWAY and sets :attr:`closed`.
        """
        return self._process(data)

    # -- answers ---------------------------------------------------------------------------

    def respond(
        self, stream_id: int, headers: Headers | None, body: bytes, trailers: Headers
    ) -> bool:
        """Answer a stream: ``headers``, ``body`` as DATA as windows allow, then ``trailers``.

        With ``headers`` None the ``trailers`` alone answer (gRPC's Trailers-Only) and
        ``body`` is not sent. False, and nothing sent, when the stream is gone (reset,
        already answered, connection closed).
        """
        stream = self._streams.get(stream_id)
        if stream is None or stream.trailers is not None or self.closed is not None:
            return False
        encode = self._encode
        if headers is None:
            stream.trailers = encode(trailers)
            self._sent_all(stream)
            return True
        self._queue_header_block(stream_id, encode(headers), 0)
        stream.trailers = encode(trailers)
        size = len(body)
        if (
            size <= self._send_window
            and size <= stream.send_window
            and size <= self._peer_frame_size
        ):  # the usual answer: one DATA frame, at once
            if size:
                self._out += (FRAME_HEADER.pack((size << 8) | DATA, 0, stream_id), body)
                self._send_window -= size
                stream.send_window -= size
            self._sent_all(stream)
        else:
            stream.pending = body
            self.unsent_bytes += size
            self._flush_stream(stream)
        return True

    def _encode(self, headers: Headers) -> bytes:
        """The HPACK block of a header list (literals never indexed: constant bytes).

        Cached by the list object (the transport's answers are a few constants); the entry
        holds the list, so its id cannot be reused while cached.
        """
        cached = self._blocks.get(id(headers))
        if cached is not None and cached[0] is headers:
            return cached[1]
        block = encode_headers(headers)
        if len(self._blocks) >= CACHED_BLOCKS:
            self._blocks.clear()
        self._blocks[id(headers)] = (headers, block)
        return block

    def _sent_all(self, stream: Stream) -> None:
        trailers = stream.trailers
        if trailers is None:
            return
        stream_id = stream.stream_id
        self._queue_header_block(stream_id, trailers, FLAG_END_STREAM)
        if not stream.remote_closed:  # answered early: the client may stop sending
            self._out.append(frame(RST_STREAM, 0, stream_id, UINT32.pack(ErrorCode.NO_ERROR)))
            self._remember_reset(stream_id)
        self._close_stream(stream_id)

    # -- requests ----------------------------------------------------------------------------

    def _preface(self, data: bytes) -> bytes:
        left = self._preface_left
        if not left:
            return data
        take = min(len(left), len(data))
        if data[:take] != left[:take]:
            raise ProtocolError(
                ErrorCode.PROTOCOL_ERROR,
                "not an HTTP/2 connection preface (gRPC needs HTTP/2 with prior knowledge)",
            )
        self._preface_left = left[take:]
        return data[take:]

    def _validate(self, headers: Headers) -> tuple[str | None, int]:
        """:func:`request_error` of a header list, cached for the decoder's cached lists."""
        cached = self._validated.get(id(headers))
        if cached is not None and cached[0] is headers:
            return cached[1], cached[2]
        error, length = request_error(headers)
        if len(self._validated) >= CACHED_BLOCKS:
            self._validated.clear()
        self._validated[id(headers)] = (headers, error, length)
        return error, length

    def _header_block(self, stream_id: int, flags: int, block: bytes, self_dependent: bool) -> None:
        headers = self._decode(block)
        stream = self._streams.get(stream_id)
        if stream is not None:
            self._trailers(stream, flags, headers, self_dependent)
            return
        if not stream_id & 1:
            raise ProtocolError(
                ErrorCode.PROTOCOL_ERROR, f"stream {stream_id} is not a client stream"
            )
        highest = self._highest
        if stream_id <= highest:
            if stream_id in self._resets:
                return  # a stream this end reset: the client may not know yet
            if any(low <= stream_id <= high for low, high in self._gaps):
                raise ProtocolError(
                    ErrorCode.PROTOCOL_ERROR,
                    f"stream {stream_id} opened after stream {highest} (ids must increase)",
                )
            self._stream_error(stream_id, ErrorCode.STREAM_CLOSED, "HEADERS on a closed stream")
            return
        expected = highest + 2 if highest else 1
        if stream_id > expected:  # the ids skipped are closed, never to be opened
            self._gaps.append((expected, stream_id - 2))
            if len(self._gaps) > REMEMBERED_GAPS:
                del self._gaps[0]
        self._highest = stream_id
        if self.goaway_sent:  # opened after our GOAWAY: refused, not the client's fault
            self._out.append(frame(RST_STREAM, 0, stream_id, UINT32.pack(ErrorCode.REFUSED_STREAM)))
            self._remember_reset(stream_id)
            return
        if len(self._streams) >= self.max_concurrent_streams:
            reason = f"over SETTINGS_MAX_CONCURRENT_STREAMS {self.max_concurrent_streams}"
            self._stream_error(stream_id, ErrorCode.REFUSED_STREAM, reason)
            return
        error, length = self._validate(headers)
        if error is not None or self_dependent:
            reason = f"malformed request: {error or 'depends on its own stream'}"
            self._stream_error(stream_id, ErrorCode.PROTOCOL_ERROR, reason)
            return
        window = self._stream_window
        stream = Stream(stream_id, self._peer_initial_window, window, window)
        stream.headers_received = True
        stream.content_length = length
        self._streams[stream_id] = stream
        self._events.append(HeadersReceived(stream_id, headers))
        if flags & FLAG_END_STREAM:
            self._end_remote(stream)

    def _trailers(self, stream: Stream, flags: int, headers: Headers, self_dependent: bool) -> None:
        """A second header block on an open stream: trailers, which must end it."""
        stream_id = stream.stream_id
        if stream.remote_closed:
            self._stream_error(stream_id, ErrorCode.STREAM_CLOSED, "HEADERS after END_STREAM")
            return
        error = trailers_error(headers)
        if not flags & FLAG_END_STREAM:
            error = "a second header block without END_STREAM"
        elif self_dependent:
            error = "depends on its own stream"
        if error is not None:
            self._stream_error(stream_id, ErrorCode.PROTOCOL_ERROR, f"malformed trailers: {error}")
            return
        self._events.append(TrailersReceived(stream_id, headers))
        self._end_remote(stream)
