"""The clocks of one connection: handshake, idle and keepalive deadlines, without I/O.

:class:`ConnectionTimers` is told what happens (a frame arrived, the connection became busy or
idle, a PING was acknowledged) and says when it next needs to look (:meth:`next_deadline`)
and what is due then (:meth:`due`): nothing, a keepalive PING to send, or a reason to close.
"""

from __future__ import annotations

from shipyard.protocol.http2.frames import ErrorCode
from shipyard.protocol.http2.guard import Violation
from shipyard.protocol.http2.limits import ConnectionLimits

__all__ = ["SEND_PING", "ConnectionTimers"]

#: What :meth:`ConnectionTimers.due` returns when a keepalive PING should go out now.
SEND_PING = "ping"


class ConnectionTimers:
    """When a connection is late (handshake), idle too long, or silent too long (keepalive)."""

    def __init__(self, limits: ConnectionLimits, now: float) -> None:
        self.limits = limits
        #: Set once the client's preface and first SETTINGS arrived.
        self.handshake_done = False
        self._created = self._last_frame_at = now
        self._idle_since: float | None = now
        self._ping_sent_at: float | None = None
        self._pings = 0

    def frame_received(self, now: float) -> None:
        """A complete frame arrived: the client is not silent."""
        self._last_frame_at = now

    def set_busy(self, busy: bool, now: float) -> None:
        """Whether the connection has open streams or running calls (idle when not)."""
        if busy:
            self._idle_since = None
        elif self._idle_since is None:
            self._idle_since = now

    @property
    def ping_data(self) -> bytes:
        """The opaque data of the last keepalive PING."""
        return self._pings.to_bytes(8, "big")

    def ping_acknowledged(self, data: bytes) -> None:
        """A PING ACK arrived; it answers the keepalive PING when its data matches."""
        if data == self.ping_data:
            self._ping_sent_at = None

    def next_deadline(self) -> float | None:
        """When :meth:`due` may next have something to do, or None."""
        limits = self.limits
        if not self.handshake_done:
            return self._created + limits.handshake_timeout_s
        deadline = None
        if limits.idle_timeout_s > 0 and self._idle_since is not None:
            deadline = self._idle_since + limits.idle_timeout_s
        if limits.keepalive_interval_s > 0:
            if self._ping_sent_at is not None:
                keepalive = self._ping_sent_at + limits.keepalive_timeout_s
            else:
                keepalive = self._last_frame_at + limits.keepalive_interval_s
            deadline = keepalive if deadline is None else min(deadline, keepalive)
        return deadline

    def due(self, now: float) -> Violation | str | None:
        """What is due at ``now``: a reason to close, :data:`SEND_PING`, or nothing."""
        limits = self.limits
        if not self.handshake_done:
            if now < self._created + limits.handshake_timeout_s:
                return None
            return Violation(
                ErrorCode.NO_ERROR,
                f"no HTTP/2 preface and SETTINGS within {limits.handshake_timeout_s:g} s "
                "(grpc_handshake_timeout_s)",
            )
        idle_since = self._idle_since
        idle = limits.idle_timeout_s > 0 and idle_since is not None
        if idle and now >= (idle_since or 0.0) + limits.idle_timeout_s:
            return Violation(
                ErrorCode.NO_ERROR, f"idle for {limits.idle_timeout_s:g} s (grpc_idle_timeout_s)"
            )
        if limits.keepalive_interval_s <= 0:
            return None
        if self._ping_sent_at is not None:
            if now < self._ping_sent_at + limits.keepalive_timeout_s:
                return None
            return Violation(
                ErrorCode.NO_ERROR,
                f"keepalive PING not acknowledged within {limits.keepalive_timeout_s:g} s "
                "(grpc_keepalive_timeout_s)",
            )
        if now >= self._last_frame_at + limits.keepalive_interval_s:
            self._pings += 1
            self._ping_sent_at = now
            return SEND_PING
        return None
