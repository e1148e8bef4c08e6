"""The client end of an HTTP/2 connection: requests out, responses back (the load generator)."""

from __future__ import annotations

from typing import Any

from shipyard.protocol.http2.endpoint import Endpoint, Stream
from shipyard.protocol.http2.frames import (
    FLAG_END_STREAM,
    ErrorCode,
    ProtocolError,
    Response,
)

__all__ = ["ClientConnection"]


class ClientConnection(Endpoint):
    """The client end: :meth:`request` opens a stream, :meth:`receive` returns responses."""

    client = True

    def request(self, headers: bytes, body: bytes) -> int:
        """Open a stream sending the ``headers`` block and ``body`` (END_STREAM); its id.

        The caller keeps :attr:`~Endpoint.open_streams` under :attr:`peer_max_streams`.
        """
        stream_id = self._last_stream_id + 2 if self._last_stream_id else 1
        self._last_stream_id = stream_id
        stream = Stream(stream_id, self._peer_initial_window, self._stream_window)
        stream.pending_data = body
        stream.end_with_data = True
        self._streams[stream_id] = stream
        self._queue_header_block(stream_id, headers, 0 if body else FLAG_END_STREAM)
        if body:
            self._flush_stream(stream)
        return stream_id

    def _sent_all(self, stream: Stream) -> None:
        pass  # the request is out; the stream stays open for the response

    def _peer_reset(self, stream_id: int, code: int, messages: list[Any]) -> None:
        messages.append(Response(stream_id, [], b"", [], reset=code))

    def _stream_error(self, stream_id: int, code: int, messages: list[Any]) -> None:
        super()._stream_error(stream_id, code, messages)
        messages.append(Response(stream_id, [], b"", [], reset=code))  # the call failed

    def _header_block(
        self, flags: int, stream_id: int, headers: list[tuple[str, str]], messages: list[Any]
    ) -> None:
        stream = self._streams.get(stream_id)
        if stream is None:
            if stream_id % 2 == 0 or stream_id > self._last_stream_id:
                raise ProtocolError(ErrorCode.PROTOCOL_ERROR, f"HEADERS on stream {stream_id}")
            return  # a stream we reset
        if stream.headers is None:
            stream.headers = headers
            if flags & FLAG_END_STREAM:  # Trailers-Only
                self._end_stream(stream, headers, messages)
            return
        if not flags & FLAG_END_STREAM:
            self._stream_error(stream_id, ErrorCode.PROTOCOL_ERROR, messages)
            return
        self._end_stream(stream, headers, messages)

    def _end_stream(
        self, stream: Stream, trailers: list[tuple[str, str]], messages: list[Any]
    ) -> None:
        self._close_stream(stream.stream_id)
        if stream.discarding:
            return  # reported in ``oversized`` already
        messages.append(
            Response(stream.stream_id, stream.headers or [], bytes(stream.body), trailers)
        )
