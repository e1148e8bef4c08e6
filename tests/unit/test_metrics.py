"""The metric state and its exposition: histograms, per-request recording, /metrics text."""

from __future__ import annotations

import gc

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from shipyard.context import open_request
from shipyard.errors import (
    DeadlineExceededError,
    InvalidInputError,
    ModelNotReadyError,
    OverloadedError,
)
from shipyard.metrics import (
    DEFAULT_LATENCY_BUCKETS_S,
    Histogram,
    ServerGauges,
    ServerMetrics,
    build_metrics_registry,
    check_buckets,
    outcome,
)
from shipyard.stats import ModelStats


def test_histogram_buckets_are_upper_bounds_inclusive() -> None:
    """A value equal to a bound counts in that bound's bucket; past the last bound, in +Inf."""
    histogram = Histogram([10, 20])
    for value in (0, 10, 11, 20, 21, 10_000):
        histogram.observe(value)
    assert histogram.counts == [2, 2, 2]
    assert histogram.cumulative() == [2, 4, 6]
    assert histogram.total == 10_062
    assert histogram.count == 6


def test_histogram_merge_adds_and_refuses_other_bounds() -> None:
    """Merging sums counts and totals (aggregating processes); other bounds are refused."""
    a, b = Histogram([10]), Histogram([10])
    a.observe(5)
    b.observe_many(50, 3)
    a.merge(b)
    assert a.counts == [1, 3]
    assert a.total == 155
    with pytest.raises(ValueError, match="different bucket bounds"):
        a.merge(Histogram([20]))


@pytest.mark.parametrize(
    ("bounds", "message"),
    [((), "at least one"), ((0.1, 0.1), "increase"), ((-1.0,), "> 0"), ((float("inf"),), "finite")],
)
def test_bucket_bounds_are_checked(bounds: tuple[float, ...], message: str) -> None:
    """Bucket bounds must be positive, finite and strictly increasing."""
    with pytest.raises(ValueError, match=message):
        check_buckets(bounds, "buckets")


def test_default_buckets_resolve_sub_millisecond_latencies() -> None:
    """The default buckets start at 50 µs and have four bounds below 1 ms."""
    assert DEFAULT_LATENCY_BUCKETS_S[0] == 0.00005
    assert sum(b < 0.001 for b in DEFAULT_LATENCY_BUCKETS_S) == 4


def test_outcome_names_the_error_kind() -> None:
    """Outcomes: success, overloaded for a full queue, else the error code's name."""
    assert outcome(None) == "success"
    assert outcome(OverloadedError("x")) == "overloaded"
    assert outcome(ModelNotReadyError("x")) == "unavailable"
    assert outcome(InvalidInputError("x")) == "invalid_argument"
    assert outcome(DeadlineExceededError("x")) == "deadline_exceeded"
    assert outcome(RuntimeError("x")) == "internal"


def _served(metrics: ServerMetrics, code: str = "200", result: str = "success") -> None:
    ctx = open_request("http", None)
    ctx.endpoint, ctx.model, ctx.version, ctx.outcome = "infer", "m", "1", result
    start = ctx.received_at
    ctx.decoded_at = start + 100_000
    ctx.enqueued_at, ctx.started_at, ctx.finished_at = (
        start + 200_000,
        start + 300_000,
        start + 900_000,
    )
    ctx.encode_at, ctx.encode_ns = start + 950_000, 20_000
    metrics.model("m", "1")
    metrics.finish(ctx, code)


