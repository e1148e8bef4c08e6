"""Reading ``/metrics`` back: per-model rates and latency percentiles between two scrapes.

What ``shipyard top`` shows, computed as Prometheus would (``rate`` of the counters and
``histogram_quantile`` of the bucket increases), so it works on any server exposing these
metrics. No I/O here: the caller fetches the text.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

__all__ = ["REQUIRED", "ModelActivity", "Scrape", "activity", "parse", "quantile"]

#: The histogram a server must expose for ``shipyard top`` (a Shipyard of this version or later).
REQUIRED = "shipyard_request_duration_seconds"


@dataclass
class _Model:
    """One model's raw values in one scrape (summed over its versions)."""

    requests: float = 0.0
    errors: float = 0.0
    latency: dict[float, float] = field(default_factory=lambda: defaultdict(float))
    batch_sum: float = 0.0
    batch_count: float = 0.0
    queue: float = 0.0
    inflight: float = 0.0


@dataclass
class Scrape:
    """The values ``shipyard top`` needs from one ``/metrics`` text, per model."""

    #: When it was taken (``time.monotonic()``).
    at: float
    models: dict[str, _Model]
    #: Whether the text had :data:`REQUIRED` at all.
    has_histograms: bool


def parse(text: str, at: float) -> Scrape:
    """Read the per-model values out of a ``/metrics`` text taken at ``at``."""
    models: dict[str, _Model] = defaultdict(_Model)
    has_histograms = False
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            model = sample.labels.get("model")
            if not model:
                continue
            name, labels, value = sample.name, sample.labels, sample.value
            entry = models[model]
            if name == "shipyard_requests_total":
                entry.requests += value
                if labels.get("outcome") != "success":
                    entry.errors += value
            elif name == f"{REQUIRED}_bucket":
                has_histograms = True
                entry.latency[float(labels["le"])] += value
            elif name == "shipyard_batch_size_sum":
                entry.batch_sum += value
            elif name == "shipyard_batch_size_count":
                entry.batch_count += value
            elif name == "shipyard_queue_depth":
                entry.queue += value
            elif name == "shipyard_inflight_requests":
                entry.inflight += value
    return Scrape(at, dict(models), has_histograms)


def quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float | None:
    """The ``q``-quantile of cumulative ``(le, count)`` buckets, interpolated linearly within
    the bucket as Prometheus' ``histogram_quantile`` does; None without observations."""
    ordered = sorted(buckets)
    if not ordered or ordered[-1][1] <= 0:
        return None
    rank = q * ordered[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in ordered:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound  # the +Inf bucket: the highest finite bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (
                count - lower_count
            )
        lower_bound, lower_count = bound, count
    return lower_bound


@dataclass(frozen=True, slots=True)
class ModelActivity:
    """One model between two scrapes."""

    model: str
    requests_per_s: float
    errors_per_s: float
    #: Latency percentiles of the requests answered in between (None: none answered).
    p50_s: float | None
    p99_s: float | None
    #: Mean rows per execution in between (None: no execution).
    batch_mean: float | None
    #: Now: requests waiting in the queue, and being served.
    queue: float
    inflight: float


def activity(before: Scrape, after: Scrape) -> list[ModelActivity]:
    """What each model did between two scrapes (a counter that went down restarted at 0)."""
    seconds = max(after.at - before.at, 1e-9)
    rows = []
    for name in sorted(after.models):
        now = after.models[name]
        then = before.models.get(name, _Model())
        buckets = [
            (le, _increase(now.latency[le], then.latency.get(le, 0.0))) for le in now.latency
        ]
        executions = _increase(now.batch_count, then.batch_count)
        rows.append(
            ModelActivity(
                name,
                _increase(now.requests, then.requests) / seconds,
                _increase(now.errors, then.errors) / seconds,
                quantile(0.5, buckets),
                quantile(0.99, buckets),
                _increase(now.batch_sum, then.batch_sum) / executions if executions else None,
                now.queue,
                now.inflight,
            )
        )
    return rows


def _increase(now: float, then: float) -> float:
    return now - then if now >= then else now
