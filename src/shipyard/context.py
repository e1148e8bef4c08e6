"""The request being served: its ID, W3C trace context and stage timings, in a context variable.

A transport opens a :class:`RequestContext` when a request arrives (:func:`open_request`) and
closes it when the answer is written. In between, every coroutine of that request sees it
through :data:`current_request`: the service records the model and version it resolved and
the time spent in pre- and post-processing, the batcher the queue and compute times, and the
log formatter puts ``request_id``, ``model`` and ``version`` on every line logged meanwhile.
Nothing here allocates per request beyond the one object; times are ``perf_counter_ns``.
"""

from __future__ import annotations

import random
import re
import time
from contextvars import ContextVar

__all__ = [
    "REQUEST_ID_HEADER",
    "RequestContext",
    "TraceContext",
    "current_request",
    "new_request_id",
    "open_request",
    "parse_traceparent",
    "valid_request_id",
]

#: The header (HTTP) and metadata key (gRPC) carrying the request ID, both ways.
REQUEST_ID_HEADER = "x-request-id"

#: A client's request ID is kept when it is 1 to 128 visible ASCII characters (no spaces, no
#: control characters: it goes into log lines as is); otherwise the server makes its own.
_REQUEST_ID = re.compile(rb"[\x21-\x7e]{1,128}")
#: ``version-traceid-parentid-flags``, lowercase hex (W3C Trace Context, level 1).
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_random = random.Random()  # request IDs need to be unique, not secret


def new_request_id() -> str:
    """Return a fresh request ID: 32 random hex digits (the shape of a W3C trace ID)."""
    return f"{_random.getrandbits(128):032x}"


def valid_request_id(value: bytes) -> str | None:
    """Return ``value`` as the request ID if a client may choose it, else None."""
    if _REQUEST_ID.fullmatch(value):
        return value.decode("ascii")
    return None


class TraceContext:
    """A parsed ``traceparent`` (and its ``tracestate``): the caller's span."""

    __slots__ = ("flags", "span_id", "trace_id", "tracestate")

    def __init__(self, trace_id: str, span_id: str, flags: int, tracestate: str = "") -> None:
        self.trace_id = trace_id
        self.span_id = span_id
        self.flags = flags
        self.tracestate = tracestate

    @property
    def sampled(self) -> bool:
        """Whether the caller records this trace (flag bit 0)."""
        return bool(self.flags & 1)

    def header(self) -> str:
        """The ``traceparent`` value of this context."""
        return f"00-{self.trace_id}-{self.span_id}-{self.flags:02x}"


def parse_traceparent(traceparent: str | None, tracestate: str | None) -> TraceContext | None:
    """Parse a W3C ``traceparent``; None when absent or invalid (then ``tracestate`` is dropped).

    Follows the specification's rules: version ``ff`` and all-zero IDs are invalid, and a
    version 00 header has exactly four fields.
    """
    if not traceparent:
        return None
    match = _TRACEPARENT.fullmatch(traceparent.strip())
    if match is None:
        return None
    version, trace_id, span_id, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest) or set(trace_id) == {"0"}:
        return None
    if set(span_id) == {"0"}:
        return None
    return TraceContext(trace_id, span_id, int(flags, 16), (tracestate or "").strip()[:512])


class RequestContext:
    """One request's identity and timings.

    ``*_at`` are ``perf_counter_ns`` instants and ``*_ns`` durations; 0 means "did not happen".
    The defaults live on the class, so opening a context sets four attributes, not twenty.
    """

    #: Wall-clock start (``time.time_ns()``), for spans; set only when tracing is on.
    wall_start_ns = 0
    #: The inference endpoint (``"infer"``, ``"predict"``, ``"ModelInfer"``); "" for the other
    #: routes, which the per-model metrics do not count.
    endpoint = ""
    #: The model and version that served the request, once the service resolved them.
    model: str | None = None
    version: str | None = None
    #: When the request was decoded (received and turned into core types).
    decoded_at = 0
    #: Time in pre-processing (before ``enqueued_at``) and post-processing (after
    #: ``finished_at``), for a model with processing.
    preprocess_ns = 0
    postprocess_ns = 0
    #: When it was queued, started running and came back from the model.
    enqueued_at = 0
    started_at = 0
    finished_at = 0
    #: When encoding the answer started, and how long it took.
    encode_at = 0
    encode_ns = 0
    #: ``"success"``, ``"cancelled"`` or the error's kind (:func:`shipyard.metrics.outcome`);
    #: set by the transport with the answer.
    outcome = ""
    #: Request body bytes.
    bytes_in = 0

    def __init__(self, request_id: str, transport: str, trace: TraceContext | None) -> None:
        self.request_id = request_id
        #: ``"http"`` or ``"grpc"``.
        self.transport = transport
        #: The caller's trace context, when it sent a valid ``traceparent``.
        self.trace = trace
        self.received_at = time.perf_counter_ns()


#: The request the running task serves (None outside a request).
current_request: ContextVar[RequestContext | None] = ContextVar("shipyard_request", default=None)


def open_request(
    transport: str,
    request_id: bytes | None,
    traceparent: str | None = None,
    tracestate: str | None = None,
) -> RequestContext:
    """Start a request's context: the client's request ID if valid, else a new one.

    The caller sets :data:`current_request` to it for the request's duration.
    """
    rid = valid_request_id(request_id) if request_id else None
    trace = parse_traceparent(traceparent, tracestate) if traceparent else None
    return RequestContext(rid or new_request_id(), transport, trace)
