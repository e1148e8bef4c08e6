"""RFC 9113 sections 8.2 and 8.3: what the header fields of a request and of trailers must be.

A header list that breaks these rules makes its request *malformed*: the server end resets that
stream with PROTOCOL_ERROR (RFC 9113 section 8.1.1) and the connection carries on.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["request_error", "trailers_error"]

#: Fields that only mean something to one HTTP/1.1 connection (RFC 9113 section 8.2.2).
_CONNECTION_SPECIFIC = frozenset(
    {b"connection", b"proxy-connection", b"keep-alive", b"transfer-encoding", b"upgrade"}
)
#: The bytes a regular field name may hold: visible ASCII but upper case and ':' (8.2.1).
_NAME_BYTES = bytes(c for c in range(0x21, 0x7F) if not 0x41 <= c <= 0x5A and c != 0x3A)
#: What a field value may not hold: NUL, CR or LF anywhere, white space at either end.
_BAD_VALUE = re.compile(rb"[\x00\r\n]|\A[ \t]|[ \t]\Z")


def _field_error(name: bytes, value: bytes) -> str | None:
    """Why one regular field is malformed, or None."""
    if not name or name.translate(None, _NAME_BYTES):
        return f"field name {name!r} is not lower-case visible ASCII"
    if name in _CONNECTION_SPECIFIC:
        return f"connection-specific field {name.decode()!r} is not allowed in HTTP/2"
    if _BAD_VALUE.search(value):
        return f"field {name.decode()!r} has CR, LF or NUL in its value, or white space around it"
    return None


def request_error(headers: Sequence[tuple[bytes, bytes]]) -> tuple[str | None, int]:
    """Why a request's header list is malformed (None when it is not), and its content-length.

    The content-length is -1 when the request has none; when it has one, the DATA of the
    request must add up to it.
    """
    regular = False
    method = scheme = path = authority = None
    length = -1
    for name, value in headers:
        if name[:1] == b":":
            if regular:
                return f"pseudo-header {name.decode()!r} after a regular field", length
            if name == b":method":
                if method is not None:
                    return "two :method pseudo-headers", length
                method = value
            elif name == b":path":
                if path is not None:
                    return "two :path pseudo-headers", length
                path = value
            elif name == b":scheme":
                if scheme is not None:
                    return "two :scheme pseudo-headers", length
                scheme = value
            elif name == b":authority":
                if authority is not None:
                    return "two :authority pseudo-headers", length
                authority = value
            else:
                return f"{name.decode(errors='replace')!r} is not a request pseudo-header", length
            if _BAD_VALUE.search(value):
                return f"{name.decode()} has CR, LF or NUL in its value", length
            continue
        regular = True
        error = _field_error(name, value)
        if error is not None:
            return error, length
        if name == b"te" and value != b"trailers":
            return f"te {value.decode(errors='replace')!r}: only 'trailers' is allowed", length
        if name == b"content-length":
            if not value.isdigit() or (length >= 0 and int(value) != length):
                return f"bad content-length {value.decode(errors='replace')!r}", length
            length = int(value)
    if method is None:
        return "no :method pseudo-header", length
    if method == b"CONNECT":
        if scheme is not None or path is not None or authority is None:
            return "CONNECT needs :authority and no :scheme or :path", length
        return None, length
    if scheme is None or not path:
        return "a request needs :scheme and a non-empty :path", length
    return None, length


def trailers_error(headers: Sequence[tuple[bytes, bytes]]) -> str | None:
    """Why trailers are malformed (pseudo-headers, bad fields), or None."""
    for name, value in headers:
        if name[:1] == b":":
            return f"pseudo-header {name.decode(errors='replace')!r} in trailers"
        error = _field_error(name, value)
        if error is not None:
            return error
    return None
