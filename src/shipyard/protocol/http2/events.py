"""What an HTTP/2 endpoint reports of the peer's frames, one event per happening, in order.

:meth:`ServerEndpoint.receive <shipyard.protocol.http2.server_endpoint.ServerEndpoint.receive>`
returns a list of these in the order the frames arrived, so that whoever acts on them sees a
request, its data, its end and its reset in the order the peer sent them (a call reset in the
same read as its request is seen reset before anything could start it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "DataReceived",
    "Event",
    "GoAwayReceived",
    "HeaderList",
    "HeadersReceived",
    "PingAcknowledged",
    "PingReceived",
    "SettingsAcknowledged",
    "SettingsReceived",
    "StreamEnded",
    "StreamReset",
    "TrailersReceived",
    "WindowUpdated",
]

#: Header fields as decoded, names and values as bytes.
HeaderList = Sequence[tuple[bytes, bytes]]


@dataclass(slots=True)
class HeadersReceived:
    """A stream's first header block: a request's headers (server end, already validated
    against RFC 9113 section 8.2) or a response's (client end)."""

    stream_id: int
    headers: HeaderList


@dataclass(slots=True)
class TrailersReceived:
    """A stream's last header block (it always ends the stream; :class:`StreamEnded` follows)."""

    stream_id: int
    headers: HeaderList


@dataclass(slots=True)
class DataReceived:
    """A DATA frame's payload (padding removed) on an open stream.

    ``flow_controlled_length`` (padding included) is what the peer's windows were charged:
    give it back with :meth:`~shipyard.protocol.http2.endpoint.Endpoint.acknowledge` once
    the data is consumed.
    """

    stream_id: int
    data: bytes
    flow_controlled_length: int


@dataclass(slots=True)
class StreamEnded:
    """The peer ended its side of the stream (END_STREAM on the last DATA or header block)."""

    stream_id: int


@dataclass(slots=True)
class StreamReset:
    """A stream ended abnormally: ``remote`` when the peer sent RST_STREAM; otherwise this
    end reset it for an error of the peer's making (``error_code`` says which, ``reason`` why
    in words)."""

    stream_id: int
    error_code: int
    remote: bool
    reason: str = ""


@dataclass(slots=True)
class PingReceived:
    """The peer sent a PING (already acknowledged)."""

    data: bytes


@dataclass(slots=True)
class PingAcknowledged:
    """The peer acknowledged a PING this end sent."""

    data: bytes


@dataclass(slots=True)
class SettingsReceived:
    """The peer's SETTINGS, applied and acknowledged: identifier → value."""

    changed: dict[int, int]


@dataclass(slots=True)
class SettingsAcknowledged:
    """The peer acknowledged this end's SETTINGS."""


@dataclass(slots=True)
class GoAwayReceived:
    """The peer sent GOAWAY: it processes no stream above ``last_stream_id``."""

    last_stream_id: int
    error_code: int
    additional_data: bytes


@dataclass(slots=True)
class WindowUpdated:
    """The peer opened a send window (``stream_id`` 0: the connection's)."""

    stream_id: int
    increment: int


Event = (
    HeadersReceived
    | TrailersReceived
    | DataReceived
    | StreamEnded
    | StreamReset
    | PingReceived
    | PingAcknowledged
    | SettingsReceived
    | SettingsAcknowledged
    | GoAwayReceived
    | WindowUpdated
)
