"""All of the server's metric state: one :class:`ServerMetrics` per server, no global registry.

Per model version a :class:`ModelMetrics` holds the latency histograms (end to end and per
stage), the in-flight count, and the answers by outcome and by transport status code. The
server-wide part holds the requests refused before a model was resolved, the refusals by
reason, the model loads and the garbage collector's pauses. Everything is plain integers,
updated on the event loop thread at the end of a request (:meth:`ServerMetrics.finish`), and
read by :mod:`shipyard.metrics.exposition` only when ``/metrics`` is scraped.

Several processes (``--workers``) aggregate by merging these objects: every counter and
histogram here is a sum (:meth:`ServerMetrics.merge`).
"""

from __future__ import annotations

import gc
import time
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from typing import Any

from shipyard.context import RequestContext
from shipyard.errors import ErrorCode, OverloadedError, ShipyardError
from shipyard.metrics.histogram import (
    DEFAULT_LATENCY_BUCKETS_S,
    GC_PAUSE_BUCKETS_S,
    LOAD_BUCKETS_S,
    Histogram,
    seconds_to_ns,
)

__all__ = ["STAGES", "LoadMetrics", "ModelMetrics", "ServerMetrics", "outcome"]

#: The stages of a request, in order: received and decoded, pre-processed, queued, computed,
#: post-processed, encoded. ``preprocess``/``postprocess`` only for models with processing.
STAGES = ("decode", "preprocess", "queue", "compute", "postprocess", "encode")


def outcome(error: BaseException | None) -> str:
    """The outcome label of an answer: ``success``, ``overloaded`` or the error code's name."""
    if error is None:
        return "success"
    if isinstance(error, OverloadedError):
        return "overloaded"
    if isinstance(error, ShipyardError):
        return error.code.name.lower()
    return ErrorCode.INTERNAL.name.lower()


class ModelMetrics:
    """The metrics of one model version (or of requests no model was resolved for)."""

    __slots__ = (
        "answers",
        "compute",
        "decode",
        "encode",
        "inflight",
        "name",
        "postprocess",
        "preprocess",
        "queue",
        "request",
        "version",
    )

    def __init__(self, name: str, version: str, bounds_ns: Sequence[int]) -> None:
        self.name = name
        self.version = version
        #: End to end: from the request's arrival to its answer, successful requests only.
        self.request = Histogram(bounds_ns)
        self.decode = Histogram(bounds_ns)
        self.preprocess = Histogram(bounds_ns)
        self.queue = Histogram(bounds_ns)
        self.compute = Histogram(bounds_ns)
        self.postprocess = Histogram(bounds_ns)
        self.encode = Histogram(bounds_ns)
        #: Requests the service is working on now.
        self.inflight = 0
        #: Answers by (transport, status code, outcome): ``("http", "503", "overloaded")``,
        #: ``("grpc", "0", "success")`` (:func:`outcome`).
        self.answers: dict[tuple[str, str, str], int] = {}

    def stages(self) -> Iterator[tuple[str, Histogram]]:
        """Each stage's histogram, by stage name (see :data:`STAGES`)."""
        for stage in STAGES:
            yield stage, getattr(self, stage)

    def record(self, ctx: RequestContext, code: str, now_ns: int) -> None:
        """Count one answer; for a successful one, observe its stage durations."""
        result = ctx.outcome
        key = (ctx.transport, code, result)
        answers = self.answers
        answers[key] = answers.get(key, 0) + 1
        if result != "success":
            return
        # Histogram.observe, inlined: this runs once per request on the event loop.
        bounds = self.request.bounds
        received = ctx.received_at
        value = now_ns - received
        histogram = self.request
        histogram.counts[bisect_left(bounds, value)] += 1
        histogram.total += value
        if ctx.decoded_at:
            value = ctx.decoded_at - received
            histogram = self.decode
            histogram.counts[bisect_left(bounds, value)] += 1
            histogram.total += value
        started = ctx.started_at
        if started:
            value = started - ctx.enqueued_at
            histogram = self.queue
            histogram.counts[bisect_left(bounds, value)] += 1
            histogram.total += value
            value = ctx.finished_at - started
            histogram = self.compute
            histogram.counts[bisect_left(bounds, value)] += 1
            histogram.total += value
        value = ctx.encode_ns
        if value:
            histogram = self.encode
            histogram.counts[bisect_left(bounds, value)] += 1
            histogram.total += value
        if ctx.preprocess_ns:
            self.preprocess.observe(ctx.preprocess_ns)
        if ctx.postprocess_ns:
            self.postprocess.observe(ctx.postprocess_ns)

    def merge(self, other: ModelMetrics) -> None:
        """Add ``other``'s counts (the same model version in another process)."""
        self.request.merge(other.request)
        for stage, histogram in self.stages():
            histogram.merge(getattr(other, stage))
        self.inflight += other.inflight
        for key, n in other.answers.items():
            self.answers[key] = self.answers.get(key, 0) + n


