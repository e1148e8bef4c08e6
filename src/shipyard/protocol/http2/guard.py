"""What a client sends, checked frame header by frame header before ``h2`` parses it.

``h2`` owns the protocol; this owns the budgets it has none of. :class:`FrameGuard` reads only
the 9-byte frame headers of the bytes a client sends (never a payload) and stops at the first
frame that breaks a limit, so that a flood in one read costs no more than the frames within
budget: the connection hands ``h2`` the bytes before that frame and closes. It checks

- the connection preface, and that the client's first frame is SETTINGS (RFC 9113 3.4);
- frame sizes against SETTINGS_MAX_FRAME_SIZE before the payload is buffered;
- the encoded size of a header block and its number of CONTINUATION frames (a CONTINUATION
  flood or a header block too large to decode is refused before it is buffered);
- the PING, SETTINGS and reset budgets (:class:`RateBudget`).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

from h2.errors import ErrorCodes

from shipyard.protocol.http2.limits import ConnectionLimits

__all__ = ["PREFACE", "FrameGuard", "RateBudget", "Violation"]

#: What a client sends first (RFC 9113 section 3.4).
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

_HEADER = struct.Struct(">IBI")  # length (24 bits) and type in one word, flags, stream id
_HEADERS, _RST_STREAM, _SETTINGS, _PING, _CONTINUATION = 0x1, 0x3, 0x4, 0x6, 0x9
_END_HEADERS, _ACK = 0x4, 0x1
_RESETS = "stream resets (the client's and streams refused)"


@dataclass(frozen=True, slots=True)
class Violation:
    """Why the connection must end: the GOAWAY error code and a message for it and the log."""

    code: ErrorCodes
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
    """Follows the frame boundaries of a client's bytes and enforces the budgets h2 lacks."""

    def __init__(self, limits: ConnectionLimits, clock: Callable[[], float]) -> None:
        self.limits = limits
        self.resets = RateBudget(limits.max_resets, limits.flood_window_s, clock)
        self.pings = RateBudget(limits.max_pings, limits.flood_window_s, clock)
        self.settings = RateBudget(limits.max_settings, limits.flood_window_s, clock)
        #: Complete frames seen so far.
        self.frames = 0
        self._preface = PREFACE  # what is still expected of it
        self._first_frame = True
        self._head = b""  # a frame header split across reads
        self._skip = 0  # payload bytes of the current frame still to come
        self._block_bytes = 0  # the header block in progress (HEADERS without END_HEADERS)
        self._block_frames = -1  # its CONTINUATION frames; -1: no block in progress

    @property
    def partial(self) -> bool:
        """Whether the client stopped in the middle of the preface or of a frame."""
        return bool(self._head or self._skip or (self._preface and self._preface != PREFACE))

    def feed(self, data: bytes) -> tuple[int, Violation | None]:
        """Take the client's next bytes: how many of them may reach h2, and why not the rest.

        With a violation, the bytes before the frame at fault are allowed (they may be part of
        a frame already begun) and the connection must then end with the violation's code.
        """
        pos, end = 0, len(data)
        if self._preface:
            take = min(len(self._preface), end)
            if data[:take] != self._preface[:take]:
                return 0, Violation(
                    ErrorCodes.PROTOCOL_ERROR,
                    "not an HTTP/2 connection preface (gRPC needs HTTP/2 with prior knowledge)",
                )
            self._preface = self._preface[take:]
            pos = take
        while pos < end:
            if self._skip:
                step = min(self._skip, end - pos)
                self._skip -= step
                pos += step
                if not self._skip:
                    self.frames += 1
                continue
            start = pos - len(self._head)
            if self._head or end - pos < 9:
                taken = data[pos : pos + 9 - len(self._head)]
                self._head += taken
                pos += len(taken)
                if len(self._head) < 9:
                    break
                word, flags, _ = _HEADER.unpack(self._head)
                self._head = b""
            else:
                word, flags, _ = _HEADER.unpack_from(data, pos)
                pos += 9
            length, kind = word >> 8, word & 0xFF
            violation = self._check(kind, flags, length)
            if violation is not None:
                return max(start, 0), violation
            self._skip = length
            if not length:
                self.frames += 1
        return end, None

    def _check(self, kind: int, flags: int, length: int) -> Violation | None:
        """The limit a frame with this header breaks, if any."""
        limits = self.limits
        if self._first_frame:
            self._first_frame = False
            if kind != _SETTINGS or flags & _ACK:
                return Violation(
                    ErrorCodes.PROTOCOL_ERROR, "the connection preface must end with SETTINGS"
                )
        if length > limits.max_frame_bytes:
            return Violation(
                ErrorCodes.FRAME_SIZE_ERROR,
                f"frame of {length} bytes over SETTINGS_MAX_FRAME_SIZE {limits.max_frame_bytes}",
            )
        if kind in (_HEADERS, _CONTINUATION):
            if kind == _HEADERS or self._block_frames < 0:
                self._block_bytes, self._block_frames = 0, 0  # h2 refuses a stray CONTINUATION
            else:
                self._block_frames += 1
            self._block_bytes += length
            if self._block_bytes > limits.max_header_list_bytes:
                return Violation(
                    ErrorCodes.ENHANCE_YOUR_CALM,
                    f"header block over {limits.max_header_list_bytes} bytes "
                    "(grpc_max_header_list_bytes)",
                )
            if self._block_frames > limits.max_continuation_frames:
                return Violation(
                    ErrorCodes.ENHANCE_YOUR_CALM,
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

    def charge_reset(self) -> Violation | None:
        """Count a stream the server refused against the reset budget."""
        if self.resets.spend():
            return None
        return _flood(_RESETS, self.resets.limit, "grpc_max_resets", self.limits)


def _flood(what: str, limit: int, setting: str, limits: ConnectionLimits) -> Violation:
    """The violation of a budget: too many of ``what``."""
    return Violation(
        ErrorCodes.ENHANCE_YOUR_CALM,
        f"more than {limit} {what} in {limits.flood_window_s:g} s ({setting})",
    )
