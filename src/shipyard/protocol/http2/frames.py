"""HTTP/2 frames and header blocks: the constants of RFC 9113, the frame layout, HPACK output.

Everything both ends of a connection share that holds no state.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "PREFACE",
    "ErrorCode",
    "ProtocolError",
    "Response",
    "encode_headers",
    "encode_integer",
    "frame",
]

#: What a client sends first: the connection preface (RFC 9113 section 3.4).
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# Frame types (RFC 9113 section 6).
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE = 0, 1, 2, 3, 4, 5
PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 6, 7, 8, 9
# Flags.
FLAG_END_STREAM = 0x1
FLAG_ACK = 0x1
FLAG_END_HEADERS = 0x4
FLAG_PADDED = 0x8
FLAG_PRIORITY = 0x20
# Settings identifiers.
SETTINGS_HEADER_TABLE_SIZE = 0x1
SETTINGS_ENABLE_PUSH = 0x2
SETTINGS_MAX_CONCURRENT_STREAMS = 0x3
SETTINGS_INITIAL_WINDOW_SIZE = 0x4
SETTINGS_MAX_FRAME_SIZE = 0x5
SETTINGS_MAX_HEADER_LIST_SIZE = 0x6
SETTINGS_ENABLE_CONNECT_PROTOCOL = 0x8

DEFAULT_WINDOW = 65_535
DEFAULT_FRAME_SIZE = 16_384
DEFAULT_HEADER_TABLE_SIZE = 4_096
MAX_WINDOW = 2**31 - 1
MAX_FRAME_SIZE_LIMIT = 2**24 - 1

FRAME_HEADER = struct.Struct(">IBI")  # length (3 bytes) and type packed in the first word
UINT32 = struct.Struct(">I")
SETTING = struct.Struct(">HI")


class ErrorCode(enum.IntEnum):
    """HTTP/2 error codes (RFC 9113 section 7)."""

    NO_ERROR = 0x0
    PROTOCOL_ERROR = 0x1
    INTERNAL_ERROR = 0x2
    FLOW_CONTROL_ERROR = 0x3
    SETTINGS_TIMEOUT = 0x4
    STREAM_CLOSED = 0x5
    FRAME_SIZE_ERROR = 0x6
    REFUSED_STREAM = 0x7
    CANCEL = 0x8
    COMPRESSION_ERROR = 0x9
    CONNECT_ERROR = 0xA
    ENHANCE_YOUR_CALM = 0xB
    INADEQUATE_SECURITY = 0xC
    HTTP_1_1_REQUIRED = 0xD


class ProtocolError(Exception):
    """A connection error: the connection answers GOAWAY with ``code`` and must be closed."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    """One frame: the 9-byte header and ``payload``."""
    return FRAME_HEADER.pack((len(payload) << 8) | kind, flags, stream_id) + payload


def encode_integer(value: int, prefix_bits: int, first: int) -> bytes:
    """An HPACK integer (RFC 7541 section 5.1) whose first byte starts with ``first``."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = bytearray([first | limit])
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_headers(headers: Iterable[tuple[bytes, bytes]]) -> bytes:
    """An HPACK block of literal fields never indexed, so it needs no encoder state.

    ``:status 200`` uses its static-table entry; every other field is a literal with a literal
    name and a plain (not Huffman) value.
    """
    out = bytearray()
    for name, value in headers:
        if name == b":status" and value == b"200":
            out += b"\x88"  # static table index 8
            continue
        out += b"\x10"  # literal never indexed, new name
        out += encode_integer(len(name), 7, 0) + name
        out += encode_integer(len(value), 7, 0) + value
    return bytes(out)


@dataclass(slots=True)
class Response:
    """A stream's whole response, as a client received it.

    ``headers`` are the first header block (empty when the server reset the stream),
    ``trailers`` the last one (empty for a response without trailers); for gRPC's
    Trailers-Only answer both are that one block. ``reset`` is the RST_STREAM error code when
    the server reset the stream instead of answering (``None`` otherwise).
    """

    stream_id: int
    headers: list[tuple[str, str]]
    body: bytes
    trailers: list[tuple[str, str]]
    reset: int | None = None