class LoadMetrics:
    """One model's loads: their durations and how many succeeded or failed."""

    __slots__ = ("duration", "failures", "last_s", "successes")

    def __init__(self) -> None:
        self.duration = Histogram(seconds_to_ns(LOAD_BUCKETS_S))
        self.successes = 0
        self.failures = 0
        #: How long the last load took, in seconds.
        self.last_s = 0.0


class ServerMetrics:
    """The metric state of one server: per model version, per model load, and server-wide."""

    def __init__(self, latency_buckets_s: Sequence[float] = DEFAULT_LATENCY_BUCKETS_S) -> None:
        self.latency_buckets_s = tuple(latency_buckets_s)
        self._bounds_ns = seconds_to_ns(self.latency_buckets_s)
        self._models: dict[tuple[str, str], ModelMetrics] = {}
        #: Inference requests answered before a model version was resolved (bad body, unknown
        #: model, refused by a server-wide limit): labelled model="" version="".
        self.unresolved = ModelMetrics("", "", self._bounds_ns)
        #: Requests refused by a server-wide limit before their body was read, by reason.
        self.rejected: dict[str, int] = {}
        self.loads: dict[str, LoadMetrics] = {}
        #: Garbage collector pauses per generation.
        self.gc_pauses = [Histogram(seconds_to_ns(GC_PAUSE_BUCKETS_S)) for _ in range(3)]
        self._gc_started = 0
        self._gc_installed = False

    # -- per request (event loop thread) ---------------------------------------------------

    def model(self, name: str, version: str) -> ModelMetrics:
        """The metrics of a model version, made on first use."""
        metrics = self._models.get((name, version))
        if metrics is None:
            metrics = self._models[(name, version)] = ModelMetrics(name, version, self._bounds_ns)
        return metrics

    def finish(self, ctx: RequestContext, code: str) -> None:
        """Count an inference request's answer (``code``: the transport's status)."""
        now_ns = time.perf_counter_ns()
        model = ctx.model
        if model is None:
            self.unresolved.record(ctx, code, now_ns)
            return
        metrics = self._models.get((model, ctx.version or ""))
        (metrics or self.unresolved).record(ctx, code, now_ns)

    def reject(self, reason: str) -> None:
        """Count a request refused by a server-wide limit (``reason``: which one)."""
        self.rejected[reason] = self.rejected.get(reason, 0) + 1

    def model_loaded(self, name: str, seconds: float, ok: bool) -> None:
        """Count a load (or reload) of model ``name`` that took ``seconds``."""
        load = self.loads.get(name)
        if load is None:
            load = self.loads[name] = LoadMetrics()
        load.duration.observe(round(seconds * 1e9))
        load.last_s = seconds
        if ok:
            load.successes += 1
        else:
            load.failures += 1

    def versions(self) -> list[ModelMetrics]:
        """Every model version's metrics, by name and version."""
        return [self._models[key] for key in sorted(self._models)]

    # -- garbage collector pauses ------------------------------------------------------------

    def start_gc_timing(self) -> None:
        """Time the garbage collector's pauses from now on (the server calls it at start)."""
        if not self._gc_installed:
            gc.callbacks.append(self._on_gc)
            self._gc_installed = True

    def stop_gc_timing(self) -> None:
        """Stop timing the garbage collector (at server stop)."""
        if self._gc_installed:
            gc.callbacks.remove(self._on_gc)
            self._gc_installed = False

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter_ns()
        elif self._gc_started:
            generation = min(int(info.get("generation", 2)), 2)
            self.gc_pauses[generation].observe(time.perf_counter_ns() - self._gc_started)
            self._gc_started = 0

    # -- aggregation ---------------------------------------------------------------------------

    def merge(self, other: ServerMetrics) -> None:
        """Add ``other``'s state to this one (another worker process of the same server)."""
        for (name, version), metrics in other._models.items():
            self.model(name, version).merge(metrics)
        self.unresolved.merge(other.unresolved)
        for reason, n in other.rejected.items():
            self.rejected[reason] = self.rejected.get(reason, 0) + n
        for name, load in other.loads.items():
            mine = self.loads.setdefault(name, LoadMetrics())
            mine.duration.merge(load.duration)
            mine.successes += load.successes
            mine.failures += load.failures
            mine.last_s = max(mine.last_s, load.last_s)
        for mine_gc, theirs in zip(self.gc_pauses, other.gc_pauses, strict=True):
            mine_gc.merge(theirs)
