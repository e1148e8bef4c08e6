"""One server's numbers from N workers: statistics and ``/metrics`` summed over the processes.

Statistics travel as JSON (:func:`stats_to_json`) and add up field by field
(:meth:`ModelStats.merge`). ``/metrics`` is aggregated at the level of the Prometheus
collector: each worker sends the samples its own registry collects (:func:`families_to_json`,
every family, histograms included, whatever collectors the server registers), and
:func:`merge_families` adds the samples of the same name and labels. That is exact for
counters and histograms (a bucket's cumulative count summed over workers is the cumulative
count of the summed histogram: every worker has the same bucket bounds). A gauge is summed
too (requests in flight, queue sizes, resident memory), except those in :data:`GAUGE_RULES`,
whose sum would mean nothing: readiness is the least, a state or a draining flag the most.

Why not ``prometheus_client``'s multiprocess mode: it aggregates only metrics kept in its
memory-mapped files by its own metric objects, and Shipyard's metrics are custom collectors
that read plain integers at scrape time (no per-request file writes, no global registry).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from shipyard.stats import BatchStats, Duration, ModelStats

__all__ = [
    "GAUGE_RULES",
    "families_to_json",
    "merge_families",
    "merge_stats",
    "render_families",
    "stats_from_json",
    "stats_to_json",
]

#: How the samples of these gauges combine over workers (every other gauge is summed).
GAUGE_RULES: dict[str, str] = {
    "shipyard_server_ready": "min",
    "shipyard_server_draining": "max",
    "shipyard_model_state": "max",
    "process_start_time_seconds": "min",
    "process_max_fds": "min",
    "python_info": "max",
}

_DURATIONS = ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output")
_COMPUTE = ("compute_input", "compute_infer", "compute_output")


def _duration(value: Sequence[int]) -> Duration:
    count, ns = value
    return Duration(int(count), int(ns))


def stats_to_json(stats: Iterable[ModelStats]) -> list[dict[str, Any]]:
    """Model version statistics as JSON values (durations as ``[count, ns]``)."""
    out = []
    for s in stats:
        row: dict[str, Any] = {
            "name": s.name,
            "version": s.version,
            "last_inference_ms": s.last_inference_ms,
            "inference_count": s.inference_count,
            "execution_count": s.execution_count,
        }
        for key in _DURATIONS:
            d: Duration = getattr(s, key)
            row[key] = [d.count, d.ns]
        row["batches"] = {
            str(size): {key: [getattr(b, key).count, getattr(b, key).ns] for key in _COMPUTE}
            for size, b in s.batches.items()
        }
        out.append(row)
    return out


def stats_from_json(rows: Iterable[dict[str, Any]]) -> list[ModelStats]:
    """The inverse of :func:`stats_to_json`."""
    out = []
    for row in rows:
        stats = ModelStats(
            str(row["name"]),
            str(row["version"]),
            int(row["last_inference_ms"]),
            int(row["inference_count"]),
            int(row["execution_count"]),
        )
        for key in _DURATIONS:
            setattr(stats, key, _duration(row[key]))
        for size, batch in row["batches"].items():
            stats.batches[int(size)] = BatchStats(**{k: _duration(batch[k]) for k in _COMPUTE})
        out.append(stats)
    return out


def merge_stats(per_worker: Iterable[Iterable[ModelStats]]) -> list[ModelStats]:
    """The statistics of every model version over all workers, in first-seen order."""
    merged: dict[tuple[str, str], ModelStats] = {}
    for stats in per_worker:
        for s in stats:
            mine = merged.get((s.name, s.version))
            if mine is None:
                merged[(s.name, s.version)] = mine = ModelStats(s.name, s.version)
            mine.merge(s)
    return list(merged.values())


def families_to_json(registry: CollectorRegistry) -> list[dict[str, Any]]:
    """Every metric family ``registry`` collects now, with its samples, as JSON values."""
    return [
        {
            "name": family.name,
            "documentation": family.documentation,
            "type": family.type,
            "unit": family.unit,
            "samples": [[s.name, s.labels, s.value] for s in family.samples],
        }
        for family in registry.collect()
    ]


def merge_families(per_worker: Iterable[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Combine the families of several workers: same family, same sample name and labels.

    Samples add up, except the gauges of :data:`GAUGE_RULES`. A family or sample only some
    workers have (a model loaded on one of them) keeps the values of those that have it.
    """
    families: dict[str, dict[str, Any]] = {}
    #: Per family: (sample name, sorted labels) → [labels as first seen, value].
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], list[Any]]] = {}
    for worker in per_worker:
        for family in worker:
            name = family["name"]
            if name not in families:
                families[name] = {k: family[k] for k in ("name", "documentation", "type", "unit")}
                values[name] = {}
            rule = GAUGE_RULES.get(name, "sum") if family["type"] == "gauge" else "sum"
            samples = values[name]
            for sample_name, labels, value in family["samples"]:
                key = (sample_name, tuple(sorted(labels.items())))
                mine = samples.get(key)
                if mine is None:
                    samples[key] = [labels, float(value)]
                elif rule == "min":
                    mine[1] = min(mine[1], float(value))
                elif rule == "max":
                    mine[1] = max(mine[1], float(value))
                else:
                    mine[1] += float(value)
    return [
        {
            **family,
            "samples": [[n, labels, v] for (n, _), (labels, v) in values[name].items()],
        }
        for name, family in families.items()
    ]


class _Families(Collector):
    """A collector that yields families already collected (and merged)."""

    def __init__(self, families: list[dict[str, Any]]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        for family in self._families:
            metric = Metric(family["name"], family["documentation"], family["type"], family["unit"])
            for name, labels, value in family["samples"]:
                metric.add_sample(name, labels, value)
            yield metric


def render_families(families: list[dict[str, Any]]) -> bytes:
    """The Prometheus text exposition of ``families`` (what ``/metrics`` answers)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))
    return generate_latest(registry)