def _families(metrics: ServerMetrics, stats: list[ModelStats] | None = None) -> dict[str, list]:
    registry = build_metrics_registry(
        lambda: [(s, 3) for s in stats or []],
        metrics,
        lambda: [("m", "READY")],
        lambda: ServerGauges(True, False, 10, 100, 2, 0),
    )
    text = generate_latest(registry).decode()
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def test_a_finished_request_is_counted_and_timed_per_stage() -> None:
    """A successful request adds to the end-to-end and per-stage histograms and the counter."""
    metrics = ServerMetrics()
    _served(metrics)
    _served(metrics, "503", "overloaded")
    families = _families(metrics)
    requests = {
        (s.labels["code"], s.labels["outcome"]): s.value
        for s in families["shipyard_requests"]
        if s.labels["model"] == "m"
    }
    assert requests == {("200", "success"): 1.0, ("503", "overloaded"): 1.0}
    stages = {
        s.labels["stage"]: s.value
        for s in families["shipyard_stage_duration_seconds"]
        if s.name.endswith("_sum")
    }
    assert stages == pytest.approx(
        {"decode": 1e-4, "queue": 1e-4, "compute": 6e-4, "encode": 2e-5}
    )  # no pre/post-processing stage for a model without processing
    count = next(
        s.value for s in families["shipyard_request_duration_seconds"] if s.name.endswith("_count")
    )
    assert count == 1.0  # the 503 is counted, not timed


def test_requests_without_a_model_are_counted_under_empty_labels() -> None:
    """A request refused before a model was resolved counts with model="" and version=""."""
    metrics = ServerMetrics()
    ctx = open_request("grpc", None)
    ctx.endpoint, ctx.outcome = "ModelInfer", "not_found"
    metrics.finish(ctx, "5")
    sample = next(s for s in _families(metrics)["shipyard_requests"])
    assert sample.labels == {
        "model": "",
        "version": "",
        "transport": "grpc",
        "code": "5",
        "outcome": "not_found",
    }


def test_exposition_has_every_documented_family() -> None:
    """/metrics has the histograms, gauges and counters docs/operations.md lists."""
    metrics = ServerMetrics()
    _served(metrics)
    metrics.model_loaded("m", 0.25, ok=True)
    metrics.reject("inflight_bytes")
    stats = ModelStats("m", "1")
    stats.record_execution(4, 2, 10, 20, 30)
    families = _families(metrics, [stats])
    for name in (
        "shipyard_request_duration_seconds",
        "shipyard_stage_duration_seconds",
        "shipyard_batch_size",
        "shipyard_queue_depth",
        "shipyard_inflight_requests",
        "shipyard_requests",
        "shipyard_rejected_requests",
        "shipyard_model_load_duration_seconds",
        "shipyard_model_loads",
        "shipyard_model_state",
        "shipyard_gc_pause_seconds",
        "shipyard_server_ready",
        "shipyard_inflight_request_bytes",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_cpu_seconds",
        "python_gc_collections",
    ):
        assert name in families, name
    batch = {s.labels.get("le"): s.value for s in families["shipyard_batch_size"]}
    assert batch["2.0"] == 0.0
    assert batch["4.0"] == 1.0  # one execution of 4 rows
    states = {s.labels["state"]: s.value for s in families["shipyard_model_state"]}
    assert states == {"READY": 1.0, "LOADING": 0.0, "UNLOADING": 0.0, "UNAVAILABLE": 0.0}


def test_gc_pauses_are_timed_only_while_started() -> None:
    """GC pause timing starts and stops with the server; collections in between are counted."""
    metrics = ServerMetrics()
    gc.collect()
    assert metrics.gc_pauses[2].count == 0
    metrics.start_gc_timing()
    try:
        gc.collect()
    finally:
        metrics.stop_gc_timing()
    assert metrics.gc_pauses[2].count == 1
    gc.collect()
    assert metrics.gc_pauses[2].count == 1


def test_server_metrics_merge_sums_another_process() -> None:
    """Merging another process's state sums every counter and histogram."""
    a, b = ServerMetrics(), ServerMetrics()
    _served(a)
    _served(b)
    b.reject("inflight_requests")
    a.merge(b)
    assert a.model("m", "1").request.count == 2
    assert a.model("m", "1").answers == {("http", "200", "success"): 2}
    assert a.rejected == {"inflight_requests": 1}
