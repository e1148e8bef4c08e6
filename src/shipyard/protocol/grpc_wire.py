"""gRPC over HTTP/2: status codes, message framing, ``grpc-timeout``, ``grpc-message``. No I/O.

The facts of the gRPC wire (the "gRPC over HTTP2" protocol document) that both ends need: the
server transport (:mod:`shipyard.server.grpc`) and the load generator
(:mod:`shipyard.loadgen.grpc`). The HTTP/2 framing itself is :mod:`shipyard.protocol.http2`.
"""

from __future__ import annotations

import enum
import urllib.parse

__all__ = [
    "StatusCode",
    "decode_message_text",
    "encode_message_text",
    "frame_message",
    "parse_timeout",
    "unframe_message",
]


class StatusCode(enum.IntEnum):
    """gRPC status codes (the numbers are the protocol's)."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


#: ``grpc-timeout`` units, in seconds.
_TIMEOUT_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}


def parse_timeout(value: str) -> float | None:
    """Seconds from a ``grpc-timeout`` value (1-8 digits and a unit); None when malformed."""
    unit = _TIMEOUT_UNITS.get(value[-1:])
    digits = value[:-1]
    if unit is None or not 1 <= len(digits) <= 8 or not digits.isascii() or not digits.isdigit():
        return None
    return int(digits) * unit


def encode_message_text(message: str) -> bytes:
    """``grpc-message``: UTF-8, with bytes outside 0x20-0x7E and ``%`` written %XX."""
    out = bytearray()
    for byte in message.encode("utf-8"):
        if 0x20 <= byte <= 0x7E and byte != 0x25:
            out.append(byte)
        else:
            out += b"%%%02X" % byte
    return bytes(out)


def decode_message_text(value: str) -> str:
    """The text of a ``grpc-message`` header (malformed escapes are kept as they are)."""
    return urllib.parse.unquote(value, errors="replace")


def frame_message(payload: bytes) -> bytes:
    """One uncompressed length-prefixed message."""
    return b"\x00" + len(payload).to_bytes(4, "big") + payload


def unframe_message(body: bytes) -> tuple[bool, bytes] | None:
    """``(compressed, payload)`` of a body holding exactly one message; None otherwise."""
    if len(body) < 5 or int.from_bytes(body[1:5], "big") != len(body) - 5:
        return None
    return bool(body[0]), body[5:]
