"""The server end of a gRPC connection: Shipyard's HTTP/2 endpoint and the policy around it.

:class:`ServerConnection` is sans-I/O: :meth:`~ServerConnection.receive` takes what a client
sent, :meth:`~ServerConnection.take_ready` hands out the requests that may start,
:meth:`~ServerConnection.respond` queues an answer and :meth:`~ServerConnection.data_to_send`
returns the bytes to write. The protocol is
:class:`~shipyard.protocol.http2.server_endpoint.ServerEndpoint` (frames, stream states,
HPACK, header validation; hand-written because ``h2`` cost more CPU per call than the rest of
the server, see docs/design-notes.md). This class decides what a client may cost:

- **Order.** The endpoint reports a read as one ordered list of events. A request is only
  queued while the list is walked and handed out after it, so a call reset in the same read
  as its request (rapid reset) is dropped before it ever starts.
- **Streams and calls.** At most ``max_concurrent_streams`` streams are open (the endpoint
  refuses more with REFUSED_STREAM, counted in the reset budget) and as many calls run; a
  request that arrives while that many run waits, unconsumed, until one ends.
- **Flow control.** A request's bytes are given back to the client's windows only when it is
  handed out (consumed), so a server that cannot keep up stops the client. A message larger
  than the stream window gets window for its declared length, within one reserve per
  connection (granted in arrival order). Answers wait for the client's windows; while more
  than ``max_unsent_bytes`` wait, no new call starts.
- **Budgets and shapes** (:class:`~shipyard.protocol.http2.guard.FrameGuard`, consulted by the
  endpoint frame by frame), and **timers** (:meth:`~ServerConnection.check_timers`):
  handshake, idle and keepalive.

A connection error never raises: :attr:`~ServerConnection.closed` says why the connection
must close once :meth:`~ServerConnection.data_to_send` is written.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from shipyard.protocol.http2.events import (
    DataReceived,
    Event,
    GoAwayReceived,
    HeadersReceived,
    PingAcknowledged,
    SettingsReceived,
    StreamEnded,
    StreamReset,
)
from shipyard.protocol.http2.frames import ErrorCode
from shipyard.protocol.http2.guard import FrameGuard, Violation
from shipyard.protocol.http2.limits import ConnectionLimits
from shipyard.protocol.http2.server_endpoint import Headers, ServerEndpoint
from shipyard.protocol.http2.streams import FORGOTTEN, READY, RECEIVING, RUNNING, Stream
from shipyard.protocol.http2.timers import SEND_PING, ConnectionTimers

__all__ = ["Received", "Request", "ServerConnection"]


@dataclass(slots=True)
class Request:
    """A stream's whole request, handed out to run: its headers and body (one gRPC message).

    ``headers`` are every field of the call, pseudo-headers included, as the client sent them
    (names and values are bytes); the list may be shared with other calls: read it only.
    """

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
    """One client connection: frames in through the endpoint, requests out, answers back."""

    def __init__(
        self, limits: ConnectionLimits, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limits = limits
        self._clock = clock
        self._guard = FrameGuard(limits, clock)
        self._end = ServerEndpoint(
            max_concurrent_streams=limits.max_concurrent_streams,
            max_header_list_bytes=limits.max_header_list_bytes,
            stream_window=limits.stream_window_bytes,
            connection_window=limits.connection_window_bytes,
            max_frame_size=limits.max_frame_bytes,
            guard=self._guard,
        )
        #: Why the connection must close (after writing data_to_send()); None while open.
        self.closed: Violation | None = None
        self._streams: dict[int, Stream] = {}  # requests arriving or waiting to be handed out
        self._ready: collections.deque[Stream] = collections.deque()
        self._running: set[int] = set()
        self._waiting: collections.deque[Stream] = collections.deque()  # for the reserve
        self._reserved = 0
        self._timers = ConnectionTimers(limits, clock())

    # -- state -------------------------------------------------------------------------------

    @property
    def open_streams(self) -> int:
        """Streams the client opened that are not finished (answered or reset)."""
        return self._end.open_streams

    @property
    def running(self) -> int:
        """Calls handed out whose end the transport has not reported (:meth:`call_done`)."""
        return len(self._running)

    @property
    def unsent_bytes(self) -> int:
        """Answer bytes waiting for the client's flow-control windows."""
        return self._end.unsent_bytes

    @property
    def buffered_bytes(self) -> int:
        """Request bytes received and not yet given back to the client's windows."""
        return sum(stream.unacked for stream in self._streams.values())

    @property
    def queued_calls(self) -> int:
        """Complete requests waiting for a call to end or answers to drain."""
        return sum(1 for s in self._ready if s.state == READY)

    @property
    def goaway_sent(self) -> bool:
        """Whether the server sent GOAWAY (gracefully or for an error)."""
        return self._end.goaway_sent

    @property
    def finished(self) -> bool:
        """Whether the connection can close now: closed, or drained after a graceful GOAWAY."""
        if self.closed is not None:
            return True
        return self._end.goaway_sent and not self._end.open_streams and not self._running

    # -- input -------------------------------------------------------------------------------

    def receive(self, data: bytes) -> Received:
        """Take bytes from the client; never raises for what a client sends (see :attr:`closed`)."""
        received = Received()
        if self.closed is not None:
            return received
        end = self._end
        frames = end.frames_received
        events = end.receive(data)
        if events:
            self._dispatch(events, received)
        if end.frames_received != frames:
            self._timers.frame_received(self._clock())
        error = end.closed
        if error is not None and self.closed is None:
            self.closed = Violation(ErrorCode(error.code), error.message)
            self._ready.clear()
        self._update_idle()
        return received

    def _dispatch(self, events: list[Event], received: Received) -> None:
        """Walk one read's events in order."""
        for event in events:
            if type(event) is DataReceived:
                self._on_data(event, received)
            elif type(event) is HeadersReceived:
                stream_id, window = event.stream_id, self.limits.stream_window_bytes
                self._streams[stream_id] = Stream(stream_id, event.headers, window)
            elif type(event) is StreamEnded:
                self._on_end(event.stream_id)
            elif type(event) is StreamReset:
                self._on_reset(event.stream_id, received)
            elif type(event) is SettingsReceived:
                self._timers.handshake_done = True
            elif type(event) is PingAcknowledged:
                self._timers.ping_acknowledged(event.data)
            elif type(event) is GoAwayReceived:
                self._on_goaway(event.error_code)
            if self.closed is not None:
                return

    def _on_data(self, event: DataReceived, received: Received) -> None:
        stream_id, length = event.stream_id, event.flow_controlled_length
        stream = self._streams.get(stream_id)
        if stream is None or stream.state != RECEIVING or stream.oversized:
            self._end.acknowledge(stream_id, length)  # answered early: dropped, consumed
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
        if stream.declared >= 0:
            self._grant(stream)

    def _on_end(self, stream_id: int) -> None:
        stream = self._streams.get(stream_id)
        if stream is not None and stream.state == RECEIVING and not stream.oversized:
            stream.state = READY
            self._ready.append(stream)

    def _on_reset(self, stream_id: int, received: Received) -> None:
        """The client reset a stream, or the endpoint reset it for the client's error."""
        stream = self._streams.pop(stream_id, None)
        if stream is not None:
            self._forget(stream)
        elif stream_id in self._running:
            received.cancelled.append(stream_id)  # its place is freed by call_done()

    def _on_goaway(self, code: int) -> None:
        """The client goes away: answer what runs (its GOAWAY said NO_ERROR), or close now."""
        if code == ErrorCode.NO_ERROR:
            self.goaway("the client sent GOAWAY")
        else:
            self.close(Violation(ErrorCode.NO_ERROR, f"the client sent GOAWAY (error {code})"))

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
        self._end.grant(stream.stream_id, extra)

    def _consume(self, stream: Stream) -> None:
        """The stream's bytes are used or dropped: give them back, release its reserve."""
        if stream.unacked:
            self._end.acknowledge(stream.stream_id, stream.unacked)
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

    def _forget(self, stream: Stream) -> None:
        """Drop a request that will not be handed out (reset, or answered first)."""
        stream.state = FORGOTTEN  # a READY stream still queued is skipped by take_ready
        self._consume(stream)

    # -- calls -------------------------------------------------------------------------------

    def take_ready(self) -> list[Request]:
        """The complete requests that may start now, in arrival order; each now runs."""
        if not self._ready:
            return []
        out: list[Request] = []
        limit = self.limits.max_concurrent_streams
        max_unsent = self.limits.max_unsent_bytes
        end = self._end
        while self._ready and self.closed is None:
            if len(self._running) >= limit or end.unsent_bytes >= max_unsent:
                break
            stream = self._ready.popleft()
            if stream.state != READY:
                continue  # reset or answered while it waited
            stream_id = stream.stream_id
            stream.state = RUNNING
            del self._streams[stream_id]
            self._running.add(stream_id)
            body = stream.body[0] if len(stream.body) == 1 else b"".join(stream.body)
            self._consume(stream)
            out.append(Request(stream_id, stream.headers, body))
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

        With ``headers`` None the ``trailers`` alone answer (gRPC's Trailers-Only; ``body``
        is not sent). A stream that is gone (reset, connection closed) is not answered. An
        answer to a request not yet handed out (too large, say) ends it: the request never
        starts, and the client is told to stop sending (RST_STREAM NO_ERROR).
        """
        if self.closed is not None:
            return
        stream = self._streams.pop(stream_id, None)
        if stream is not None:
            self._forget(stream)
        self._end.respond(stream_id, headers, body, trailers)
        if stream_id not in self._running:  # a running call is busy until call_done()
            self._update_idle()

    def data_to_send(self) -> bytes:
        """The bytes queued for the client since the last call (may be empty)."""
        return self._end.data_to_send()

    def goaway(self, message: str = "server shutting down") -> None:
        """Refuse new streams; those already open are still answered (graceful GOAWAY)."""
        if self.closed is None:
            self._end.goaway(ErrorCode.NO_ERROR, message)

    def close(self, violation: Violation) -> None:
        """End the connection now with GOAWAY(violation.code); no call starts after it."""
        if self.closed is not None:
            return
        self.closed = violation
        self._ready.clear()
        self._end.close(violation.code, violation.message)

    # -- timers ------------------------------------------------------------------------------

    def _update_idle(self) -> None:
        if self._end.open_streams or self._running:
            self._timers.set_busy(True, 0.0)
        else:
            self._timers.set_busy(False, self._clock())

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
            self._end.ping(self._timers.ping_data)
