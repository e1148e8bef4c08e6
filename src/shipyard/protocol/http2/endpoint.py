"""The load generator's HTTP/2 core: frames in, settings, flow control, HPACK (see client.py).

Written for both ends; the server's connection is ``h2`` now (:mod:`.server`), so only
:class:`~shipyard.protocol.http2.client.ClientConnection` builds on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import hpack
import hpack.exceptions

from shipyard.protocol.http2.frames import (
    CONTINUATION,
    DATA,
    DEFAULT_FRAME_SIZE,
    DEFAULT_WINDOW,
    FLAG_ACK,
    FLAG_END_HEADERS,
    FLAG_END_STREAM,
    FLAG_PADDED,
    FLAG_PRIORITY,
    FRAME_HEADER,
    GOAWAY,
    HEADERS,
    MAX_FRAME_SIZE_LIMIT,
    MAX_WINDOW,
    PING,
    PREFACE,
    PRIORITY,
    PUSH_PROMISE,
    RST_STREAM,
    SETTING,
    SETTINGS,
    SETTINGS_ENABLE_PUSH,
    SETTINGS_INITIAL_WINDOW_SIZE,
    SETTINGS_MAX_CONCURRENT_STREAMS,
    SETTINGS_MAX_FRAME_SIZE,
    SETTINGS_MAX_HEADER_LIST_SIZE,
    UINT32,
    WINDOW_UPDATE,
    ErrorCode,
    ProtocolError,
    frame,
)

__all__ = ["Endpoint", "Stream"]

#: Decoded header blocks kept per connection, and the largest block kept: a repeated call's
#: block is a few bytes of indexed fields, an answer's a few dozen.
CACHED_BLOCKS = 256
CACHED_BLOCK_BYTES = 1024


@dataclass(slots=True)
class Stream:
    """What an endpoint keeps per open stream."""

    stream_id: int
    send_window: int
    recv_window: int
    headers: list[tuple[str, str]] | None = None
    body: bytearray = field(default_factory=bytearray)
    #: Set once the peer has ended its side (END_STREAM).
    remote_closed: bool = False
    #: The body exceeded the limit: further data is counted for flow control and dropped.
    discarding: bool = False
    #: Queued output: DATA waiting for send window, then trailers or END_STREAM on the data.
    pending_data: bytes = b""
    pending_trailers: bytes | None = None
    end_with_data: bool = False


class Endpoint:
    """What both ends of a connection share: frames, settings, flow control, HPACK decoding.

    ``max_body_bytes`` bounds one stream's body: over it, the stream is listed once in
    :attr:`oversized` and the rest of its data is dropped (counted for flow control still).
    """

    #: The stream parity this end opens (clients odd, servers would be even).
    client = False

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
        self.max_body_bytes = max_body_bytes
        self.max_concurrent_streams = max_concurrent_streams
        self.max_header_list_bytes = max_header_list_bytes
        self.max_frame_size = max_frame_size  # the largest frame we accept
        self._stream_window = stream_window
        self._connection_window = connection_window
        self._decoder = hpack.Decoder()
        self._decoder.max_header_list_size = max_header_list_bytes
        self._decoded: dict[bytes, list[tuple[str, str]]] = {}
        self._buffer = b""
        self._out: list[bytes] = []
        self._streams: dict[int, Stream] = {}
        self._last_stream_id = 0  # the highest stream the peer (server end) or we opened
        self._peer_frame_size = DEFAULT_FRAME_SIZE
        self._peer_initial_window = DEFAULT_WINDOW
        #: The peer's SETTINGS_MAX_CONCURRENT_STREAMS (unlimited until it says otherwise).
        self.peer_max_streams = 2**31 - 1
        self._send_window = DEFAULT_WINDOW
        self._recv_unacked = 0  # connection-level bytes received and not yet given back
        self._recv_window = max(connection_window, DEFAULT_WINDOW)  # what the peer may send
        #: Set once the peer's first SETTINGS arrived (a client waits for it before calling).
        self.settings_received = False
        self._blocked: dict[int, None] = {}  # streams waiting for send window, in order
        self._continuation: tuple[int, int, bytearray] | None = None  # stream, flags, block
        self.goaway_sent = False
        #: The peer's GOAWAY: the last stream it will process (None before one arrives).
        self.goaway_received: int | None = None
        #: Streams whose body went over ``max_body_bytes`` in the last receive().
        self.oversized: list[int] = []
        #: Streams reset in the last receive(): by the peer, or by us for a stream error of
        #: its making (whoever runs a call on one of them should stop).
        self.reset: list[int] = []
        settings = [
            (SETTINGS_INITIAL_WINDOW_SIZE, stream_window),
            (SETTINGS_MAX_FRAME_SIZE, max_frame_size),
            (SETTINGS_MAX_HEADER_LIST_SIZE, max_header_list_bytes),
        ]
        if self.client:
            self._out.append(PREFACE)
            settings.append((SETTINGS_ENABLE_PUSH, 0))
        else:
            settings.append((SETTINGS_MAX_CONCURRENT_STREAMS, max_concurrent_streams))
        payload = b"".join(SETTING.pack(key, value) for key, value in settings)
        self._out.append(frame(SETTINGS, 0, 0, payload))
        if connection_window > DEFAULT_WINDOW:
            increment = connection_window - DEFAULT_WINDOW
            self._out.append(frame(WINDOW_UPDATE, 0, 0, UINT32.pack(increment)))

    # -- output ---------------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        """The bytes queued for the peer since the last call (may be empty)."""
        if not self._out:
            return b""
        data = b"".join(self._out)
        self._out.clear()
        return data

    @property
    def open_streams(self) -> int:
        """Streams not yet finished."""
        return len(self._streams)

    @property
    def last_stream_id(self) -> int:
        """The highest stream opened on this connection."""
        return self._last_stream_id

    def reset_stream(self, stream_id: int, code: int) -> None:
        """Send RST_STREAM and forget the stream."""
        self._out.append(frame(RST_STREAM, 0, stream_id, UINT32.pack(code)))
        self._close_stream(stream_id)

    def goaway(self, code: int = ErrorCode.NO_ERROR, message: str = "") -> None:
        """Send GOAWAY: no new streams; those up to :attr:`last_stream_id` are still answered."""
        if self.goaway_sent:
            return
        self.goaway_sent = True
        payload = UINT32.pack(0 if self.client else self._last_stream_id) + UINT32.pack(code)
        self._out.append(frame(GOAWAY, 0, 0, payload + message.encode("utf-8", "replace")))

    def _queue_header_block(self, stream_id: int, block: bytes, flags: int) -> None:
        limit = self._peer_frame_size
        if len(block) <= limit:
            self._out.append(frame(HEADERS, flags | FLAG_END_HEADERS, stream_id, block))
            return
        self._out.append(frame(HEADERS, flags, stream_id, block[:limit]))
        rest = block[limit:]
        while rest:
            chunk, rest = rest[:limit], rest[limit:]
            end = 0 if rest else FLAG_END_HEADERS
            self._out.append(frame(CONTINUATION, end, stream_id, chunk))

    def _flush_stream(self, stream: Stream) -> None:
        """Send as much of the stream's queued output as the windows allow."""
        data = stream.pending_data
        end_flag = FLAG_END_STREAM if stream.end_with_data else 0
        while data:
            size = min(len(data), self._peer_frame_size, self._send_window, stream.send_window)
            if size <= 0:
                stream.pending_data = data
                self._blocked[stream.stream_id] = None
                return
            chunk, data = data[:size], data[size:]
            self._out.append(frame(DATA, 0 if data else end_flag, stream.stream_id, chunk))
            self._send_window -= size
            stream.send_window -= size
        stream.pending_data = b""
        self._sent_all(stream)

    def _sent_all(self, stream: Stream) -> None:
        """The stream's queued DATA is out; what follows depends on the end."""
        raise NotImplementedError

    def _close_stream(self, stream_id: int) -> None:
        self._streams.pop(stream_id, None)
        self._blocked.pop(stream_id, None)

    def _unblock(self) -> None:
        for stream_id in list(self._blocked):
            if self._send_window <= 0:
                return
            stream = self._streams.get(stream_id)
            del self._blocked[stream_id]
            if stream is not None:
                self._flush_stream(stream)

    # -- input ----------------------------------------------------------------------------

    def receive(self, data: bytes) -> list[Any]:
        """Take bytes from the peer; return the messages that are now complete.

        Raises :class:`ProtocolError` for a connection error; a GOAWAY for it is already
        queued in :meth:`data_to_send`, and the caller must close the connection after
        writing it.
        """
        self.oversized = []
        self.reset = []
        try:
            return self._receive(data)
        except ProtocolError as exc:
            self.goaway(exc.code, exc.message)
            raise

    def _preface(self, buffer: bytes) -> bytes | None:
        """What follows the peer's preface; None while more bytes are needed."""
        return buffer

    def _receive(self, data: bytes) -> list[Any]:
        buffer = self._preface(self._buffer + data if self._buffer else data)
        if buffer is None:
            return []
        messages: list[Any] = []
        offset, end = 0, len(buffer)
        unpack = FRAME_HEADER.unpack_from
        while end - offset >= 9:
            word, flags, stream_id = unpack(buffer, offset)
            length, kind = word >> 8, word & 0xFF
            if length > self.max_frame_size:
                raise ProtocolError(
                    ErrorCode.FRAME_SIZE_ERROR,
                    f"frame of {length} bytes over SETTINGS_MAX_FRAME_SIZE {self.max_frame_size}",
                )
            if end - offset - 9 < length:
                break
            payload = buffer[offset + 9 : offset + 9 + length]
            offset += 9 + length
            self._frame(kind, flags, stream_id & 0x7FFFFFFF, payload, messages)
        self._buffer = buffer[offset:] if offset < end else b""
        if self._recv_unacked >= self._connection_window // 2:
            self._out.append(frame(WINDOW_UPDATE, 0, 0, UINT32.pack(self._recv_unacked)))
            self._recv_window += self._recv_unacked
            self._recv_unacked = 0
        return messages

    def _frame(
        self, kind: int, flags: int, stream_id: int, payload: bytes, messages: list[Any]
    ) -> None:
        if self._continuation is not None and kind != CONTINUATION:
            raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "expected a CONTINUATION frame")
        if kind == DATA:
            self._data(flags, stream_id, payload, messages)
        elif kind == HEADERS:
            self._headers(flags, stream_id, payload, messages)
        elif kind == CONTINUATION:
            self._continuation_frame(flags, stream_id, payload, messages)
        elif kind == SETTINGS:
            self._settings(flags, stream_id, payload)
        elif kind == PING:
            if stream_id != 0:
                raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "PING on a stream")
            if len(payload) != 8:
                raise ProtocolError(ErrorCode.FRAME_SIZE_ERROR, "PING payload is not 8 bytes")
            if not flags & FLAG_ACK:
                self._out.append(frame(PING, FLAG_ACK, 0, payload))
        elif kind == WINDOW_UPDATE:
            self._window_update(stream_id, payload, messages)
        elif kind == RST_STREAM:
            if stream_id == 0:
                raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "RST_STREAM on stream 0")
            if len(payload) != 4:
                raise ProtocolError(ErrorCode.FRAME_SIZE_ERROR, "RST_STREAM is not 4 bytes")
            if stream_id > self._last_stream_id:
                raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "RST_STREAM on an idle stream")
            if stream_id in self._streams:
                self._close_stream(stream_id)
                self.reset.append(stream_id)
                self._peer_reset(stream_id, UINT32.unpack(payload)[0], messages)
        elif kind == GOAWAY:
            if stream_id != 0:
                raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "GOAWAY on a stream")
            if len(payload) < 8:
                raise ProtocolError(ErrorCode.FRAME_SIZE_ERROR, "GOAWAY shorter than 8 bytes")
            self.goaway_received = UINT32.unpack_from(payload)[0] & 0x7FFFFFFF
        elif kind == PRIORITY:
            if stream_id == 0:
                raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "PRIORITY on stream 0")
            if len(payload) != 5:
                self._stream_error(stream_id, ErrorCode.FRAME_SIZE_ERROR, messages)
        elif kind == PUSH_PROMISE:
            raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "PUSH_PROMISE is not accepted")
        # Unknown frame types are ignored (RFC 9113 section 4.1).

    def _peer_reset(self, stream_id: int, code: int, messages: list[Any]) -> None:
        """The peer reset an open stream (already forgotten and listed in :attr:`reset`)."""

    def _stream_error(self, stream_id: int, code: int, messages: list[Any]) -> None:
        """A stream error found in what the peer sent: reset that stream (RFC 9113 5.4.2)."""
        if stream_id in self._streams:
            self.reset.append(stream_id)
        self.reset_stream(stream_id, code)

    def _settings(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id != 0:
            raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "SETTINGS on a stream")
        if flags & FLAG_ACK:
            if payload:
                raise ProtocolError(ErrorCode.FRAME_SIZE_ERROR, "SETTINGS ACK with a payload")
            return
        self.settings_received = True
        if len(payload) % 6:
            raise ProtocolError(ErrorCode.FRAME_SIZE_ERROR, "SETTINGS length not a multiple of 6")
        for index in range(0, len(payload), 6):
            identifier, value = SETTING.unpack_from(payload, index)
            if identifier == SETTINGS_INITIAL_WINDOW_SIZE:
                if value > MAX_WINDOW:
                    raise ProtocolError(
                        ErrorCode.FLOW_CONTROL_ERROR, "SETTINGS_INITIAL_WINDOW_SIZE over 2^31-1"
                    )
                delta = value - self._peer_initial_window
                self._peer_initial_window = value
                for stream in self._streams.values():
                    stream.send_window += delta
                    if stream.send_window > MAX_WINDOW:
                        raise ProtocolError(
                            ErrorCode.FLOW_CONTROL_ERROR, "a stream window went over 2^31-1"
                        )
            elif identifier == SETTINGS_MAX_FRAME_SIZE:
                if not DEFAULT_FRAME_SIZE <= value <= MAX_FRAME_SIZE_LIMIT:
                    raise ProtocolError(
                        ErrorCode.PROTOCOL_ERROR, f"SETTINGS_MAX_FRAME_SIZE {value} out of range"
                    )
                self._peer_frame_size = value
            elif identifier == SETTINGS_MAX_CONCURRENT_STREAMS:
                self.peer_max_streams = value
            # HEADER_TABLE_SIZE bounds an encoder table we never use; the rest are advisory.
        self._out.append(frame(SETTINGS, FLAG_ACK, 0))
        for stream_id in list(self._blocked):  # a larger initial window may unblock some
            blocked = self._streams.get(stream_id)
            if blocked is not None and blocked.send_window > 0 and self._send_window > 0:
                del self._blocked[stream_id]
                self._flush_stream(blocked)

    def _window_update(self, stream_id: int, payload: bytes, messages: list[Any]) -> None:
        if len(payload) != 4:
            raise ProtocolError(ErrorCode.FRAME_SIZE_ERROR, "WINDOW_UPDATE is not 4 bytes")
        increment = UINT32.unpack(payload)[0] & 0x7FFFFFFF
        if stream_id == 0:
            if increment == 0:
                raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "WINDOW_UPDATE of 0")
            self._send_window += increment
            if self._send_window > MAX_WINDOW:
                raise ProtocolError(ErrorCode.FLOW_CONTROL_ERROR, "connection window over 2^31-1")
            self._unblock()
            return
        stream = self._streams.get(stream_id)
        if stream is None:
            if stream_id > self._last_stream_id:
                raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "WINDOW_UPDATE on an idle stream")
            return  # a stream we have closed: allowed, ignored
        if increment == 0:
            self._stream_error(stream_id, ErrorCode.PROTOCOL_ERROR, messages)
            return
        stream.send_window += increment
        if stream.send_window > MAX_WINDOW:
            self._stream_error(stream_id, ErrorCode.FLOW_CONTROL_ERROR, messages)
            return
        if stream_id in self._blocked and self._send_window > 0:
            del self._blocked[stream_id]
            self._flush_stream(stream)

    def _strip_padding(self, flags: int, payload: bytes) -> bytes:
        if not flags & FLAG_PADDED:
            return payload
        if not payload or payload[0] >= len(payload):
            raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "padding longer than the frame")
        return payload[1 : len(payload) - payload[0]]

    def _headers(self, flags: int, stream_id: int, payload: bytes, messages: list[Any]) -> None:
        if stream_id == 0:
            raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "HEADERS on stream 0")
        block = self._strip_padding(flags, payload)
        if flags & FLAG_PRIORITY:
            block = block[5:]
        if len(block) > self.max_header_list_bytes:
            raise ProtocolError(
                ErrorCode.ENHANCE_YOUR_CALM,
                f"header block over {self.max_header_list_bytes} bytes",
            )
        if flags & FLAG_END_HEADERS:
            self._header_block(flags, stream_id, self._decode(block), messages)
        else:
            self._continuation = (stream_id, flags, bytearray(block))

    def _continuation_frame(
        self, flags: int, stream_id: int, payload: bytes, messages: list[Any]
    ) -> None:
        if self._continuation is None or self._continuation[0] != stream_id:
            raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "CONTINUATION out of place")
        _, first_flags, block = self._continuation
        block += payload
        if len(block) > self.max_header_list_bytes:
            raise ProtocolError(
                ErrorCode.ENHANCE_YOUR_CALM,
                f"header block over {self.max_header_list_bytes} bytes",
            )
        if flags & FLAG_END_HEADERS:
            self._continuation = None
            self._header_block(first_flags, stream_id, self._decode(bytes(block)), messages)

    def _decode(self, block: bytes) -> list[tuple[str, str]]:
        """Decode a header block; always, since the decoder's table must follow the peer's."""
        cached = self._decoded.get(block)
        if cached is not None:
            return cached
        table = self._decoder.header_table
        entries = table.dynamic_entries
        # The front entry itself, not its id: held here, it cannot be freed and its address
        # reused by a new entry, so "is" below tells a table that changed from one that did not.
        count, front, size = len(entries), entries[0] if entries else None, table.maxsize
        try:
            headers = cast(list[tuple[str, str]], self._decoder.decode(block))
        except hpack.exceptions.OversizedHeaderListError as exc:
            raise ProtocolError(
                ErrorCode.ENHANCE_YOUR_CALM, f"header list too large: {exc}"
            ) from exc
        except (hpack.exceptions.HPACKError, UnicodeDecodeError) as exc:
            raise ProtocolError(ErrorCode.COMPRESSION_ERROR, f"bad header block: {exc}") from exc
        # A block that left the decoder's table as it was (indexed fields, literals not
        # indexed) decodes the same way until a block that changes the table, which clears
        # what was cached. Entries are only ever added at the front; evictions without an
        # addition come only from a size change.
        unchanged = (
            len(entries) == count
            and (entries[0] if entries else None) is front
            and table.maxsize == size
        )
        if not unchanged:
            self._decoded.clear()
        elif len(block) <= CACHED_BLOCK_BYTES:
            if len(self._decoded) >= CACHED_BLOCKS:
                self._decoded.clear()
            self._decoded[block] = headers
        return headers

    def _header_block(
        self, flags: int, stream_id: int, headers: list[tuple[str, str]], messages: list[Any]
    ) -> None:
        raise NotImplementedError

    def _data(self, flags: int, stream_id: int, payload: bytes, messages: list[Any]) -> None:
        if stream_id == 0:
            raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "DATA on stream 0")
        self._recv_unacked += len(payload)  # padding counts for flow control too
        self._recv_window -= len(payload)
        if self._recv_window < 0:
            raise ProtocolError(ErrorCode.FLOW_CONTROL_ERROR, "DATA over the connection window")
        stream = self._streams.get(stream_id)
        if stream is None or stream.remote_closed or stream.headers is None:
            if stream_id > self._last_stream_id:
                raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "DATA on an idle stream")
            if stream is None:  # reset or finished: the peer may not know yet
                return
            self._stream_error(stream_id, ErrorCode.STREAM_CLOSED, messages)
            return
        stream.recv_window -= len(payload)
        if stream.recv_window < 0:
            self._stream_error(stream_id, ErrorCode.FLOW_CONTROL_ERROR, messages)
            return
        if stream.recv_window < self._stream_window // 2 and not flags & FLAG_END_STREAM:
            increment = self._stream_window - stream.recv_window
            stream.recv_window = self._stream_window
            self._out.append(frame(WINDOW_UPDATE, 0, stream_id, UINT32.pack(increment)))
        data = self._strip_padding(flags, payload)
        if not stream.discarding:
            if len(stream.body) + len(data) > self.max_body_bytes:
                stream.discarding = True
                stream.body = bytearray()
                self.oversized.append(stream_id)
            else:
                stream.body += data
        if flags & FLAG_END_STREAM:
            self._end_stream(stream, [], messages)

    def _end_stream(
        self, stream: Stream, trailers: list[tuple[str, str]], messages: list[Any]
    ) -> None:
        raise NotImplementedError
