"""Metrics: the server's metric state and its Prometheus exposition (no global registry).

:class:`ServerMetrics` (:mod:`.state`) holds every counter and histogram as plain integers,
updated at the end of each request; :func:`build_metrics_registry` (:mod:`.exposition`)
turns it, and the per-version statistics, into ``/metrics`` at scrape time;
:mod:`.scrape` reads ``/metrics`` back (``shipyard top``).
"""

from shipyard.metrics.exposition import (
    MODEL_STATES,
    ServerGauges,
    ShipyardCollector,
    StatsCollector,
    build_metrics_registry,
)
from shipyard.metrics.histogram import (
    BATCH_SIZE_BUCKETS,
    DEFAULT_LATENCY_BUCKETS_S,
    Histogram,
    check_buckets,
)
from shipyard.metrics.state import STAGES, LoadMetrics, ModelMetrics, ServerMetrics, outcome

__all__ = [
    "BATCH_SIZE_BUCKETS",
    "DEFAULT_LATENCY_BUCKETS_S",
    "MODEL_STATES",
    "STAGES",
    "Histogram",
    "LoadMetrics",
    "ModelMetrics",
    "ServerGauges",
    "ServerMetrics",
    "ShipyardCollector",
    "StatsCollector",
    "build_metrics_registry",
    "check_buckets",
    "outcome",
]
