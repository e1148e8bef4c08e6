"""``/metrics``: the Prometheus collector reading the server's state at scrape time.

Nothing is recorded here: each scrape turns the per model-version :class:`ModelStats` (the
Triton-style ``shipyard_inference_*`` counters), the :class:`ServerMetrics` histograms and
counters, the model states and the server's gauges into metric families. The registry is
made per server (no global registry); ``prometheus_client``'s process, platform and GC
collectors are registered into it too. docs/operations.md lists every metric.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from shipyard.metrics.histogram import BATCH_SIZE_BUCKETS, Histogram
from shipyard.metrics.state import ServerMetrics
from shipyard.stats import ModelStats

__all__ = [
    "MODEL_STATES",
    "ServerGauges",
    "ShipyardCollector",
    "StatsCollector",
    "build_metrics_registry",
]

#: Each row: one model version's statistics and its current queue length.
StatsSource = Callable[[], Iterable[tuple[ModelStats, int]]]
#: Each row: a model's name and its state (``READY``, ``LOADING``, ...).
StateSource = Callable[[], Iterable[tuple[str, str]]]
#: Each row: a model version's instances: (name, version, working, being replaced,
#: replaced so far).
InstanceSource = Callable[[], Iterable[tuple[str, str, int, int, int]]]

#: The states ``shipyard_model_state`` reports (one series each, 1 for the current one).
MODEL_STATES = ("READY", "LOADING", "UNLOADING", "UNAVAILABLE")

_MV = ["model", "version"]


@dataclass(frozen=True, slots=True)
class ServerGauges:
    """The server-wide values read at scrape time."""

    ready: bool
    draining: bool
    #: Request body bytes held now, and the limit (0: none).
    inflight_bytes: int
    inflight_bytes_limit: int
    #: Inference requests in flight now, and the server-wide limit (0: none).
    inflight_requests: int
    inflight_requests_limit: int


class StatsCollector(Collector):
    """Exposes per model-version counters in Triton's style (``shipyard_inference_*``)."""

    def __init__(self, source: StatsSource) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        """Yield the counters, the queue gauges and the batch-size histogram."""
        success = CounterMetricFamily(
            "shipyard_inference_request_success", "Successful inference requests", labels=_MV
        )
        failure = CounterMetricFamily(
            "shipyard_inference_request_failure", "Failed inference requests", labels=_MV
        )
        count = CounterMetricFamily(
            "shipyard_inference_count", "Inferences performed (batch items)", labels=_MV
        )
        executions = CounterMetricFamily(
            "shipyard_inference_exec_count", "Model executions (batches)", labels=_MV
        )
        request_us = CounterMetricFamily(
            "shipyard_inference_request_duration_us",
            "Cumulative end-to-end time of successful requests in the server",
            labels=_MV,
        )
        queue_us = CounterMetricFamily(
            "shipyard_inference_queue_duration_us", "Cumulative queue time", labels=_MV
        )
        compute_us = CounterMetricFamily(
            "shipyard_inference_compute_infer_duration_us",
            "Cumulative model execution time, per request",
            labels=_MV,
        )
        queued = GaugeMetricFamily(
            "shipyard_inference_queue_size", "Requests waiting for an instance", labels=_MV
        )
        depth = GaugeMetricFamily(
            "shipyard_queue_depth", "Requests waiting in the model's queue", labels=_MV
        )
        batch = HistogramMetricFamily("shipyard_batch_size", "Rows per model execution", labels=_MV)
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
            depth.add_metric(key, waiting)
            buckets, total = _batch_buckets(stats)
            batch.add_metric(key, buckets, total)
        yield from (success, failure, count, executions, request_us, queue_us, compute_us)
        yield from (queued, depth, batch)


def _batch_buckets(stats: ModelStats) -> tuple[list[tuple[str, float]], float]:
    """The batch-size histogram of a version, from its executions per batch size."""
    histogram = Histogram(BATCH_SIZE_BUCKETS)
    for size, batch in stats.batches.items():
        histogram.observe_many(size, batch.compute_infer.count)
    return _buckets(histogram, 1.0), float(histogram.total)


def _buckets(histogram: Histogram, scale: float) -> list[tuple[str, float]]:
    """Prometheus ``le`` buckets of ``histogram`` (bounds divided by ``scale``)."""
    bounds = [repr(b / scale) for b in histogram.bounds] + ["+Inf"]
    return list(zip(bounds, map(float, histogram.cumulative()), strict=True))


