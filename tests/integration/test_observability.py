"""Request IDs, trace context, per-stage metrics and OpenTelemetry spans of a real server."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client.parser import text_string_to_metric_families

from shipyard.testing import running_server, wait_until_blocking, write_model
from shipyard.testing.processing import digit_image, image_bytes, mean_bucket_model

ROW = {
    "inputs": [
        {"name": name, "datatype": "FP32", "shape": [1, 16], "data": [1.0] * 16}
        for name in ("INPUT0", "INPUT1")
    ]
}
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
DIGITS = """
[[preprocess]]
input = "image"
target = "input"
steps = [
  {op = "decode_image", mode = "L"},
  {op = "resize", size = [28, 28]},
  {op = "scale", factor = 0.00392156862745098},
  {op = "layout", order = "NCHW"},
  {op = "cast", datatype = "FP32"},
]

[[postprocess]]
output = "probabilities"
steps = [{op = "softmax"}]
"""


def _samples(url: str) -> list[tuple[str, dict[str, str], float]]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return [
        (s.name, s.labels, s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def _value(samples: list[tuple[str, dict[str, str], float]], name: str, **labels: str) -> float:
    return sum(v for n, lab, v in samples if n == name and labels.items() <= lab.items())


def test_request_id_is_echoed_or_generated(simple_repository: Path) -> None:
    """x-request-id comes back as sent; a request without one (or a bad one) gets a fresh ID."""
    with running_server(simple_repository, grpc=False) as server, httpx.Client() as client:
        given = client.post(
            f"{server.url}/v2/models/simple/infer", json=ROW, headers={"x-request-id": "abc-1"}
        )
        fresh = client.get(f"{server.url}/v2/health/live")
        bad = client.get(f"{server.url}/v2/health/live", headers={"x-request-id": "a b"})
        error = client.post(f"{server.url}/v2/models/nope/infer", json=ROW)
    assert given.headers["x-request-id"] == "abc-1"
    assert given.json().get("id") is None  # the OIP id field is the client's own, untouched
    for answer in (fresh, bad, error):
        assert re.fullmatch(r"[0-9a-f]{32}", answer.headers["x-request-id"])
    assert fresh.headers["x-request-id"] != bad.headers["x-request-id"]


def test_stage_histograms_and_answers_per_model(repository: Path) -> None:
    """/metrics times each stage per model version (with pre/post-processing for a model that
    has it) and counts answers by transport, code and outcome."""
    write_model(repository, "digits", mean_bucket_model(output="probabilities"), config=DIGITS)
    png = image_bytes(digit_image(0.5))
    with running_server(repository, grpc=False) as server, httpx.Client() as client:
        for _ in range(3):
            answer = client.post(
                f"{server.url}/v2/models/digits/predict",
                content=png,
                headers={"content-type": "image/png"},
            )
            assert answer.status_code == 200, answer.text
        assert client.post(f"{server.url}/v2/models/digits/infer", json={}).status_code == 400
        assert client.post(f"{server.url}/v2/models/nope/infer", json=ROW).status_code == 404
        samples = _samples(server.url)
    count = "shipyard_stage_duration_seconds_count"
    for stage in ("decode", "preprocess", "queue", "compute", "postprocess", "encode"):
        assert _value(samples, count, model="digits", version="1", stage=stage) == 3, stage
    assert _value(samples, "shipyard_request_duration_seconds_count", model="digits") == 3
    assert _value(samples, "shipyard_request_duration_seconds_bucket", le="+Inf") == 3
    total = "shipyard_requests_total"
    assert _value(samples, total, model="digits", code="200", outcome="success") == 3
    assert _value(samples, total, model="", code="400", outcome="invalid_argument") == 1
    assert _value(samples, total, model="", code="404", outcome="not_found") == 1
    assert _value(samples, "shipyard_inflight_requests", model="digits") == 0
    assert _value(samples, "shipyard_batch_size_count", model="digits") == 3
    assert _value(samples, "shipyard_model_loads_total", model="digits", outcome="success") == 1
    assert _value(samples, "shipyard_model_state", model="digits", state="READY") == 1
    assert _value(samples, "shipyard_server_ready") == 1


def test_spans_per_stage_continue_the_callers_trace(simple_repository: Path) -> None:
    """With otel on, a request is a SERVER span in the caller's trace with one child per
    stage; a request without traceparent starts a trace of its own."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    traceparent = f"00-{TRACE}-{PARENT}-01"
    with (
        running_server(simple_repository, grpc=False, otel=True, tracer_provider=provider) as s,
        httpx.Client() as client,
    ):
        headers = {"traceparent": traceparent, "tracestate": "v=1", "x-request-id": "span-1"}
        assert client.post(f"{s.url}/v2/models/simple/infer", json=ROW, headers=headers)
        assert client.post(f"{s.url}/v2/models/simple/infer", json={}).status_code == 400
        wait_until_blocking(lambda: len(exporter.get_finished_spans()) >= 6, "spans are made")
    spans = exporter.get_finished_spans()
    server_spans = [span for span in spans if span.kind is SpanKind.SERVER]
    first, second = server_spans
    assert first.name == "POST /v2/models/simple/infer"
    assert format(first.context.trace_id, "032x") == TRACE
    assert first.parent is not None
    assert format(first.parent.span_id, "016x") == PARENT
    attributes: dict[str, Any] = dict(first.attributes or {})
    assert attributes["shipyard.request_id"] == "span-1"
    assert attributes["shipyard.model"] == "simple"
    children = {
        span.name: span
        for span in spans
        if span.parent and span.parent.span_id == first.context.span_id
    }
    assert set(children) == {"decode", "queue", "compute", "encode"}
    for child in children.values():
        assert first.start_time <= child.start_time <= child.end_time <= first.end_time
    assert format(second.context.trace_id, "032x") != TRACE
    assert second.status.status_code is StatusCode.UNSET  # a 400 is the client's error
