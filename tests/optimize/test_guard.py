"""Tests for shipyard.optimize.guard: the accuracy figures and the speed verdict."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from shipyard.errors import InvalidInputError
from shipyard.optimize.benchmark import LatencyStats, Measurement, ThroughputStats
from shipyard.optimize.data import Arrays, Dataset
from shipyard.optimize.guard import accuracy_guard, default_metric, speed_guard
from shipyard.types import DataType, TensorSpec

INPUTS = (TensorSpec("x", DataType.FP32, (-1, 4)),)
OUTPUTS = (TensorSpec("scores", DataType.FP32, (-1, 4)),)
SAMPLES = np.random.default_rng(0).normal(size=(100, 4)).astype(np.float32)


def _identity(feed: Arrays) -> list[npt.NDArray[Any]]:
    return [feed["x"]]


def _measurement(p50_ms: float, per_s: float) -> Measurement:
    return Measurement(
        LatencyStats(1, 100, p50_ms, p50_ms, p50_ms, p50_ms, p50_ms),
        ThroughputStats(32, 100, 1.0, per_s),
    )


def test_identical_models_pass_every_metric() -> None:
    """A candidate equal to the baseline drops nothing on any metric."""
    labels = SAMPLES.argmax(axis=1)
    data = Dataset({"x": SAMPLES}, labels, "test")
    for metric in ("accuracy", "top1-agreement", "cosine", "max-abs"):
        figures = accuracy_guard(_identity, _identity, data, INPUTS, OUTPUTS, metric, 0.0)
        assert figures["passed"], metric
        assert figures["drop"] == pytest.approx(0.0, abs=1e-12)
    assert figures["samples"] == 100


def test_swapped_classes_are_measured_and_rejected() -> None:
    """A candidate that swaps two classes loses exactly the rows whose top-1 was one of them."""

    def swapped(feed: Arrays) -> list[npt.NDArray[Any]]:
        return [feed["x"][:, [1, 0, 2, 3]]]

    labels = SAMPLES.argmax(axis=1)
    affected = float(np.isin(labels, [0, 1]).mean())
    data = Dataset({"x": SAMPLES}, labels, "test")
    figures = accuracy_guard(_identity, swapped, data, INPUTS, OUTPUTS, "accuracy", 0.01)
    assert figures["baseline_accuracy"] == 1.0
    assert figures["candidate_accuracy"] == pytest.approx(1.0 - affected)
    assert figures["drop"] == pytest.approx(affected)
    assert not figures["passed"]
    assert figures["top1_agreement"] == pytest.approx(1.0 - affected)


def test_max_abs_and_cosine_figures() -> None:
    """Adding 0.25 everywhere is a max-abs error of 0.25 and a cosine a little under 1."""

    def shifted(feed: Arrays) -> list[npt.NDArray[Any]]:
        return [feed["x"] + np.float32(0.25)]

    data = Dataset({"x": SAMPLES}, None, "test")
    figures = accuracy_guard(_identity, shifted, data, INPUTS, OUTPUTS, "max-abs", 0.3)
    assert figures["max_abs_error"] == pytest.approx(0.25, abs=1e-6)
    assert figures["passed"]
    assert 0.9 < figures["cosine"] < 1.0
    cosine = accuracy_guard(_identity, shifted, data, INPUTS, OUTPUTS, "cosine", 0.0)
    assert cosine["drop"] == pytest.approx(1.0 - cosine["cosine"])
    assert not cosine["passed"]


def test_accuracy_needs_labels_and_a_classifier_output() -> None:
    """--metric accuracy without labels, or top-1 on a non-classifier output, is refused."""
    data = Dataset({"x": SAMPLES}, None, "test")
    with pytest.raises(InvalidInputError, match="needs a 'labels' array"):
        accuracy_guard(_identity, _identity, data, INPUTS, OUTPUTS, "accuracy")
    flat = Dataset({"x": SAMPLES[:, :1]}, None, "test")
    one = (TensorSpec("x", DataType.FP32, (-1, 1)),)
    with pytest.raises(InvalidInputError, match="use --metric cosine or max-abs"):
        accuracy_guard(_identity, _identity, flat, one, one, "top1-agreement")


def test_default_metric() -> None:
    """Labels → accuracy; a [batch, classes] output → top1-agreement; else cosine."""
    assert default_metric(Dataset({"x": SAMPLES}, SAMPLES.argmax(1), "t"), OUTPUTS) == "accuracy"
    assert default_metric(Dataset({"x": SAMPLES}, None, "t"), OUTPUTS) == "top1-agreement"
    image = (TensorSpec("y", DataType.FP32, (-1, 3, 8, 8)),)
    assert default_metric(Dataset({"x": SAMPLES}, None, "t"), image) == "cosine"


def test_speed_guard_rejects_slower_and_not_smaller() -> None:
    """5x slower at the same size is refused, as is 'neither faster nor smaller' (a 4% gain
    is noise)."""
    verdict = speed_guard(_measurement(0.1, 10000), _measurement(0.5, 2000), 1000, 1000)
    assert not verdict["passed"]
    assert verdict["latency_speedup"] == pytest.approx(0.2)
    assert verdict["verdict"].startswith("slower on this hardware")
    same = speed_guard(_measurement(0.1, 10000), _measurement(0.1, 10000), 1000, 1000)
    assert not same["passed"]
    assert same["verdict"].startswith("neither faster nor smaller")
    noise = speed_guard(_measurement(0.1, 10000), _measurement(0.0962, 10400), 1000, 990)
    assert not noise["passed"]


def test_speed_guard_accepts_each_kind_of_gain() -> None:
    """Faster latency, higher throughput or a smaller file each pass on its own."""
    base = _measurement(1.0, 1000)
    assert speed_guard(base, _measurement(0.5, 1000), 100, 100)["faster_latency"]
    assert speed_guard(base, _measurement(1.0, 1500), 100, 100)["faster_throughput"]
    smaller = speed_guard(base, _measurement(1.0, 1000), 400, 100)
    assert smaller["passed"]
    assert smaller["verdict"] == "better: 4.00x smaller"
    mixed = speed_guard(base, _measurement(1.1, 1000), 400, 100)
    assert mixed["passed"]
    assert mixed["verdict"] == "better: 4.00x smaller; but latency 1.10x slower"


def test_speed_guard_rejects_smaller_but_clearly_slower() -> None:
    """Dynamic int8 on a small CNN: 4x smaller but 3x slower is not chosen by default."""
    slower = speed_guard(_measurement(1.0, 1000), _measurement(3.0, 250), 400, 100)
    assert not slower["passed"]
    assert slower["clearly_slower"]
    assert slower["verdict"] == (
        "slower on this hardware: latency 3.00x slower, throughput 4.00x lower"
        " (although 4.00x smaller)"
    )
