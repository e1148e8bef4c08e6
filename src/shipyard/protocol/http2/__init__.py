"""The HTTP/2 (RFC 9113) that gRPC needs, as sans-I/O state machines for both ends.

:class:`ServerConnection` takes the bytes a client sent (:meth:`~Endpoint.receive`) and returns
a :class:`Request` for each stream whose request has fully arrived (headers and body; gRPC
messages are buffered whole). Answers are queued with :meth:`~ServerConnection.respond` and the
bytes to write are taken with :meth:`~Endpoint.data_to_send`. :class:`ClientConnection` is the
mirror image for the load generator: :meth:`~ClientConnection.request` opens a stream and
:meth:`~Endpoint.receive` returns a :class:`Response` per finished one. There is no I/O here:
the gRPC transport (:mod:`shipyard.server.grpc`) and the load generator own the sockets.

What a gRPC server needs, and nothing else: prior-knowledge cleartext HTTP/2 (``h2c``, as
every gRPC client speaks it without TLS), SETTINGS, PING, WINDOW_UPDATE with flow control in
both directions, RST_STREAM, GOAWAY, HEADERS with CONTINUATION and padding, and HPACK through
the ``hpack`` package. The server never pushes. Violations of the protocol end the connection
with GOAWAY and the error code RFC 9113 gives, or reset the one stream at fault.

Speed: the header block of a repeated call is a handful of indexed fields (gRPC clients index
every header after the first call), so decoded blocks made only of indexed fields are cached;
such a block never changes the decoder's table, so a cached answer stays right until a block
that does change it arrives, which clears the cache. Responses use literal fields that are never
indexed, so each answer's header blocks are constant bytes built once.
"""

from shipyard.protocol.http2.client import ClientConnection
from shipyard.protocol.http2.endpoint import Endpoint
from shipyard.protocol.http2.frames import (
    PREFACE,
    ErrorCode,
    ProtocolError,
    Request,
    Response,
    encode_headers,
    frame,
)
from shipyard.protocol.http2.server import ServerConnection

__all__ = [
    "PREFACE",
    "ClientConnection",
    "Endpoint",
    "ErrorCode",
    "ProtocolError",
    "Request",
    "Response",
    "ServerConnection",
    "encode_headers",
    "frame",
]
