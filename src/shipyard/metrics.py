"""Prometheus metrics, read from the statistics at scrape time (no global registry).

The collector costs nothing per request: it turns each model version's :class:`ModelStats`
into counters only when ``/metrics`` is scraped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from shipyard.stats import ModelStats

__all__ = ["StatsCollector", "build_metrics_registry"]

#: Each row: one model version's statistics and its current queue length.
StatsSource = Callable[[], Iterable[tuple[ModelStats, int]]]


class StatsCollector(Collector):
    """Exposes per model-version counters in Triton's style (``shipyard_inference_*``)."""

    def __init__(self, source: StatsSource) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        labels = ["model", "version"]
        success = CounterMetricFamily(
            "shipyard_inference_request_success", "Successful inference requests", labels=labels
        )
        failure = CounterMetricFamily(
            "shipyard_inference_request_failure", "Failed inference requests", labels=labels
        )
        count = CounterMetricFamily(
            "shipyard_inference_count", "Inferences performed (batch items)", labels=labels
        )
        executions = CounterMetricFamily(
            "shipyard_inference_exec_count", "Model executions (batches)", labels=labels
        )
        request_us = CounterMetricFamily(
            "shipyard_inference_request_duration_us",
            "Cumulative end-to-end time of successful requests in the server",
            labels=labels,
        )
        queue_us = CounterMetricFamily(
            "shipyard_inference_queue_duration_us", "Cumulative queue time", labels=labels
        )
        compute_us = CounterMetricFamily(
            "shipyard_inference_compute_infer_duration_us",
            "Cumulative model execution time, per request",
            labels=labels,
        )
        queued = GaugeMetricFamily(
            "shipyard_inference_queue_size", "Requests waiting for an instance", labels=labels
        )
        for stats, waiting in self._source():
            key = [stats.name, stats.version]
            success.add_metric(key, stats.success.count)
            failure.add_metric(key, stats.fail.count)
            count.add_metric(key, stats.inference_count)
            executions.add_metric(key, stats.execution_count)
            request_us.add_metric(key, stats.success.ns / 1000)
            queue_us.add_metric(key, stats.queue.ns / 1000)
            compute_us.add_metric(key, stats.compute_infer.ns / 1000)
            queued.add_metric(key, waiting)
        yield from (success, failure, count, executions, request_us, queue_us, compute_us, queued)


def build_metrics_registry(source: StatsSource) -> CollectorRegistry:
    """A fresh registry holding the statistics collector."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(StatsCollector(source))
    return registry
