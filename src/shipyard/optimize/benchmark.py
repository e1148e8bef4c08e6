"""In-process speed of a model: latency at batch 1 and throughput at batch N, time-bounded.

The model runs exactly as the server runs it: through the backend that serves it
(:func:`~shipyard.backends.base.load_model_file`: ONNX Runtime with the ``ModelConfig``'s
session options, or OpenVINO for IR and ``backend = "openvino"``). Each
phase warms up first, then runs until its time budget or run cap is spent, so a measurement
takes a known time whatever the model's speed.

:func:`measure_latency` and :func:`measure_throughput` take any zero-argument callable, so the
tuner can time other call paths with the same code. :func:`benchmark_rounds` times several
model files under one config in interleaved rounds (A B A B ...) and keeps every round, so a
comparison can pair the rounds (which cancels most of the drift of a shared, noisy machine) and
read its noise from their spread; :func:`benchmark_models` keeps each model's best round.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from shipyard.backends.base import Backend, load_model_file
from shipyard.config import ModelConfig
from shipyard.optimize.data import Arrays, random_dataset
from shipyard.sampling import example_shape
from shipyard.types import JSONObject, TensorSpec

__all__ = [
    "BenchmarkSettings",
    "LatencyStats",
    "Measurement",
    "ThroughputStats",
    "benchmark_models",
    "benchmark_rounds",
    "feed_for",
    "measure_latency",
    "measure_throughput",
]


@dataclass(frozen=True, slots=True)
class BenchmarkSettings:
    """How long and how hard to measure; the defaults take ~4 s per model."""

    warmup_runs: int = 20
    latency_seconds: float = 1.0
    throughput_seconds: float = 1.0
    throughput_batch: int = 32
    #: Interleaved rounds when comparing models: their spread is the comparison's noise.
    rounds: int = 3
    #: Upper bound on timed runs per phase, whatever the time budget.
    max_runs: int = 100_000


@dataclass(frozen=True, slots=True)
class LatencyStats:
    """Per-call latency in milliseconds over ``runs`` sequential calls."""

    batch: int
    runs: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float


@dataclass(frozen=True, slots=True)
class ThroughputStats:
    """Samples per second over ``runs`` back-to-back calls of ``batch`` samples each."""

    batch: int
    runs: int
    seconds: float
    samples_per_s: float


@dataclass(frozen=True, slots=True)
class Measurement:
    """One model's latency and throughput under one config."""

    latency: LatencyStats
    throughput: ThroughputStats

    def to_dict(self) -> JSONObject:
        """JSON form (report.json)."""
        return {"latency": asdict(self.latency), "throughput": asdict(self.throughput)}


def measure_latency(
    call: Callable[[], object], *, batch: int, seconds: float, warmup: int, max_runs: int
) -> LatencyStats:
    """Call ``call`` ``warmup`` times, then time single calls until ``seconds`` or ``max_runs``."""
    for _ in range(warmup):
        call()
    clock = time.perf_counter_ns
    samples: list[int] = []
    deadline = clock() + int(seconds * 1e9)
    while True:
        start = clock()
        call()
        end = clock()
        samples.append(end - start)
        if end >= deadline or len(samples) >= max_runs:
            break
    ms = np.asarray(samples, dtype=np.float64) / 1e6
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return LatencyStats(
        batch, len(samples), float(p50), float(p90), float(p99), float(ms.mean()), float(ms.max())
    )


def measure_throughput(
    call: Callable[[], object], *, batch: int, seconds: float, warmup: int, max_runs: int
) -> ThroughputStats:
    """Call ``call`` back to back for ``seconds``; ``batch`` samples per call."""
    for _ in range(warmup):
        call()
    clock = time.perf_counter
    start = clock()
    deadline = start + seconds
    runs = 0
    while True:
        call()
        runs += 1
        if runs >= max_runs or clock() >= deadline:
            break
    elapsed = clock() - start
    return ThroughputStats(batch, runs, elapsed, batch * runs / elapsed)


def feed_for(specs: Sequence[TensorSpec], batch: int, data: Arrays | None = None) -> Arrays:
    """Inputs of ``batch`` samples (a fixed first dimension wins): from ``data``, cycled, else
    random numbers."""
    feed: Arrays = {}
    source = data if data is not None else random_dataset(specs, batch).arrays
    for spec in specs:
        shape = example_shape(spec, batch)
        count = shape[0] if shape else 1
        array = source[spec.name]
        rows = np.resize(np.arange(array.shape[0]), count)
        feed[spec.name] = np.ascontiguousarray(array[rows]) if shape else array
    return feed


def _best(a: Measurement | None, b: Measurement) -> Measurement:
    if a is None:
        return b
    latency = a.latency if a.latency.p50_ms <= b.latency.p50_ms else b.latency
    throughput = (
        a.throughput if a.throughput.samples_per_s >= b.throughput.samples_per_s else b.throughput
    )
    return Measurement(latency, throughput)


def benchmark_rounds(
    models: Mapping[str, Path],
    config: ModelConfig,
    settings: BenchmarkSettings | None = None,
    data: Arrays | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, list[Measurement]]:
    """Time each model file under ``config``'s session options, round by round, interleaved.

    Returns every round's measurement per key of ``models`` (round ``i`` of each model ran
    back to back). ``data`` (one array per input, samples on the first axis) supplies realistic
    inputs; the default is random numbers of the right shape.
    """
    settings = settings or BenchmarkSettings()
    step = progress or (lambda _text: None)
    rounds = max(settings.rounds, 1)
    backends = {key: load_model_file(path, config) for key, path in models.items()}
    timed: dict[str, list[Measurement]] = {key: [] for key in models}
    try:
        for round_ in range(rounds):
            for key, backend in backends.items():
                step(f"benchmarking {key} (round {round_ + 1}/{rounds})")
                timed[key].append(_measure(backend, settings, data))
    finally:
        for backend in backends.values():
            backend.close()
    return timed


def benchmark_models(
    models: Mapping[str, Path],
    config: ModelConfig,
    settings: BenchmarkSettings | None = None,
    data: Arrays | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Measurement]:
    """Like :func:`benchmark_rounds`, keeping each model's best latency and throughput."""
    timed = benchmark_rounds(models, config, settings, data, progress)
    best: dict[str, Measurement] = {}
    for key, rounds in timed.items():
        merged: Measurement | None = None
        for measurement in rounds:
            merged = _best(merged, measurement)
        if merged is not None:
            best[key] = merged
    return best


def _measure(backend: Backend, settings: BenchmarkSettings, data: Arrays | None) -> Measurement:
    outputs = [spec.name for spec in backend.outputs]
    one = feed_for(backend.inputs, 1, data)
    many = feed_for(backend.inputs, settings.throughput_batch, data)
    one_size = _batch(one, 1)
    many_size = _batch(many, settings.throughput_batch)
    latency = measure_latency(
        lambda: backend.run(one, outputs),
        batch=one_size,
        seconds=settings.latency_seconds,
        warmup=settings.warmup_runs,
        max_runs=settings.max_runs,
    )
    throughput = measure_throughput(
        lambda: backend.run(many, outputs),
        batch=many_size,
        seconds=settings.throughput_seconds,
        warmup=max(settings.warmup_runs // 4, 1),
        max_runs=settings.max_runs,
    )
    return Measurement(latency, throughput)


def _batch(feed: Arrays, default: int) -> int:
    first = next(iter(feed.values()), None)
    return int(first.shape[0]) if first is not None and first.ndim else default
