"""The core of an HTTP/2 endpoint (RFC 9113), sans-I/O: frames in, events out, frames back.

:class:`Endpoint` is what both ends of a gRPC connection share. It takes the peer's bytes and
returns what they meant as an ordered list of events (:mod:`.events`): a frame at a time, in
the order the peer sent them, so whoever acts on them sees a stream's request, data, end and
reset in that order. It keeps the stream states, both directions of flow control, the
peer's SETTINGS, HPACK decoding (``hpack``, behind a cache), and answers PING and SETTINGS.
Violations of the protocol either reset the one stream at fault (a stream error, reported as a
:class:`~.events.StreamReset` with ``remote`` False) or end the connection: GOAWAY with the
RFC's error code, and :attr:`Endpoint.closed` says why.

Received data is flow controlled by the consumer: a stream's bytes go back to the peer's
windows only through :meth:`Endpoint.acknowledge` (in batches of half a window), and
:meth:`Endpoint.grant` opens a stream's window beyond its initial size. Output waits for the
peer's windows; :attr:`Endpoint.unsent_bytes` is what waits.

A :class:`~.guard.FrameGuard`, when given, sees every frame header but DATA's before the frame
is processed, and every stream this end resets for the peer's errors; a budget it refuses ends
the connection at that frame, so nothing after it is processed.

The ends: :class:`~.server_endpoint.ServerEndpoint` (requests) and
:class:`~.client.ClientConnection` (the load generator).
"""

from __future__ import annotations

import hpack

from shipyard.protocol.http2.events import (
    DataReceived,
    Event,
    GoAwayReceived,
    PingAcknowledged,
    PingReceived,
    SettingsAcknowledged,
    SettingsReceived,
    StreamEnded,
    StreamReset,
    WindowUpdated,
)
from shipyard.protocol.http2.frames import (
    CONTINUATION,
    DATA,
    DEFAULT_FRAME_SIZE,
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
    PRIORITY,
    PUSH_PROMISE,
    RST_STREAM,
    SETTING,
    SETTINGS,
    SETTINGS_ENABLE_CONNECT_PROTOCOL,
    SETTINGS_ENABLE_PUSH,
    SETTINGS_HEADER_TABLE_SIZE,
    SETTINGS_INITIAL_WINDOW_SIZE,
    SETTINGS_MAX_CONCURRENT_STREAMS,
    SETTINGS_MAX_FRAME_SIZE,
    UINT32,
    WINDOW_UPDATE,
    ErrorCode,
    ProtocolError,
    encode_integer,
    frame,
)
from shipyard.protocol.http2.guard import FrameGuard
from shipyard.protocol.http2.hpack_cache import CachingDecoder
from shipyard.protocol.http2.outbound import Outbound, Stream

__all__ = ["REMEMBERED_GAPS", "Endpoint", "Stream"]

#: Ranges of stream ids the peer skipped that are remembered (a HEADERS frame there is an id
#: out of order); older ones count as closed.
REMEMBERED_GAPS = 64
#: Settings that may only be 0 or 1.
_BOOLEAN_SETTINGS = (SETTINGS_ENABLE_PUSH, SETTINGS_ENABLE_CONNECT_PROTOCOL)


