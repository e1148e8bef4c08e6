"""The server end of a gRPC connection: ``h2``'s HTTP/2 state machine, Shipyard's policy.

:class:`ServerConnection` is sans-I/O: :meth:`~ServerConnection.receive` takes what a client
sent, :meth:`~ServerConnection.take_ready` hands out the requests that may start,
:meth:`~ServerConnection.respond` queues an answer and :meth:`~ServerConnection.data_to_send`
returns the bytes to write. ``h2`` parses and validates frames, keeps stream states and HPACK;
this class decides what a client may cost:

- **Order.** ``h2`` reports a read as one ordered list of events. A request is only queued
  while the list is walked and handed out after it, so a call reset in the same read as its
  request (rapid reset) is dropped before it ever starts.
- **Streams and calls.** At most ``max_concurrent_streams`` streams are open (more are refused
  with REFUSED_STREAM, counted in the reset budget) and as many calls run; a request that
  arrives while that many run waits, unconsumed, until one ends.
- **Flow control.** A request's bytes are given back to the client's windows only when it is
  handed out (consumed), so a server that cannot keep up stops the client. A message larger
  than the stream window gets window for its declared length, within one reserve per
  connection (granted in arrival order). Answers wait for the client's windows; while more
  than ``max_unsent_bytes`` wait, no new call starts.
- **Budgets and shapes** (:class:`~shipyard.protocol.http2.guard.FrameGuard`), and **timers**
  (:meth:`~ServerConnection.check_timers`): handshake, idle and keepalive.

A connection error never raises: :attr:`~ServerConnection.closed` says why the connection
must close once :meth:`~ServerConnection.data_to_send` is written.
"""

from __future__ import annotations

import collections
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
import h2.exceptions
from h2.errors import ErrorCodes
from h2.settings import SettingCodes, Settings
from hyperframe.frame import GoAwayFrame

from shipyard.protocol.http2.guard import FrameGuard, Violation
from shipyard.protocol.http2.hpack_cache import CachingDecoder, CachingEncoder
from shipyard.protocol.http2.limits import MAX_WINDOW, ConnectionLimits
from shipyard.protocol.http2.streams import READY, RECEIVING, RUNNING, Stream
from shipyard.protocol.http2.timers import SEND_PING, ConnectionTimers

__all__ = ["Received", "Request", "ServerConnection"]

Headers = Sequence[tuple[bytes, bytes]]

_CONFIG = h2.config.H2Configuration(
    client_side=False,
    header_encoding=None,  # names and values stay bytes: nothing is decoded that is not read
    validate_inbound_headers=True,  # RFC 9113 8.2: pseudo-headers, lowercase, no connection-*
    normalize_inbound_headers=False,  # validation already refuses what it would rewrite
    validate_outbound_headers=False,  # the server's own headers are constants
    normalize_outbound_headers=False,
)


@dataclass(slots=True)
class Request:
    """A stream's whole request, handed out to run: its headers and body (one gRPC message)."""

    stream_id: int
    headers: Headers
    body: bytes


@dataclass(slots=True)
class Received:
    """What a read changed for the transport."""

    #: Calls handed out earlier whose stream the client reset: cancel them.
    cancelled: list[int] = field(default_factory=list)
    #: Streams whose message declared more than ``max_message_bytes``: answer them now.
    oversized: list[int] = field(default_factory=list)


