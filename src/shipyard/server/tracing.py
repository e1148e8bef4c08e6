"""OpenTelemetry spans for each request and its stages (the ``otel`` extra; off by default).

Spans are made when the request ends, from the times its context recorded (no span objects
live while it is served, so tracing costs nothing on the way): a SERVER span for the request,
child of the caller's ``traceparent`` when it sent one, and one child per stage it went
through (decode, preprocess, queue, compute, postprocess, encode). With ``otel = true`` the
exporter is OTLP over HTTP, configured by the standard ``OTEL_*`` variables
(``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_SERVICE_NAME``, ``OTEL_TRACES_SAMPLER``...);
``OTEL_TRACES_EXPORTER=console`` prints spans instead. Tests pass their own provider (the
SDK's in-memory exporter).
"""

from __future__ import annotations

import os
import time
from typing import Any

from shipyard.context import RequestContext
from shipyard.errors import ConfigError

__all__ = ["Tracer", "otlp_tracer_provider"]


def otlp_tracer_provider() -> Any:
    """A TracerProvider exporting in batches as the ``OTEL_*`` environment says.

    Raises ConfigError with an install hint when the ``otel`` extra is missing.
    """
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            ConsoleSpanExporter,
            SpanExporter,
        )
    except ImportError as exc:
        raise ConfigError(
            f"tracing needs the 'otel' extra ({exc.name} is missing): "
            "pip install 'shipyard[otel]', or leave otel off"
        ) from exc
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", "shipyard")})
    provider = TracerProvider(resource=resource)
    kind = os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower()
    exporter: SpanExporter | None = None
    if kind == "console":
        exporter = ConsoleSpanExporter()
    elif kind == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError as exc:
            raise ConfigError(
                f"OTLP export needs the 'otel' extra ({exc.name} is missing): "
                "pip install 'shipyard[otel]'"
            ) from exc
        exporter = OTLPSpanExporter()
    elif kind != "none":
        raise ConfigError(f"OTEL_TRACES_EXPORTER={kind!r}: Shipyard supports otlp, console, none")
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


class Tracer:
    """Records each finished request as spans on an OpenTelemetry TracerProvider."""

    def __init__(self, provider: Any) -> None:
        from opentelemetry import trace

        self._trace = trace
        self._tracer = provider.get_tracer("shipyard")
        self._provider = provider

    def record(self, ctx: RequestContext, method: str, path: str, code: str, failed: bool) -> None:
        """Make the request's span and its stages' spans from ``ctx``'s times."""
        from opentelemetry.trace import (
            NonRecordingSpan,
            SpanContext,
            SpanKind,
            Status,
            StatusCode,
            TraceFlags,
        )

        trace = self._trace
        parent = None
        if ctx.trace is not None:
            remote = SpanContext(
                int(ctx.trace.trace_id, 16),
                int(ctx.trace.span_id, 16),
                is_remote=True,
                trace_flags=TraceFlags(ctx.trace.flags),
            )
            parent = trace.set_span_in_context(NonRecordingSpan(remote))
        origin = ctx.received_at
        start = ctx.wall_start_ns

        def wall(instant: int) -> int:
            return start + (instant - origin)

        attributes: dict[str, Any] = {
            "shipyard.request_id": ctx.request_id,
            "shipyard.transport": ctx.transport,
            "shipyard.status_code": code,
        }
        if ctx.transport == "http":
            attributes["http.request.method"] = method
            attributes["url.path"] = path
        else:
            attributes["rpc.system"] = "grpc"
            attributes["rpc.method"] = path
        if ctx.model is not None:
            attributes["shipyard.model"] = ctx.model
            attributes["shipyard.model_version"] = ctx.version or ""
        span = self._tracer.start_span(
            f"{method} {path}" if ctx.transport == "http" else path,
            context=parent,
            kind=SpanKind.SERVER,
            start_time=start,
            attributes=attributes,
        )
        if failed:
            span.set_status(Status(StatusCode.ERROR, f"status {code}"))
        inside = trace.set_span_in_context(span)
        for name, begin, end in _stages(ctx):
            child = self._tracer.start_span(name, context=inside, start_time=wall(begin))
            child.end(end_time=wall(end))
        span.end(end_time=wall(time.perf_counter_ns()))

    def shutdown(self) -> None:
        """Flush and stop the provider's exporters."""
        shutdown = getattr(self._provider, "shutdown", None)
        if shutdown is not None:
            shutdown()


def _stages(ctx: RequestContext) -> list[tuple[str, int, int]]:
    """The stages ``ctx`` went through as (name, start, end) ``perf_counter_ns`` instants."""
    out: list[tuple[str, int, int]] = []
    if ctx.decoded_at:
        out.append(("decode", ctx.received_at, ctx.decoded_at))
    if ctx.preprocess_ns and ctx.enqueued_at:
        out.append(("preprocess", ctx.enqueued_at - ctx.preprocess_ns, ctx.enqueued_at))
    if ctx.started_at:
        out.append(("queue", ctx.enqueued_at, ctx.started_at))
        out.append(("compute", ctx.started_at, ctx.finished_at))
    if ctx.postprocess_ns and ctx.finished_at:
        out.append(("postprocess", ctx.finished_at, ctx.finished_at + ctx.postprocess_ns))
    if ctx.encode_ns:
        out.append(("encode", ctx.encode_at, ctx.encode_at + ctx.encode_ns))
    return out
