"""What an HTTP/2 endpoint sends, and the connection state both directions share.

:class:`Outbound` holds the streams and windows of a connection and queues frames for the
peer: header blocks (split into CONTINUATION frames past the peer's frame size, after an HPACK
table size update when the peer's SETTINGS asked for one), DATA as far as the peer's windows
allow (the rest waits, in order, for WINDOW_UPDATE or SETTINGS), RST_STREAM, PING, GOAWAY,
and WINDOW_UPDATE as received bytes are consumed (:meth:`Outbound.acknowledge`) or a stream
is given more room (:meth:`Outbound.grant`). :class:`~.endpoint.Endpoint` adds the receiving
side.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from shipyard.protocol.http2.frames import (
    CONTINUATION,
    DATA,
    DEFAULT_FRAME_SIZE,
    DEFAULT_HEADER_TABLE_SIZE,
    DEFAULT_WINDOW,
    FLAG_END_HEADERS,
    FLAG_END_STREAM,
    FRAME_HEADER,
    GOAWAY,
    HEADERS,
    PING,
    RST_STREAM,
    SETTING,
    SETTINGS,
    UINT32,
    WINDOW_UPDATE,
    ErrorCode,
    ProtocolError,
    frame,
)

__all__ = ["REMEMBERED_RESETS", "Outbound", "Stream"]

#: Streams this end reset that are remembered, so that what the peer still sends on them is
#: dropped quietly (it may not have seen the reset yet); older ones count as closed.
REMEMBERED_RESETS = 256


@dataclass(slots=True, eq=False)
class Stream:
    """What an endpoint keeps per open stream."""

    stream_id: int
    #: What this end may still send on the stream (the peer's window).
    send_window: int
    #: What the peer may still send, the window's full size, and what was consumed since the
    #: last WINDOW_UPDATE.
    recv_window: int
    recv_size: int
    recv_consumed: int = 0
    headers_received: bool = False
    remote_closed: bool = False
    local_closed: bool = False
    #: Output waiting for window: DATA (from ``pending_pos``), then the trailers block.
    pending: bytes = b""
    pending_pos: int = 0
    trailers: bytes | None = None
    #: END_STREAM goes on the last DATA frame (a request) rather than on trailers.
    end_with_data: bool = False
    #: The request's content-length (-1: none) and the DATA bytes it brought so far.
    content_length: int = -1
    received: int = 0


class Outbound:
    """A connection's streams and windows, and the frames queued for the peer."""

    #: Whether this is the client end (it opens the odd streams and sends the preface).
    client: ClassVar[bool] = False

    def __init__(
        self, *, max_concurrent_streams: int, stream_window: int, connection_window: int
    ) -> None:
        self.max_concurrent_streams = max_concurrent_streams
        self._stream_window = stream_window  # the receive window each stream starts with
        self._out: list[bytes] = []
        self._streams: dict[int, Stream] = {}
        self._highest = 0  # the highest (odd) stream id opened on this connection
        self._resets: dict[int, None] = {}  # streams this end reset, oldest first
        self._blocked: dict[int, None] = {}  # streams waiting for send window, in order
        self._peer_frame_size = DEFAULT_FRAME_SIZE
        self._peer_initial_window = DEFAULT_WINDOW
        self._send_window = DEFAULT_WINDOW
        self._recv_window = self._recv_size = max(connection_window, DEFAULT_WINDOW)
        self._recv_consumed = 0
        self._table_size = DEFAULT_HEADER_TABLE_SIZE  # the HPACK table our blocks assume
        self._table_update = b""  # a size update owed at the start of the next block
        #: The peer's SETTINGS_MAX_CONCURRENT_STREAMS (unlimited until it says otherwise).
        self.peer_max_streams = 2**31 - 1
        #: DATA bytes queued and not yet sent (waiting for the peer's windows).
        self.unsent_bytes = 0
        self.goaway_sent = False
        #: Why the connection ended (a GOAWAY with its code is queued); None while open.
        self.closed: ProtocolError | None = None

    def _start(self, settings: list[tuple[int, int]], connection_window: int) -> None:
        """Queue this end's SETTINGS and the connection window beyond the default."""
        payload = b"".join(SETTING.pack(key, value) for key, value in settings)
        self._out.append(frame(SETTINGS, 0, 0, payload))
        if connection_window > DEFAULT_WINDOW:
            increment = connection_window - DEFAULT_WINDOW
            self._out.append(frame(WINDOW_UPDATE, 0, 0, UINT32.pack(increment)))

    @property
    def open_streams(self) -> int:
        """Streams not yet finished (closed both ways or reset)."""
        return len(self._streams)

    @property
    def last_stream_id(self) -> int:
        """The highest stream opened on this connection."""
        return self._highest

    def data_to_send(self) -> bytes:
        """The bytes queued for the peer since the last call (may be empty)."""
        if not self._out:
            return b""
        data = b"".join(self._out)
        self._out.clear()
        return data

    def ping(self, data: bytes) -> None:
        """Send a PING with 8 bytes of ``data`` (the ACK comes back as PingAcknowledged)."""
        if self.closed is None:
            self._out.append(frame(PING, 0, 0, data))

    def reset_stream(self, stream_id: int, code: int) -> None:
        """Send RST_STREAM and forget the stream (what the peer still sends on it is dropped)."""
        if self.closed is None:
            self._out.append(frame(RST_STREAM, 0, stream_id, UINT32.pack(code)))
            self._close_stream(stream_id)
            self._remember_reset(stream_id)

    def goaway(self, code: int = ErrorCode.NO_ERROR, message: str = "") -> None:
        """Send GOAWAY: no new streams; those up to :attr:`last_stream_id` are still served."""
        if self.goaway_sent or self.closed is not None:
            return
        self.goaway_sent = True
        last = 0 if self.client else self._highest
        payload = UINT32.pack(last) + UINT32.pack(code) + message.encode("utf-8", "replace")
        self._out.append(frame(GOAWAY, 0, 0, payload))

    def close(self, code: ErrorCode, message: str) -> None:
        """End the connection now: GOAWAY(``code``), and nothing more is sent or received."""
        if self.closed is not None:
            return
        self.goaway_sent = False  # a graceful GOAWAY already sent is followed by this one
        self.goaway(code, message[:1024])
        self.closed = ProtocolError(code, message)
        self._streams.clear()
        self._blocked.clear()
        self.unsent_bytes = 0

    # -- flow control of what the peer sends -----------------------------------------------

    def acknowledge(self, stream_id: int, size: int) -> None:
        """``size`` flow-controlled bytes of the stream were consumed: give them back.

        The connection's window and the stream's (while the peer may still send on it) are
        updated once half of a window was consumed.
        """
        if size <= 0 or self.closed is not None:
            return
        consumed = self._recv_consumed + size
        if consumed >= self._recv_size >> 1 or consumed >= self._recv_window:
            self._out.append(frame(WINDOW_UPDATE, 0, 0, UINT32.pack(consumed)))
            self._recv_window += consumed
            consumed = 0
        self._recv_consumed = consumed
        stream = self._streams.get(stream_id)
        if stream is None or stream.remote_closed:
            return
        consumed = stream.recv_consumed + size
        if consumed >= stream.recv_size >> 1 or consumed >= stream.recv_window:
            self._out.append(frame(WINDOW_UPDATE, 0, stream_id, UINT32.pack(consumed)))
            stream.recv_window += consumed
            consumed = 0
        stream.recv_consumed = consumed

    def grant(self, stream_id: int, increment: int) -> None:
        """Open a stream's receive window by ``increment`` bytes beyond what it was given."""
        stream = self._streams.get(stream_id)
        if stream is None or stream.remote_closed or increment <= 0 or self.closed is not None:
            return
        stream.recv_window += increment
        stream.recv_size = max(stream.recv_size, stream.recv_window)
        self._out.append(frame(WINDOW_UPDATE, 0, stream_id, UINT32.pack(increment)))

    # -- sending ----------------------------------------------------------------------------

    def _queue_header_block(self, stream_id: int, block: bytes, flags: int) -> None:
        """Queue a header block as HEADERS (+ CONTINUATION frames past the peer's frame size)."""
        if self._table_update:
            block = self._table_update + block
            self._table_update = b""
        limit = self._peer_frame_size
        if len(block) <= limit:
            self._out.append(frame(HEADERS, flags | FLAG_END_HEADERS, stream_id, block))
            return
        self._out.append(frame(HEADERS, flags, stream_id, block[:limit]))
        for start in range(limit, len(block), limit):
            end = 0 if start + limit < len(block) else FLAG_END_HEADERS
            self._out.append(frame(CONTINUATION, end, stream_id, block[start : start + limit]))

    def _flush_stream(self, stream: Stream) -> None:
        """Send as much of the stream's queued DATA as the windows allow, then what follows."""
        data, pos = stream.pending, stream.pending_pos
        end = len(data)
        out, stream_id = self._out, stream.stream_id
        while pos < end:
            size = min(end - pos, self._peer_frame_size, self._send_window, stream.send_window)
            if size <= 0:
                stream.pending_pos = pos
                self._blocked[stream_id] = None
                return
            last = pos + size == end
            flags = FLAG_END_STREAM if last and stream.end_with_data else 0
            out.append(FRAME_HEADER.pack((size << 8) | DATA, flags, stream_id))
            out.append(data if size == end else data[pos : pos + size])
            self._send_window -= size
            stream.send_window -= size
            self.unsent_bytes -= size
            pos += size
        stream.pending, stream.pending_pos = b"", 0
        self._sent_all(stream)

    def _sent_all(self, stream: Stream) -> None:
        """The stream's queued DATA is out; what follows depends on the end."""
        raise NotImplementedError

    def _end_local(self, stream: Stream) -> None:
        """This end sent END_STREAM on the stream."""
        stream.local_closed = True
        if stream.remote_closed:
            self._close_stream(stream.stream_id)

    def _unblock(self) -> None:
        """Windows opened: send what waits, in the order it started waiting."""
        for stream_id in list(self._blocked):
            if self._send_window <= 0:
                return
            stream = self._streams.get(stream_id)
            if stream is not None and stream.send_window > 0:
                del self._blocked[stream_id]
                self._flush_stream(stream)

    def _close_stream(self, stream_id: int) -> None:
        stream = self._streams.pop(stream_id, None)
        if stream is not None:
            self.unsent_bytes -= len(stream.pending) - stream.pending_pos
            self._blocked.pop(stream_id, None)

    def _remember_reset(self, stream_id: int) -> None:
        resets = self._resets
        resets[stream_id] = None
        if len(resets) > REMEMBERED_RESETS:
            del resets[next(iter(resets))]