class ShipyardCollector(Collector):
    """Exposes :class:`ServerMetrics`, the model states and the server's gauges."""

    def __init__(
        self,
        metrics: ServerMetrics,
        states: StateSource | None = None,
        gauges: Callable[[], ServerGauges] | None = None,
        instances: InstanceSource | None = None,
    ) -> None:
        self._metrics = metrics
        self._states = states
        self._gauges = gauges
        self._instances = instances

    def collect(self) -> Iterator[Metric]:
        """Yield the histograms, the answer counters, the load metrics and the gauges."""
        yield from self._requests()
        yield from self._loads()
        yield from self._instance_pools()
        yield from self._server()

    def _instance_pools(self) -> Iterator[Metric]:
        if self._instances is None:
            return
        working = GaugeMetricFamily(
            "shipyard_instances", "Working instances of the model version", labels=_MV
        )
        replacing = GaugeMetricFamily(
            "shipyard_instances_replacing",
            "Instances being replaced (an execution overran execution_timeout_s or died)",
            labels=_MV,
        )
        replaced = CounterMetricFamily(
            "shipyard_instance_replacements",
            "Instances retired and replaced since the version loaded",
            labels=_MV,
        )
        for name, version, size, loading, retired in self._instances():
            working.add_metric([name, version], size)
            replacing.add_metric([name, version], loading)
            replaced.add_metric([name, version], retired)
        yield from (working, replacing, replaced)

    def _requests(self) -> Iterator[Metric]:
        request = HistogramMetricFamily(
            "shipyard_request_duration_seconds",
            "End-to-end time of successful inference requests, arrival to answer",
            labels=_MV,
        )
        stage = HistogramMetricFamily(
            "shipyard_stage_duration_seconds",
            "Time of successful inference requests in each stage",
            labels=[*_MV, "stage"],
        )
        inflight = GaugeMetricFamily(
            "shipyard_inflight_requests", "Inference requests being served now", labels=_MV
        )
        answers = CounterMetricFamily(
            "shipyard_requests",
            "Inference requests answered, by transport, status code and outcome",
            labels=[*_MV, "transport", "code", "outcome"],
        )
        for metrics in [*self._metrics.versions(), self._metrics.unresolved]:
            key = [metrics.name, metrics.version]
            for (transport, code, result), n in sorted(metrics.answers.items()):
                answers.add_metric([*key, transport, code, result], n)
            if not metrics.name:
                continue
            inflight.add_metric(key, metrics.inflight)
            request.add_metric(key, _buckets(metrics.request, 1e9), metrics.request.total / 1e9)
            for name, histogram in metrics.stages():
                if name in ("preprocess", "postprocess") and not histogram.total:
                    continue  # only models with processing have these stages
                stage.add_metric([*key, name], _buckets(histogram, 1e9), histogram.total / 1e9)
        yield from (request, stage, inflight, answers)
        rejected = CounterMetricFamily(
            "shipyard_rejected_requests",
            "Requests refused by a server-wide limit before their body was read, by reason",
            labels=["reason"],
        )
        for reason, n in sorted(self._metrics.rejected.items()):
            rejected.add_metric([reason], n)
        yield rejected

    def _loads(self) -> Iterator[Metric]:
        duration = HistogramMetricFamily(
            "shipyard_model_load_duration_seconds", "Time to load a model", labels=["model"]
        )
        loads = CounterMetricFamily(
            "shipyard_model_loads", "Model loads and reloads", labels=["model", "outcome"]
        )
        for name, load in sorted(self._metrics.loads.items()):
            duration.add_metric([name], _buckets(load.duration, 1e9), load.duration.total / 1e9)
            loads.add_metric([name, "success"], load.successes)
            loads.add_metric([name, "failure"], load.failures)
        yield from (duration, loads)
        if self._states is not None:
            state = GaugeMetricFamily(
                "shipyard_model_state",
                "1 for the model's current state (READY, LOADING, UNLOADING, UNAVAILABLE)",
                labels=["model", "state"],
            )
            seen: set[str] = set()
            for name, current in self._states():
                if name in seen:  # one row per loaded version: the state is the model's
                    continue
                seen.add(name)
                for candidate in MODEL_STATES:
                    state.add_metric([name, candidate], 1.0 if candidate == current else 0.0)
            yield state
        pauses = HistogramMetricFamily(
            "shipyard_gc_pause_seconds",
            "Pauses of the garbage collector, by generation",
            labels=["generation"],
        )
        for generation, histogram in enumerate(self._metrics.gc_pauses):
            pauses.add_metric([str(generation)], _buckets(histogram, 1e9), histogram.total / 1e9)
        yield pauses

    def _server(self) -> Iterator[Metric]:
        if self._gauges is None:
            return
        now = self._gauges()
        for name, text, value in (
            ("shipyard_server_ready", "1 when the server is ready to serve", now.ready),
            ("shipyard_server_draining", "1 while the server shuts down", now.draining),
            (
                "shipyard_inflight_request_bytes",
                "Request body bytes held by requests in flight",
                now.inflight_bytes,
            ),
            (
                "shipyard_inflight_request_bytes_limit",
                "The server-wide limit on request bytes in flight (0: none)",
                now.inflight_bytes_limit,
            ),
            (
                "shipyard_server_inflight_requests",
                "Inference requests in flight, all models",
                now.inflight_requests,
            ),
            (
                "shipyard_server_inflight_requests_limit",
                "The server-wide limit on inference requests in flight (0: none)",
                now.inflight_requests_limit,
            ),
        ):
            yield GaugeMetricFamily(name, text, value=float(value))


def build_metrics_registry(
    source: StatsSource,
    metrics: ServerMetrics | None = None,
    states: StateSource | None = None,
    gauges: Callable[[], ServerGauges] | None = None,
    instances: InstanceSource | None = None,
) -> CollectorRegistry:
    """A fresh registry: the statistics, the server's metrics, and the process collectors."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(StatsCollector(source))
    if metrics is not None:
        registry.register(ShipyardCollector(metrics, states, gauges, instances))
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
    return registry
