"""Summing N workers into one server's numbers (shipyard.workers.aggregate)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from shipyard.stats import ModelStats
from shipyard.workers.aggregate import (
    families_to_json,
    merge_families,
    merge_stats,
    render_families,
    stats_from_json,
    stats_to_json,
)


def _stats(name: str, requests: int, batch: int, last_ms: int) -> ModelStats:
    stats = ModelStats(name, "1")
    for _ in range(requests):
        stats.success.add(1000)
        stats.queue.add(100)
        stats.record_execution(batch, 1, 10, 20, 30)
    stats.last_inference_ms = last_ms
    return stats


def test_statistics_survive_the_control_channel() -> None:
    """ModelStats → JSON → ModelStats keeps every counter, batch sizes included."""
    original = [_stats("a", 3, 4, 7), _stats("b", 1, 1, 9)]
    assert stats_from_json(stats_to_json(original)) == original


def test_statistics_add_up_over_workers() -> None:
    """Counts and durations add, per batch size too; the last inference is the latest."""
    one = [_stats("a", 3, 4, 100), _stats("b", 2, 1, 50)]
    two = [_stats("a", 5, 4, 90), _stats("c", 1, 2, 10)]
    merged = {s.name: s for s in merge_stats([one, two])}
    assert sorted(merged) == ["a", "b", "c"]
    a = merged["a"]
    assert a.success.count == 8
    assert a.success.ns == 8000
    assert a.queue.count == 8
    assert (a.inference_count, a.execution_count) == (32, 8)
    assert a.compute_infer.count == 8
    assert a.batches[4].compute_infer.count == 8
    assert a.batches[4].compute_output.ns == 8 * 30
    assert a.last_inference_ms == 100
    assert merged["b"] == one[1]


class _Worker(Collector):
    """One worker's families: a counter, a histogram, gauges that sum and gauges that do not."""

    def __init__(self, requests: int, buckets: list[float], ready: bool, state: str) -> None:
        self.requests = requests
        self.buckets = buckets
        self.ready = ready
        self.state = state

    def collect(self) -> Iterator[Metric]:
        counter = CounterMetricFamily("requests", "Requests", labels=["model"])
        counter.add_metric(["m"], self.requests)
        histogram = HistogramMetricFamily("latency_seconds", "Latency", labels=["model"])
        bounds = ["0.1", "1.0", "+Inf"]
        histogram.add_metric(["m"], list(zip(bounds, self.buckets, strict=True)), 0.5)
        inflight = GaugeMetricFamily("shipyard_inflight_requests", "In flight", labels=["m"])
        inflight.add_metric(["m"], 2)
        ready = GaugeMetricFamily("shipyard_server_ready", "Ready", value=float(self.ready))
        states = GaugeMetricFamily("shipyard_model_state", "State", labels=["model", "state"])
        for state in ("READY", "LOADING"):
            states.add_metric(["m", state], float(state == self.state))
        yield from (counter, histogram, inflight, ready, states)


def _families(worker: _Worker) -> list[dict[str, Any]]:
    registry = CollectorRegistry(auto_describe=True)
    registry.register(worker)
    return families_to_json(registry)


def _samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text.decode())
        for s in family.samples
    }


def test_metrics_sum_at_the_collector_level() -> None:
    """Counters and histogram buckets, counts and sums add up; the exposition stays valid."""
    one = _Worker(3, [1.0, 2.0, 3.0], True, "READY")
    two = _Worker(4, [0.0, 4.0, 4.0], True, "READY")
    text = render_families(merge_families([_families(one), _families(two)]))
    samples = _samples(text)
    m = (("model", "m"),)
    assert samples[("requests_total", m)] == 7
    assert samples[("latency_seconds_bucket", (("le", "0.1"), ("model", "m")))] == 1
    assert samples[("latency_seconds_bucket", (("le", "1.0"), ("model", "m")))] == 6
    assert samples[("latency_seconds_bucket", (("le", "+Inf"), ("model", "m")))] == 7
    assert samples[("latency_seconds_count", m)] == 7
    assert samples[("latency_seconds_sum", m)] == 1.0
    assert samples[("shipyard_inflight_requests", (("m", "m"),))] == 4


def test_merged_exposition_reads_like_one_process() -> None:
    """One worker's families, merged alone, render exactly as its own registry does."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(_Worker(3, [1.0, 2.0, 3.0], True, "READY"))
    assert render_families(merge_families([families_to_json(registry)])) == generate_latest(
        registry
    )


@pytest.mark.parametrize(
    ("ready", "state", "want_ready", "want_loading"),
    [((True, True), ("READY", "READY"), 1.0, 0.0), ((True, False), ("READY", "LOADING"), 0.0, 1.0)],
)
def test_readiness_and_states_are_not_summed(
    ready: tuple[bool, bool], state: tuple[str, str], want_ready: float, want_loading: float
) -> None:
    """The server is ready only if every worker is; a state is 1 if any worker is in it."""
    workers = [_Worker(1, [1.0, 1.0, 1.0], r, s) for r, s in zip(ready, state, strict=True)]
    samples = _samples(render_families(merge_families([_families(w) for w in workers])))
    assert samples[("shipyard_server_ready", ())] == want_ready
    assert samples[("shipyard_model_state", (("model", "m"), ("state", "READY")))] == 1.0
    assert samples[("shipyard_model_state", (("model", "m"), ("state", "LOADING")))] == (
        want_loading
    )


def test_a_series_only_some_workers_have_keeps_their_values() -> None:
    """A model loaded on one worker only appears once, with that worker's numbers."""
    one = [{"name": "x", "documentation": "X", "type": "counter", "unit": "", "samples": []}]
    one[0]["samples"] = [["x_total", {"model": "a"}, 2.0]]
    two = [{"name": "x", "documentation": "X", "type": "counter", "unit": "", "samples": []}]
    two[0]["samples"] = [["x_total", {"model": "b"}, 5.0]]
    samples = _samples(render_families(merge_families([one, two])))
    assert samples == {("x_total", (("model", "a"),)): 2.0, ("x_total", (("model", "b"),)): 5.0}
