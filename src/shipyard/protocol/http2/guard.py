"""The budgets a client's frames are held to, checked frame header by frame header.

The endpoint (:class:`~shipyard.protocol.http2.endpoint.Endpoint`) owns the protocol; this
owns the budgets that HTTP/2 itself has none of. :class:`FrameGuard` sees the header of every
frame but DATA before the frame is processed, and every stream the server resets for the
client's errors; the first that breaks a limit ends the connection there, so a flood in one
read costs no more than the frames within budget. It checks

- the encoded size of a header block and its number of CONTINUATION frames (a CONTINUATION
  flood or a header block too large to decode is refused before it is buffered);
- the PING, SETTINGS and reset budgets (:class:`RateBudget`): RST_STREAM frames from the
  client plus streams the server reset (refused, malformed, or broken by the client).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from shipyard.protocol.http2.frames import ErrorCode
from shipyard.protocol.http2.limits import ConnectionLimits

__all__ = ["FrameGuard", "RateBudget", "Violation"]

_HEADERS, _RST_STREAM, _SETTINGS, _PING, _CONTINUATION = 0x1, 0x3, 0x4, 0x6, 0x9
_END_HEADERS, _ACK = 0x4, 0x1
_RESETS = "stream resets (the client's, and streams the server refused or reset)"


@dataclass(frozen=True, slots=True)
class Violation:
    """Why the connection must end: the GOAWAY error code and a message for it and the log."""

    code: ErrorCode
    message: str


class RateBudget:
    """At most ``limit`` events per ``window_s`` seconds, on average (a token bucket).

    A burst of ``limit`` is allowed at once; the budget then refills at ``limit / window_s``
    per second.
    """

    __slots__ = ("_at", "_clock", "_rate", "_tokens", "limit")

    def __init__(self, limit: int, window_s: float, clock: Callable[[], float]) -> None:
        self.limit = limit
        self._rate = limit / window_s if window_s > 0 else float("inf")
        self._clock = clock
        self._tokens = float(limit)
        self._at = clock()

    def spend(self) -> bool:
        """Count one event; False once the budget is spent."""
        now = self._clock()
        self._tokens = min(self.limit, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


class FrameGuard:
    """The header-block limits and the PING, SETTINGS and reset budgets of one connection."""

    def __init__(self, limits: ConnectionLimits, clock: Callable[[], float]) -> None:
        self.limits = limits
        self.resets = RateBudget(limits.max_resets, limits.flood_window_s, clock)
        self.pings = RateBudget(limits.max_pings, limits.flood_window_s, clock)
        self.settings = RateBudget(limits.max_settings, limits.flood_window_s, clock)
        self._block_bytes = 0  # the header block in progress (HEADERS without END_HEADERS)
        self._block_frames = -1  # its CONTINUATION frames; -1: no block in progress

    def frame(self, kind: int, flags: int, length: int) -> Violation | None:
        """The limit a frame (not DATA) with this header breaks, if any.

        The endpoint has checked the frame's place already (a CONTINUATION only follows its
        HEADERS), so only the sizes and counts are checked here.
        """
        limits = self.limits
        if kind in (_HEADERS, _CONTINUATION):
            if kind == _HEADERS:
                self._block_bytes, self._block_frames = 0, 0
            else:
                self._block_frames += 1
            self._block_bytes += length
            if self._block_bytes > limits.max_header_list_bytes:
                return Violation(
                    ErrorCode.ENHANCE_YOUR_CALM,
                    f"header block over {limits.max_header_list_bytes} bytes "
                    "(grpc_max_header_list_bytes)",
                )
            if self._block_frames > limits.max_continuation_frames:
                return Violation(
                    ErrorCode.ENHANCE_YOUR_CALM,
                    f"header block in more than {limits.max_continuation_frames} "
                    "CONTINUATION frames",
                )
            if flags & _END_HEADERS:
                self._block_frames = -1
        elif kind == _PING:
            if not self.pings.spend():
                return _flood("PING frames", self.pings.limit, "grpc_max_pings", limits)
        elif kind == _SETTINGS:
            if not flags & _ACK and not self.settings.spend():
                return _flood("SETTINGS frames", self.settings.limit, "grpc_max_settings", limits)
        elif kind == _RST_STREAM and not self.resets.spend():
            return _flood(_RESETS, self.resets.limit, "grpc_max_resets", limits)
        return None

    def reset(self) -> Violation | None:
        """Count a stream the server reset (refused, or for the client's error)."""
        if self.resets.spend():
            return None
        return _flood(_RESETS, self.resets.limit, "grpc_max_resets", self.limits)


def _flood(what: str, limit: int, setting: str, limits: ConnectionLimits) -> Violation:
    """The violation of a budget: too many of ``what``."""
    return Violation(
        ErrorCode.ENHANCE_YOUR_CALM,
        f"more than {limit} {what} in {limits.flood_window_s:g} s ({setting})",
    )
