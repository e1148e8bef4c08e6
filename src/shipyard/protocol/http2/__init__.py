"""HTTP/2 (RFC 9113) for gRPC, sans-I/O: the server end on ``h2``, and a lean client end.

:class:`ServerConnection` is the gRPC server's connection: ``h2`` owns the protocol (frames,
stream states, HPACK, header validation); Shipyard owns the policy around it (limits, budgets,
timeouts, the order in which calls start, flow control as backpressure), described by
:class:`ConnectionLimits`. The gRPC transport (:mod:`shipyard.server.grpc_connection`) owns
the socket and the timers.

:class:`ClientConnection` is the load generator's client end: hand-written and minimal,
because a general client cost more CPU than the server it measured (see
benchmarks/RESULTS.md). It takes the bytes a server sent (:meth:`~Endpoint.receive`) and
returns a :class:`Response` per finished stream; :meth:`~ClientConnection.request` opens one.
Header blocks are decoded with the ``hpack`` package.
"""

from shipyard.protocol.http2.client import ClientConnection
from shipyard.protocol.http2.endpoint import Endpoint
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

__all__ = [
    "PREFACE",
    "ClientConnection",
    "ConnectionLimits",
    "Endpoint",
    "ErrorCode",
    "FrameGuard",
    "ProtocolError",
    "RateBudget",
    "Received",
    "Request",
    "Response",
    "ServerConnection",
    "Violation",
    "encode_headers",
    "frame",
]