class Endpoint(Outbound):
    """What both ends of a connection share; see the module's description."""

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
            stream_window=stream_window,
            connection_window=connection_window,
        )
        self.max_header_list_bytes = max_header_list_bytes
        self.max_frame_size = max_frame_size  # the largest frame accepted
        self._guard = guard
        #: The HPACK decoder (its table follows the peer's encoder).
        self.decoder = CachingDecoder(max_header_list_bytes)
        self._events: list[Event] = []
        self._buffer = bytearray()
        self._admitted = False  # the frame at the start of the buffer passed _admit()
        self._first_frame = True
        self._gaps: list[tuple[int, int]] = []
        #: A header block in progress: its stream, HEADERS flags, bytes, and self-dependency.
        self._continuation: tuple[int, int, bytearray, bool] | None = None
        #: Set once the peer's first SETTINGS arrived.
        self.settings_received = False
        #: Complete frames received so far.
        self.frames_received = 0
        #: The peer's GOAWAY: the last stream it will process (None before one arrives).
        self.goaway_received: int | None = None

    def close(self, code: ErrorCode, message: str) -> None:
        """End the connection now: GOAWAY(``code``), and nothing more is sent or received."""
        super().close(code, message)
        self._buffer = bytearray()
        self._continuation = None

    def _stream_error(self, stream_id: int, code: ErrorCode, reason: str) -> None:
        """Reset a stream for the peer's error; the guard counts it against the budget."""
        self._out.append(frame(RST_STREAM, 0, stream_id, UINT32.pack(code)))
        self._close_stream(stream_id)
        self._remember_reset(stream_id)
        self._events.append(StreamReset(stream_id, code, False, reason))
        if self._guard is not None:
            violation = self._guard.reset()
            if violation is not None:
                raise ProtocolError(violation.code, violation.message)

    # -- receiving --------------------------------------------------------------------------

    def _process(self, data: bytes) -> list[Event]:
        """Take the peer's bytes; return the events of the frames now complete, in order.

        A connection error stops at the frame at fault: the events before it are returned,
        GOAWAY is queued and :attr:`closed` is set.
        """
        events: list[Event] = []
        if self.closed is not None or not data:
            return events
        self._events = events
        try:
            self._frames(self._preface(data))
        except ProtocolError as exc:
            self.close(exc.code, exc.message)
            self.closed = exc
        return events

    def _preface(self, data: bytes) -> bytes:
        """What follows the peer's connection preface (the server end checks it)."""
        return data

    def _frames(self, data: bytes) -> None:
        """Handle every complete frame of the buffer and ``data``; keep the rest."""
        buffer = self._buffer
        buffered = bool(buffer)
        if buffered:
            buffer += data
        view = buffer if buffered else data
        offset, end, count = 0, len(view), 0
        unpack = FRAME_HEADER.unpack_from
        max_size = self.max_frame_size
        admitted, self._admitted = self._admitted, False
        try:
            while end - offset >= 9:
                word, flags, stream_id = unpack(view, offset)
                length, kind = word >> 8, word & 0xFF
                if not admitted and (
                    kind != DATA
                    or length > max_size
                    or self._continuation is not None
                    or self._first_frame
                ):
                    self._admit(kind, flags, length)
                start = offset + 9
                if end - start < length:
                    self._admitted = True  # the rest of the payload is awaited
                    break
                admitted = False
                offset = start + length
                payload = bytes(buffer[start:offset]) if buffered else data[start:offset]
                count += 1
                stream_id &= 0x7FFFFFFF
                if kind == DATA:
                    self._data(flags, stream_id, payload)
                elif kind == HEADERS:
                    self._headers(flags, stream_id, payload)
                else:
                    self._control(kind, flags, stream_id, payload)
        finally:
            self.frames_received += count
            if buffered:
                del buffer[:offset]
            elif offset < end:
                self._buffer = bytearray(data[offset:])

    def _admit(self, kind: int, flags: int, length: int) -> None:
        """Check a frame by its header, before its payload is waited for."""
        if self._first_frame:
            self._first_frame = False
            if kind != SETTINGS or flags & FLAG_ACK:
                raise ProtocolError(
                    ErrorCode.PROTOCOL_ERROR, "the connection preface must end with SETTINGS"
                )
        if length > self.max_frame_size:
            raise ProtocolError(
                ErrorCode.FRAME_SIZE_ERROR,
                f"frame of {length} bytes over SETTINGS_MAX_FRAME_SIZE {self.max_frame_size}",
            )
        if self._continuation is not None:
            if kind != CONTINUATION:
                raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "expected a CONTINUATION frame")
        elif kind == CONTINUATION:
            raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "CONTINUATION without HEADERS")
        if kind != DATA and self._guard is not None:
            violation = self._guard.frame(kind, flags, length)
            if violation is not None:
                raise ProtocolError(violation.code, violation.message)

    def _control(self, kind: int, flags: int, stream_id: int, payload: bytes) -> None:
        """Every frame but DATA and HEADERS."""
        if kind == CONTINUATION:
            self._continuation_frame(flags, stream_id, payload)
        elif kind == WINDOW_UPDATE:
            self._window_update(stream_id, payload)
        elif kind == SETTINGS:
            self._settings(flags, stream_id, payload)
        elif kind == PING:
            if stream_id:
                raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "PING on a stream")
            if len(payload) != 8:
                raise ProtocolError(ErrorCode.FRAME_SIZE_ERROR, "PING payload is not 8 bytes")
            if flags & FLAG_ACK:
                self._events.append(PingAcknowledged(payload))
            else:
                self._out.append(frame(PING, FLAG_ACK, 0, payload))
                self._events.append(PingReceived(payload))
        elif kind == RST_STREAM:
            self._rst_stream(stream_id, payload)
        elif kind == GOAWAY:
            if stream_id:
                raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "GOAWAY on a stream")
            if len(payload) < 8:
                raise ProtocolError(ErrorCode.FRAME_SIZE_ERROR, "GOAWAY shorter than 8 bytes")
            last = UINT32.unpack_from(payload)[0] & 0x7FFFFFFF
            self.goaway_received = last
            code = UINT32.unpack_from(payload, 4)[0]
            self._events.append(GoAwayReceived(last, code, payload[8:]))
        elif kind == PRIORITY:
            if not stream_id:
                raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "PRIORITY on stream 0")
            code = None
            if len(payload) != 5:
                code = ErrorCode.FRAME_SIZE_ERROR
            elif UINT32.unpack_from(payload)[0] & 0x7FFFFFFF == stream_id:
                code = ErrorCode.PROTOCOL_ERROR  # a stream cannot depend on itself
            if code is not None:
                if self._idle(stream_id):  # no RST_STREAM on an idle stream
                    raise ProtocolError(code, "malformed PRIORITY on an idle stream")
                self._stream_error(stream_id, code, "malformed PRIORITY frame")
        elif kind == PUSH_PROMISE:
            raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "PUSH_PROMISE is not accepted")
        # Unknown frame types are ignored (RFC 9113 section 4.1).

    def _idle(self, stream_id: int) -> bool:
        """Whether a stream id is one no one has opened yet (only odd ids are ever opened)."""
        return stream_id > self._highest or not stream_id & 1

    def _rst_stream(self, stream_id: int, payload: bytes) -> None:
        if not stream_id:
            raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "RST_STREAM on stream 0")
        if len(payload) != 4:
            raise ProtocolError(ErrorCode.FRAME_SIZE_ERROR, "RST_STREAM is not 4 bytes")
        if self._idle(stream_id):
            raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "RST_STREAM on an idle stream")
        if stream_id in self._streams:
            self._close_stream(stream_id)
            self._events.append(StreamReset(stream_id, UINT32.unpack(payload)[0], True))

    def _settings(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id:
            raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "SETTINGS on a stream")
        if flags & FLAG_ACK:
            if payload:
                raise ProtocolError(ErrorCode.FRAME_SIZE_ERROR, "SETTINGS ACK with a payload")
            self._events.append(SettingsAcknowledged())
            return
        if len(payload) % 6:
            raise ProtocolError(ErrorCode.FRAME_SIZE_ERROR, "SETTINGS length not a multiple of 6")
        changed: dict[int, int] = {}
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
            elif identifier == SETTINGS_HEADER_TABLE_SIZE:
                if value < self._table_size:  # blocks must start with a size update (7541 4.2)
                    self._table_size = value
                    self._table_update = encode_integer(value, 5, 0x20)
            elif (
                identifier in (SETTINGS_ENABLE_PUSH, SETTINGS_ENABLE_CONNECT_PROTOCOL) and value > 1
            ):
                raise ProtocolError(ErrorCode.PROTOCOL_ERROR, f"SETTINGS {identifier} = {value}")
            changed[identifier] = value
        self._out.append(frame(SETTINGS, FLAG_ACK, 0))
        self.settings_received = True
        self._events.append(SettingsReceived(changed))
        if self._blocked:  # a larger initial window may release some
            self._unblock()

    def _window_update(self, stream_id: int, payload: bytes) -> None:
        if len(payload) != 4:
            raise ProtocolError(ErrorCode.FRAME_SIZE_ERROR, "WINDOW_UPDATE is not 4 bytes")
        increment = UINT32.unpack(payload)[0] & 0x7FFFFFFF
        if not stream_id:
            if not increment:
                raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "WINDOW_UPDATE of 0")
            self._send_window += increment
            if self._send_window > MAX_WINDOW:
                raise ProtocolError(ErrorCode.FLOW_CONTROL_ERROR, "connection window over 2^31-1")
            self._events.append(WindowUpdated(0, increment))
            if self._blocked:
                self._unblock()
            return
        stream = self._streams.get(stream_id)
        if stream is None:
            if self._idle(stream_id):
                raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "WINDOW_UPDATE on an idle stream")
            return  # a closed stream: allowed, ignored
        if not increment:
            self._stream_error(stream_id, ErrorCode.PROTOCOL_ERROR, "WINDOW_UPDATE of 0")
            return
        stream.send_window += increment
        if stream.send_window > MAX_WINDOW:
            self._stream_error(stream_id, ErrorCode.FLOW_CONTROL_ERROR, "window over 2^31-1")
            return
        self._events.append(WindowUpdated(stream_id, increment))
        if stream_id in self._blocked and self._send_window > 0:
            del self._blocked[stream_id]
            self._flush_stream(stream)

    @staticmethod
    def _strip_padding(flags: int, payload: bytes) -> bytes:
        if not flags & FLAG_PADDED:
            return payload
        if not payload or payload[0] >= len(payload):
            raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "padding longer than the frame")
        return payload[1 : len(payload) - payload[0]]

    def _headers(self, flags: int, stream_id: int, payload: bytes) -> None:
        if not stream_id:
            raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "HEADERS on stream 0")
        block = self._strip_padding(flags, payload)
        self_dependent = False
        if flags & FLAG_PRIORITY:
            if len(block) < 5:
                raise ProtocolError(ErrorCode.FRAME_SIZE_ERROR, "HEADERS too short for priority")
            self_dependent = UINT32.unpack_from(block)[0] & 0x7FFFFFFF == stream_id
            block = block[5:]
        if flags & FLAG_END_HEADERS:
            self._header_block(stream_id, flags, block, self_dependent)
        else:
            self._continuation = (stream_id, flags, bytearray(block), self_dependent)

    def _continuation_frame(self, flags: int, stream_id: int, payload: bytes) -> None:
        assert self._continuation is not None  # _admit() refuses a CONTINUATION out of place
        first_id, first_flags, block, self_dependent = self._continuation
        if stream_id != first_id:
            raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "CONTINUATION on another stream")
        block += payload
        if flags & FLAG_END_HEADERS:
            self._continuation = None
            self._header_block(stream_id, first_flags, bytes(block), self_dependent)

    def _decode(self, block: bytes) -> list[tuple[bytes, bytes]]:
        """Decode a header block: always, since the decoder's table must follow the peer's."""
        try:
            headers: list[tuple[bytes, bytes]] = self.decoder.decode(block, raw=True)
        except hpack.OversizedHeaderListError as exc:
            raise ProtocolError(
                ErrorCode.ENHANCE_YOUR_CALM,
                f"header list over {self.max_header_list_bytes} bytes "
                "(SETTINGS_MAX_HEADER_LIST_SIZE, grpc_max_header_list_bytes)",
            ) from exc
        except (hpack.HPACKError, ValueError, IndexError) as exc:
            raise ProtocolError(ErrorCode.COMPRESSION_ERROR, f"bad header block: {exc}") from exc
        return headers

    def _header_block(self, stream_id: int, flags: int, block: bytes, self_dependent: bool) -> None:
        """A whole header block arrived (``self_dependent``: its priority names its stream)."""
        raise NotImplementedError

    def _data(self, flags: int, stream_id: int, payload: bytes) -> None:
        if not stream_id:
            raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "DATA on stream 0")
        size = len(payload)  # padding counts for flow control too
        self._recv_window -= size
        if self._recv_window < 0:
            raise ProtocolError(ErrorCode.FLOW_CONTROL_ERROR, "DATA over the connection window")
        stream = self._streams.get(stream_id)
        if stream is None or stream.remote_closed or not stream.headers_received:
            if stream is None and self._idle(stream_id):
                raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "DATA on an idle stream")
            self.acknowledge(0, size)  # dropped here: the peer gets its window back
            if stream is not None or stream_id not in self._resets:
                self._stream_error(stream_id, ErrorCode.STREAM_CLOSED, "DATA on a stream not open")
            return
        stream.recv_window -= size
        if stream.recv_window < 0:
            self.acknowledge(0, size)
            self._stream_error(stream_id, ErrorCode.FLOW_CONTROL_ERROR, "DATA over the window")
            return
        data = self._strip_padding(flags, payload) if flags & FLAG_PADDED else payload
        if stream.content_length >= 0:
            stream.received += len(data)
            if stream.received > stream.content_length:
                self.acknowledge(0, size)
                self._stream_error(stream_id, ErrorCode.PROTOCOL_ERROR, "DATA over content-length")
                return
        self._events.append(DataReceived(stream_id, data, size))
        if flags & FLAG_END_STREAM:
            self._end_remote(stream)

    def _end_remote(self, stream: Stream) -> None:
        """The peer ended its side of the stream."""
        if 0 <= stream.content_length != stream.received:
            reason = "DATA not as long as content-length"
            self._stream_error(stream.stream_id, ErrorCode.PROTOCOL_ERROR, reason)
            return
        stream.remote_closed = True
        self._events.append(StreamEnded(stream.stream_id))
        if stream.local_closed:
            self._close_stream(stream.stream_id)
