"""HTTP/2 (RFC 9113) for gRPC, sans-I/O: Shipyard's own endpoint, both ends, and the policy.

:class:`Endpoint` turns a peer's bytes into an ordered list of events (:mod:`.events`) and
queues the frames to send back; :class:`ServerEndpoint` is its server end (requests validated
against RFC 9113 section 8.2, answers), :class:`ClientConnection` its client end (the load
generator: one :class:`Response` per finished stream). Header blocks are decoded with the
``hpack`` package behind a cache. The framing is hand-written because ``h2`` cost the gRPC
server more CPU per call than all the rest of its path (docs/design-notes.md).

:class:`ServerConnection` is the gRPC server's connection: the server end with Shipyard's
policy around it (limits, budgets, timeouts, the order in which calls start, flow control as
backpressure), described by :class:`ConnectionLimits`. The gRPC transport
(:mod:`shipyard.server.grpc_connection`) owns the socket and the timers.
"""

from shipyard.protocol.http2.client import ClientConnection
from shipyard.protocol.http2.endpoint import Endpoint
from shipyard.protocol.http2.events import (
    DataReceived,
    Event,
    GoAwayReceived,
    HeadersReceived,
    PingAcknowledged,
    PingReceived,
    SettingsAcknowledged,
    SettingsReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
    WindowUpdated,
)
from shipyard.protocol.http2.frames import (
    PREFACE,
    ErrorCode,
    ProtocolError,
    Response,
    encode_headers,
    frame,
)
from shipyard.protocol.http2.guard import FrameGuard, RateBudget, Violation
from shipyard.protocol.http2.limits import ConnectionLimits
from shipyard.protocol.http2.server import Received, Request, ServerConnection
from shipyard.protocol.http2.server_endpoint import ServerEndpoint

__all__ = [
    "PREFACE",
    "ClientConnection",
    "ConnectionLimits",
    "DataReceived",
    "Endpoint",
    "ErrorCode",
    "Event",
    "FrameGuard",
    "GoAwayReceived",
    "HeadersReceived",
    "PingAcknowledged",
    "PingReceived",
    "ProtocolError",
    "RateBudget",
    "Received",
    "Request",
    "Response",
    "ServerConnection",
    "ServerEndpoint",
    "SettingsAcknowledged",
    "SettingsReceived",
    "StreamEnded",
    "StreamReset",
    "TrailersReceived",
    "Violation",
    "WindowUpdated",
    "encode_headers",
    "frame",
]
