"""Tests for shipyard.optimize.benchmark: bounded, real measurements of real sessions."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from shipyard.config import ModelConfig
from shipyard.optimize.benchmark import (
    BenchmarkSettings,
    benchmark_models,
    feed_for,
    measure_latency,
    measure_throughput,
)
from shipyard.testing import add_sub_model, cnn_model, write_model
from shipyard.types import DataType, TensorSpec


def test_latency_is_bounded_by_time_and_runs() -> None:
    """A 1 ms call timed for 0.1 s gives ~100 runs with p50 >= 1 ms; max_runs caps it."""
    timed = measure_latency(
        lambda: time.sleep(0.001), batch=1, seconds=0.1, warmup=2, max_runs=10**6
    )
    assert 20 <= timed.runs <= 100
    assert 1.0 <= timed.p50_ms <= timed.p90_ms <= timed.p99_ms <= timed.max_ms
    capped = measure_latency(lambda: None, batch=1, seconds=10.0, warmup=0, max_runs=50)
    assert capped.runs == 50


def test_throughput_counts_samples() -> None:
    """Throughput is batch x runs / elapsed seconds."""
    result = measure_throughput(
        lambda: time.sleep(0.002), batch=8, seconds=0.1, warmup=1, max_runs=10**6
    )
    assert result.samples_per_s == result.batch * result.runs / result.seconds
    assert 1000 < result.samples_per_s < 4000


def test_benchmark_models_under_the_model_config(tmp_path: Path) -> None:
    """Two model files are each timed at batch 1 and batch N, with sane figures."""
    path = write_model(tmp_path, "cnn", cnn_model())
    settings = BenchmarkSettings(
        warmup_runs=3, latency_seconds=0.1, throughput_seconds=0.1, throughput_batch=16, rounds=2
    )
    results = benchmark_models({"a": path, "b": path}, ModelConfig("cnn"), settings)
    assert set(results) == {"a", "b"}
    for measured in results.values():
        assert measured.latency.batch == 1
        assert measured.throughput.batch == 16
        assert 0 < measured.latency.p50_ms < 100
        assert measured.throughput.samples_per_s > 10
        assert set(measured.to_dict()) == {"latency", "throughput"}


def test_fixed_batch_dimension_wins(tmp_path: Path) -> None:
    """A model whose first dimension is fixed at 1 is timed at batch 1 for throughput too."""
    path = write_model(tmp_path, "simple", add_sub_model(shape=[1, 16]))
    settings = BenchmarkSettings(warmup_runs=1, latency_seconds=0.05, throughput_seconds=0.05)
    measured = benchmark_models({"x": path}, ModelConfig("simple"), settings)["x"]
    assert measured.throughput.batch == 1


def test_feed_for_cycles_real_samples() -> None:
    """Feeds come from the data given, cycled to the batch size, else random of the shape."""
    spec = TensorSpec("x", DataType.FP32, (-1, 3))
    data = {"x": np.arange(6, dtype=np.float32).reshape(2, 3)}
    feed = feed_for([spec], 5, data)
    assert feed["x"].shape == (5, 3)
    np.testing.assert_array_equal(feed["x"][2], data["x"][0])
    assert feed_for([spec], 4)["x"].shape == (4, 3)
