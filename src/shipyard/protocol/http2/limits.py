"""The policy one HTTP/2 server connection enforces: limits, budgets and timeouts, as data.

:class:`ConnectionLimits` is built from the server's settings (``grpc_*`` in
:class:`shipyard.config.ServerConfig`) by the transport and read by
:class:`~shipyard.protocol.http2.server.ServerConnection` and
:class:`~shipyard.protocol.http2.guard.FrameGuard`. docs/grpc.md explains each limit.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MAX_WINDOW", "ConnectionLimits"]

#: The largest flow-control window HTTP/2 allows (RFC 9113 section 6.9.1).
MAX_WINDOW = 2**31 - 1


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """What one client connection may cost the server; each field's default is ServerConfig's."""

    #: Largest gRPC message accepted, without its 5-byte prefix (RESOURCE_EXHAUSTED above it).
    max_message_bytes: int = 64 * 1024 * 1024
    #: Streams open at once (advertised as SETTINGS_MAX_CONCURRENT_STREAMS; a stream over it is
    #: refused with REFUSED_STREAM), and calls running at once (a complete request waits, its
    #: flow-control window held, until a running call ends).
    max_concurrent_streams: int = 1000
    #: Largest header list (RFC 7541 sizes, SETTINGS_MAX_HEADER_LIST_SIZE), and largest encoded
    #: header block: over either, GOAWAY(ENHANCE_YOUR_CALM).
    max_header_list_bytes: int = 16 * 1024
    #: CONTINUATION frames one header block may use (GOAWAY(ENHANCE_YOUR_CALM) past it).
    max_continuation_frames: int = 8
    #: Largest frame accepted (SETTINGS_MAX_FRAME_SIZE; GOAWAY(FRAME_SIZE_ERROR) over it).
    max_frame_bytes: int = 1024 * 1024
    #: Each stream's receive window (SETTINGS_INITIAL_WINDOW_SIZE), at least HTTP/2's default
    #: (a client may send that much before it reads the SETTINGS). A larger message is given
    #: window for its declared length, within :attr:`reserve_bytes`.
    stream_window_bytes: int = 65_535
    #: Answer bytes one connection may hold while the client's window is closed; past it, no
    #: new call starts on that connection until the client reads.
    max_unsent_bytes: int = 64 * 1024 * 1024
    #: Client RST_STREAM frames plus streams the server refused, per :attr:`flood_window_s`.
    max_resets: int = 200
    #: PING frames per :attr:`flood_window_s`.
    max_pings: int = 100
    #: SETTINGS frames (not acknowledgements) per :attr:`flood_window_s`.
    max_settings: int = 100
    #: The window the three budgets above count in, in seconds.
    flood_window_s: float = 10.0
    #: Seconds a new connection has to send the preface and its first SETTINGS frame.
    handshake_timeout_s: float = 10.0
    #: Seconds a connection may stay with no open stream and no running call; 0: forever.
    idle_timeout_s: float = 300.0
    #: Seconds without a frame from the client before the server sends a PING; 0: never.
    keepalive_interval_s: float = 60.0
    #: Seconds the client has to acknowledge that PING before the connection is closed.
    keepalive_timeout_s: float = 20.0

    def __post_init__(self) -> None:
        if not 65_535 <= self.stream_window_bytes <= MAX_WINDOW:
            raise ValueError(f"stream_window_bytes must be in 65535..{MAX_WINDOW}")

    @property
    def reserve_bytes(self) -> int:
        """Window one connection may grant beyond the streams' own: one largest message."""
        return self.max_message_bytes + 5

    @property
    def buffered_bytes(self) -> int:
        """The most request bytes one connection can make the server hold, unconsumed.

        Each stream may send its window, and messages larger than it the reserve; bytes are
        given back only when the request they carry is handed to the service.
        """
        return self.max_concurrent_streams * self.stream_window_bytes + self.reserve_bytes

    @property
    def connection_window_bytes(self) -> int:
        """The connection's receive window: twice :attr:`buffered_bytes`.

        The streams' windows already bound what arrives; the connection window must never
        block a stream that still has window of its own. The endpoint gives consumed bytes back
        in batches of half the window, so twice the most that can be unconsumed always leaves
        room.
        """
        return min(2 * self.buffered_bytes, MAX_WINDOW)