class ServerConnection:
    """One client connection: frames in through ``h2``, requests out, answers back."""

    def __init__(
        self, limits: ConnectionLimits, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limits = limits
        self._clock = clock
        self._guard = FrameGuard(limits, clock)
        conn = self._h2 = h2.connection.H2Connection(config=_CONFIG)
        conn.encoder = CachingEncoder()
        conn.decoder = CachingDecoder(limits.max_header_list_bytes)
        settings = {
            SettingCodes.MAX_CONCURRENT_STREAMS: limits.max_concurrent_streams,
            SettingCodes.INITIAL_WINDOW_SIZE: limits.stream_window_bytes,
            SettingCodes.MAX_FRAME_SIZE: limits.max_frame_bytes,
            SettingCodes.MAX_HEADER_LIST_SIZE: limits.max_header_list_bytes,
        }
        conn.local_settings = Settings(client=False, initial_values=settings)
        conn.max_inbound_frame_size = limits.max_frame_bytes
        conn.initiate_connection()
        window = limits.connection_window_bytes
        if window > 65_535:
            conn.increment_flow_control_window(window - 65_535)
        # Refusing a stream over the advertised limit is ours (REFUSED_STREAM, a stream error,
        # as RFC 9113 5.1.2 asks); h2 would end the connection instead, so its own count only
        # backs ours up, well above it.
        backstop = min(2 * limits.max_concurrent_streams + 100, MAX_WINDOW)
        settings[SettingCodes.MAX_CONCURRENT_STREAMS] = backstop
        conn.local_settings = Settings(client=False, initial_values=settings)
        #: Why the connection must close (after writing data_to_send()); None while open.
        self.closed: Violation | None = None
        self.goaway_sent = False
        self._goaway_last = 0
        self._out: list[bytes] = []  # our own frames, in order with h2's output
        self._streams: dict[int, Stream] = {}
        self._ready: collections.deque[Stream] = collections.deque()
        self._running: set[int] = set()
        self._blocked: dict[int, None] = {}  # streams whose answer waits for window, in order
        self._waiting: collections.deque[Stream] = collections.deque()  # for a reserve
        self._reserved = 0
        self._unsent = 0
        self._timers = ConnectionTimers(limits, clock())

    # -- state -------------------------------------------------------------------------------

    @property
    def open_streams(self) -> int:
        """Streams the client opened that are not finished (answered or reset)."""
        return len(self._streams)

    @property
    def running(self) -> int:
        """Calls handed out whose end the transport has not reported (:meth:`call_done`)."""
        return len(self._running)

    @property
    def unsent_bytes(self) -> int:
        """Answer bytes waiting for the client's flow-control windows."""
        return self._unsent

    @property
    def buffered_bytes(self) -> int:
        """Request bytes received and not yet given back to the client's windows."""
        return sum(stream.unacked for stream in self._streams.values())

    @property
    def queued_calls(self) -> int:
        """Complete requests waiting for a call to end or answers to drain."""
        return sum(1 for s in self._ready if s.state == READY)

    @property
    def finished(self) -> bool:
        """Whether the connection can close now: closed, or drained after a graceful GOAWAY."""
        if self.closed is not None:
            return True
        return self.goaway_sent and not self._streams and not self._running

    # -- input -------------------------------------------------------------------------------

    def receive(self, data: bytes) -> Received:
        """Take bytes from the client; never raises for what a client sends (see :attr:`closed`)."""
        received = Received()
        if self.closed is not None:
            return received
        guard = self._guard
        frames = guard.frames
        allowed, violation = guard.feed(data)
        if allowed:
            try:
                events = self._h2.receive_data(data if allowed == len(data) else data[:allowed])
            except h2.exceptions.ProtocolError as exc:
                # h2 has queued its GOAWAY with the error code already.
                self.closed = Violation(ErrorCodes(exc.error_code), str(exc) or type(exc).__name__)
                return received
            self._dispatch(events, received)
        if guard.frames != frames:
            self._timers.frame_received(self._clock())
        if violation is not None:
            self.close(violation)
        self._update_idle()
        return received

    def _dispatch(self, events: list[h2.events.Event], received: Received) -> None:
        """Walk one read's events in order."""
        for event in events:
            kind = type(event)
            if kind is h2.events.DataReceived:
                self._on_data(event, received)  # type: ignore[arg-type]
            elif kind is h2.events.RequestReceived:
                self._on_request(event.stream_id, event.headers)  # type: ignore[attr-defined]
            elif kind is h2.events.StreamEnded:
                self._on_end(event.stream_id)  # type: ignore[attr-defined]
            elif kind is h2.events.StreamReset:
                self._on_reset(event, received)  # type: ignore[arg-type]
            elif kind is h2.events.WindowUpdated:
                self._unblock(event.stream_id)  # type: ignore[attr-defined]
            elif kind is h2.events.RemoteSettingsChanged:
                self._timers.handshake_done = True
                self._unblock(0)  # a larger initial window may release answers
            elif kind is h2.events.PingAckReceived:
                self._timers.ping_acknowledged(event.ping_data)  # type: ignore[attr-defined]
            elif kind is h2.events.ConnectionTerminated:
                # h2 takes the client's GOAWAY as the end: nothing more can be sent.
                self.closed = Violation(ErrorCodes.NO_ERROR, "the client sent GOAWAY")
            if self.closed is not None:
                return

    def _on_request(self, stream_id: int, headers: Headers) -> None:
        if self.goaway_sent and stream_id > self._goaway_last:
            self._reset(stream_id, ErrorCodes.REFUSED_STREAM)  # opened after our GOAWAY
            return
        if len(self._streams) >= self.limits.max_concurrent_streams:
            self._reset(stream_id, ErrorCodes.REFUSED_STREAM)
            violation = self._guard.charge_reset()
            if violation is not None:
                self.close(violation)
            return
        self._streams[stream_id] = Stream(stream_id, headers, self.limits.stream_window_bytes)

    def _on_data(self, event: h2.events.DataReceived, received: Received) -> None:
        stream_id, length = event.stream_id, event.flow_controlled_length
        stream = self._streams.get(stream_id)
        if stream is None or stream.state != RECEIVING or stream.oversized:
            if length:  # refused, reset or answered early: the data is dropped, consumed
                self._h2.acknowledge_received_data(length, stream_id)
            return
        stream.unacked += length
        stream.window -= length
        data = event.data
        if data:
            stream.body.append(data)
            stream.size += len(data)
        if stream.declared < 0 and stream.size >= 5:
            head = b"".join(stream.body)[:5] if len(stream.body[0]) < 5 else stream.body[0]
            stream.declared = int.from_bytes(head[1:5], "big")
            if stream.declared > self.limits.max_message_bytes:
                stream.oversized = True
                self._consume(stream)
                received.oversized.append(stream_id)
                return
        if stream.declared >= 0 and not event.stream_ended:
            self._grant(stream)

    def _on_end(self, stream_id: int) -> None:
        stream = self._streams.get(stream_id)
        if stream is None:
            return
        stream.remote_ended = True
        if stream.state == RECEIVING and not stream.oversized:
            stream.state = READY
            self._ready.append(stream)

    def _on_reset(self, event: h2.events.StreamReset, received: Received) -> None:
        stream_id = event.stream_id
        if not event.remote_reset:
            # h2 reset it for an error of the client's (DATA after END_STREAM, ...): that
            # cancels a call as surely as RST_STREAM does, so it is counted the same way.
            violation = self._guard.charge_reset()
            if violation is not None:
                self.close(violation)
        stream = self._streams.pop(stream_id, None)
        if stream is None:
            return
        if stream.state == RUNNING and stream_id in self._running:
            received.cancelled.append(stream_id)  # its slot is freed by call_done()
        self._forget(stream)

    # -- flow control of requests ------------------------------------------------------------

    def _grant(self, stream: Stream) -> None:
        """Give a stream window for the rest of its declared message, within the reserve."""
        need = 5 + stream.declared - stream.size
        extra = need - stream.window
        if extra <= 0 or stream.queued:
            return
        if self._waiting or self._reserved + extra > self.limits.reserve_bytes:
            stream.queued = True  # after those already waiting: first come, first served
            self._waiting.append(stream)
            return
        self._give(stream, extra)

    def _give(self, stream: Stream, extra: int) -> None:
        """Open a stream's window by ``extra`` bytes, held from the reserve."""
        self._reserved += extra
        stream.reserved += extra
        stream.window += extra
        self._h2.increment_flow_control_window(extra, stream.stream_id)

    def _consume(self, stream: Stream) -> None:
        """The stream's bytes are used or dropped: give them back, release its reserve."""
        if stream.unacked:
            self._h2.acknowledge_received_data(stream.unacked, stream.stream_id)
            stream.unacked = 0
        stream.body = []
        if stream.reserved:
            self._reserved -= stream.reserved
            stream.reserved = 0
        while self._waiting:  # the reserve freed: grant the waiting streams, in order
            head = self._waiting[0]
            alive = self._streams.get(head.stream_id) is head and head.state == RECEIVING
            extra = 5 + head.declared - head.size - head.window
            if alive and not head.oversized and extra > 0:
                if self._reserved + extra > self.limits.reserve_bytes:
                    return
                self._give(head, extra)
            head.queued = False
            self._waiting.popleft()

    # -- calls -------------------------------------------------------------------------------

    def take_ready(self) -> list[Request]:
        """The complete requests that may start now, in arrival order; each now runs."""
        if not self._ready:
            return []
        out: list[Request] = []
        limit = self.limits.max_concurrent_streams
        max_unsent = self.limits.max_unsent_bytes
        while self._ready and self.closed is None:
            if len(self._running) >= limit or self._unsent >= max_unsent:
                break
            stream = self._ready.popleft()
            if stream.state != READY:
                continue  # reset while it waited
            stream.state = RUNNING
            self._running.add(stream.stream_id)
            body = stream.body[0] if len(stream.body) == 1 else b"".join(stream.body)
            self._consume(stream)
            out.append(Request(stream.stream_id, stream.headers, body))
        return out

    def call_done(self, stream_id: int) -> None:
        """The transport finished with a call it was handed (answered, failed or cancelled)."""
        self._running.discard(stream_id)
        self._update_idle()

    # -- output ------------------------------------------------------------------------------

    def respond(
        self, stream_id: int, headers: Headers | None, body: bytes, trailers: Headers
    ) -> None:
        """Answer a stream: ``headers``, ``body`` as DATA as windows allow, then ``trailers``.

        With ``headers`` None and an empty body, ``trailers`` alone answer (gRPC's
        Trailers-Only). A stream that is gone (reset, connection closed) is not answered.
        """
        stream = self._streams.get(stream_id)
        if stream is None or stream.trailers is not None or self.closed is not None:
            return
        try:
            if headers is not None:
                self._h2.send_headers(stream_id, headers)
        except h2.exceptions.StreamClosedError:
            self._streams.pop(stream_id, None)
            self._forget(stream)
            return
        stream.out = body
        stream.trailers = trailers
        self._unsent += len(body)
        self._send(stream)

    def _send(self, stream: Stream) -> None:
        """Send what the windows allow of a stream's answer; end the stream once all is out."""
        conn = self._h2
        stream_id = stream.stream_id
        body = stream.out
        pos, end = stream.out_pos, len(body)
        try:
            while pos < end:
                size = min(
                    conn.local_flow_control_window(stream_id),
                    conn.max_outbound_frame_size,
                    end - pos,
                )
                if size <= 0:
                    self._blocked[stream_id] = None
                    break
                chunk = body if size == end else memoryview(body)[pos : pos + size]
                conn.send_data(stream_id, chunk)
                pos += size
                self._unsent -= size
            stream.out_pos = pos
            if pos < end:
                return
            assert stream.trailers is not None
            conn.send_headers(stream_id, stream.trailers, end_stream=True)
            if not stream.remote_ended:  # answered early: the client may stop sending
                conn.reset_stream(stream_id, ErrorCodes.NO_ERROR)
        except h2.exceptions.StreamClosedError:
            pass
        self._streams.pop(stream_id, None)
        self._forget(stream)
        self._update_idle()

    def _unblock(self, stream_id: int) -> None:
        """Windows opened: send what waits, in the order it started waiting."""
        if not self._blocked:
            return
        if stream_id:
            if stream_id in self._blocked:
                del self._blocked[stream_id]
                self._send(self._streams[stream_id])
            return
        for waiting in list(self._blocked):
            if self._h2.outbound_flow_control_window <= 0:
                return
            del self._blocked[waiting]
            self._send(self._streams[waiting])

    def _forget(self, stream: Stream) -> None:
        """Drop what a finished or reset stream holds."""
        self._unsent -= len(stream.out) - stream.out_pos
        stream.out, stream.out_pos = b"", 0
        self._blocked.pop(stream.stream_id, None)
        if stream.state != RUNNING:
            stream.state = -1  # a READY stream still queued is skipped by take_ready
        self._consume(stream)

    def _reset(self, stream_id: int, code: ErrorCodes) -> None:
        with contextlib.suppress(h2.exceptions.StreamClosedError):  # closed in the same read
            self._h2.reset_stream(stream_id, code)

    def data_to_send(self) -> bytes:
        """The bytes queued for the client since the last call (may be empty)."""
        data = self._h2.data_to_send()
        if self._out:
            data = b"".join([*self._out, data])
            self._out.clear()
        return data

    def goaway(self, message: str = "server shutting down") -> None:
        """Refuse new streams; those already open are still answered (graceful GOAWAY).

        Written here rather than through h2, which would take its own GOAWAY as the end of
        the connection and answer nothing more.
        """
        if self.goaway_sent or self.closed is not None:
            return
        self.goaway_sent = True
        self._goaway_last = self._h2.highest_inbound_stream_id
        frame = GoAwayFrame(0, last_stream_id=self._goaway_last, error_code=ErrorCodes.NO_ERROR)
        frame.additional_data = message.encode()
        self._out += [self._h2.data_to_send(), frame.serialize()]

    def close(self, violation: Violation) -> None:
        """End the connection now with GOAWAY(violation.code); no call starts after it."""
        if self.closed is not None:
            return
        self.closed = violation
        self._ready.clear()
        self._h2.close_connection(violation.code, violation.message.encode()[:1024])

    # -- timers ------------------------------------------------------------------------------

    def _update_idle(self) -> None:
        self._timers.set_busy(bool(self._streams or self._running), self._clock())

    @property
    def handshake_done(self) -> bool:
        """Whether the client's preface and first SETTINGS arrived."""
        return self._timers.handshake_done

    def next_deadline(self) -> float | None:
        """When :meth:`check_timers` next may have something to do (the clock's time)."""
        return None if self.closed is not None else self._timers.next_deadline()

    def check_timers(self) -> None:
        """Act on what is due: close a connection late, idle or silent, or send a PING."""
        if self.closed is not None:
            return
        due = self._timers.due(self._clock())
        if isinstance(due, Violation):
            self.close(due)
        elif due == SEND_PING:
            self._h2.ping(self._timers.ping_data)
