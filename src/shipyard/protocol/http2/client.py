"""The client end of an HTTP/2 connection: requests out, responses back (the load generator).

Hand-written and minimal on purpose: a general client cost more CPU than the server it
measured (see benchmarks/RESULTS.md). It shares the frame handling of
:class:`~shipyard.protocol.http2.endpoint.Endpoint` with the server end and turns its events
into one :class:`~shipyard.protocol.http2.frames.Response` per finished stream.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from shipyard.protocol.http2.endpoint import Endpoint, Stream
from shipyard.protocol.http2.events import (
    DataReceived,
    HeaderList,
    HeadersReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
)
from shipyard.protocol.http2.frames import (
    FLAG_END_STREAM,
    PREFACE,
    SETTINGS_ENABLE_PUSH,
    SETTINGS_INITIAL_WINDOW_SIZE,
    SETTINGS_MAX_FRAME_SIZE,
    SETTINGS_MAX_HEADER_LIST_SIZE,
    ErrorCode,
    ProtocolError,
    Response,
)

__all__ = ["ClientConnection"]

Text = list[tuple[str, str]]


@dataclass(slots=True)
class _Answer:
    """A response as it arrives."""

    headers: Text = field(default_factory=list)
    trailers: Text | None = None
    body: bytearray = field(default_factory=bytearray)
    got_data: bool = False
    #: The body went over ``max_body_bytes``: the rest is dropped (still acknowledged).
    discarding: bool = False


class ClientConnection(Endpoint):
    """The client end: :meth:`request` opens a stream, :meth:`receive` returns responses.

    ``max_body_bytes`` bounds one response's body: over it, the stream is listed once in
    :attr:`oversized` and the rest of its data is dropped.
    """

    client = True

    def __init__(
        self,
        *,
        max_body_bytes: int,
        max_concurrent_streams: int = 1000,
        max_header_list_bytes: int = 64 * 1024,
        stream_window: int = 4 * 1024 * 1024,
        connection_window: int = 16 * 1024 * 1024,
        max_frame_size: int = 1024 * 1024,
    ) -> None:
        super().__init__(
            max_concurrent_streams=max_concurrent_streams,
            max_header_list_bytes=max_header_list_bytes,
            stream_window=stream_window,
            connection_window=connection_window,
            max_frame_size=max_frame_size,
        )
        self.max_body_bytes = max_body_bytes
        self._answers: dict[int, _Answer] = {}
        self._texts: dict[int, tuple[HeaderList, Text]] = {}
        #: Streams whose body went over ``max_body_bytes`` in the last receive().
        self.oversized: list[int] = []
        #: Streams reset in the last receive(): by the server, or by this end for an error of
        #: the server's (each also comes back as a Response with ``reset`` set).
        self.reset: list[int] = []
        self._out.append(PREFACE)
        settings = [
            (SETTINGS_INITIAL_WINDOW_SIZE, stream_window),
            (SETTINGS_MAX_FRAME_SIZE, max_frame_size),
            (SETTINGS_MAX_HEADER_LIST_SIZE, max_header_list_bytes),
            (SETTINGS_ENABLE_PUSH, 0),
        ]
        self._start(settings, connection_window)

    def request(self, headers: bytes, body: bytes) -> int:
        """Open a stream sending the ``headers`` block and ``body`` (END_STREAM); its id.

        The caller keeps :attr:`~Endpoint.open_streams` under :attr:`peer_max_streams`.
        """
        stream_id = self._highest + 2 if self._highest else 1
        self._highest = stream_id
        window = self._stream_window
        stream = Stream(stream_id, self._peer_initial_window, window, window)
        stream.end_with_data = True
        self._streams[stream_id] = stream
        self._answers[stream_id] = _Answer()
        self._queue_header_block(stream_id, headers, 0 if body else FLAG_END_STREAM)
        if body:
            stream.pending = body
            self.unsent_bytes += len(body)
            self._flush_stream(stream)
        else:
            self._end_local(stream)
        return stream_id

    def reset_stream(self, stream_id: int, code: int) -> None:
        """Cancel a call: RST_STREAM, and its response is never returned."""
        self._answers.pop(stream_id, None)
        super().reset_stream(stream_id, code)

    def receive(self, data: bytes) -> list[Response]:
        """Take the server's bytes; return the responses now complete (or reset).

        Raises :class:`ProtocolError` for a connection error; a GOAWAY for it is already
        queued in :meth:`data_to_send`, and the caller must close the connection after
        writing it.
        """
        self.oversized = []
        self.reset = []
        was_open = self.closed is None
        responses: list[Response] = []
        answers = self._answers
        for event in self._process(data):
            if type(event) is DataReceived:
                self.acknowledge(event.stream_id, event.flow_controlled_length)
                answer = answers.get(event.stream_id)
                if answer is None or answer.discarding:
                    continue
                answer.got_data = True
                if len(answer.body) + len(event.data) > self.max_body_bytes:
                    answer.discarding = True
                    answer.body = bytearray()
                    self.oversized.append(event.stream_id)
                else:
                    answer.body += event.data
            elif type(event) is HeadersReceived:
                answer = answers.get(event.stream_id)
                if answer is not None:
                    answer.headers = self._text(event.headers)
            elif type(event) is TrailersReceived:
                answer = answers.get(event.stream_id)
                if answer is not None:
                    answer.trailers = self._text(event.headers)
            elif type(event) is StreamEnded:
                answer = answers.pop(event.stream_id, None)
                if answer is None or answer.discarding:
                    continue  # reported in ``oversized`` already
                trailers = answer.trailers
                if trailers is None:  # Trailers-Only: the one block is both
                    trailers = [] if answer.got_data else answer.headers
                body = bytes(answer.body)
                responses.append(Response(event.stream_id, answer.headers, body, trailers))
            elif type(event) is StreamReset:
                answers.pop(event.stream_id, None)
                self.reset.append(event.stream_id)
                responses.append(Response(event.stream_id, [], b"", [], reset=event.error_code))
        if was_open and self.closed is not None:
            raise self.closed
        return responses

    def _text(self, headers: HeaderList) -> Text:
        """Header fields as text, cached for the decoder's cached lists (see ServerEndpoint)."""
        cached = self._texts.get(id(headers))
        if cached is not None and cached[0] is headers:
            return cached[1]
        text = [(n.decode("utf-8", "replace"), v.decode("utf-8", "replace")) for n, v in headers]
        if len(self._texts) >= 64:
            self._texts.clear()
        self._texts[id(headers)] = (headers, text)
        return text

    def _sent_all(self, stream: Stream) -> None:
        self._end_local(stream)  # END_STREAM went out on the last DATA frame

    def _header_block(self, stream_id: int, flags: int, block: bytes, self_dependent: bool) -> None:
        headers = self._decode(block)
        stream = self._streams.get(stream_id)
        if stream is None:
            if self._idle(stream_id):
                raise ProtocolError(ErrorCode.PROTOCOL_ERROR, f"HEADERS on stream {stream_id}")
            return  # a stream this end reset or finished
        if not stream.headers_received:
            stream.headers_received = True
            self._events.append(HeadersReceived(stream_id, headers))
        elif not flags & FLAG_END_STREAM:
            reason = "a second header block without END_STREAM"
            self._stream_error(stream_id, ErrorCode.PROTOCOL_ERROR, reason)
            return
        else:
            self._events.append(TrailersReceived(stream_id, headers))
        if flags & FLAG_END_STREAM:
            self._end_remote(stream)
