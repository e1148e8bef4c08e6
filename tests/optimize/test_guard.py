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


def _rounds(*pairs: tuple[float, float]) -> list[Measurement]:
    """One measurement per (p50 ms, samples/s) pair: rounds of one model."""
    return [_measurement(p50, per_s) for p50, per_s in pairs]


def test_speed_guard_refuses_a_slower_candidate_for_latency() -> None:
    """5x slower at the same size is refused for latency, with the figures and the noise."""
    verdict = speed_guard(
        _rounds((0.1, 10000), (0.1, 10000)), _rounds((0.5, 2000), (0.5, 2000)), 1000, 1000
    )
    assert not verdict["passed"]
    assert verdict["objective"] == "latency"
    assert verdict["latency_speedup"] == pytest.approx(0.2)
    assert verdict["slower_latency"]
    assert verdict["verdict"] == (
        "slower at latency on this hardware: latency 5.00x slower, throughput 5.00x lower"
        " (noise margin ±0.0% latency, ±0.0% throughput over 2 rounds)"
    )


def test_speed_guard_smaller_but_slower_int8_depends_on_the_objective() -> None:
    """The AVX2 int8 case: 3.4x smaller, 1.26x slower. Refused for latency and throughput
    (the verdict points at --objective size), published for size with the loss stated."""
    before = _rounds((1.00, 1000), (1.02, 990), (0.99, 1010))
    after = _rounds((1.26, 800), (1.28, 790), (1.25, 805))
    for objective in ("latency", "throughput"):
        verdict = speed_guard(before, after, 340, 100, objective)
        assert not verdict["passed"], objective
        assert verdict["verdict"].startswith(f"slower at {objective} on this hardware")
        assert verdict["verdict"].endswith("; --objective size would publish it for its size")
        assert "although 3.40x smaller" in verdict["verdict"]
    size = speed_guard(before, after, 340, 100, "size")
    assert size["passed"]
    assert size["verdict"].startswith("better at size: 3.40x smaller; but latency 1.2")


def test_speed_guard_noise_margin_comes_from_the_rounds() -> None:
    """The same 8% gain counts when the rounds agree, and not when they disagree by 20%."""
    before = _rounds((1.0, 1000), (1.0, 1000), (1.0, 1000))
    steady = speed_guard(before, _rounds((0.925, 1000), (0.93, 1000), (0.92, 1000)), 100, 100)
    assert steady["passed"]
    assert steady["noise"]["latency"] == pytest.approx(0.0116, abs=0.001)
    assert steady["verdict"] == "better at latency: latency 1.08x faster"
    noisy = speed_guard(before, _rounds((0.925, 1000), (0.8, 1000), (1.0, 1000)), 100, 100)
    assert not noisy["passed"]
    assert noisy["noise"]["latency"] == pytest.approx(0.23, abs=0.01)
    assert noisy["verdict"].startswith("not measurably better at latency on this hardware")
    assert not noisy["slower"]  # nor measurably slower: the change is inside the noise


def test_speed_guard_min_gain_is_the_floor_of_a_gain() -> None:
    """A steady 3% gain is measurable but below min_gain (5%): not published; 0.02 lets it."""
    before = _rounds((1.0, 1000), (1.0, 1000))
    after = _rounds((0.97, 1000), (0.97, 1000))
    assert not speed_guard(before, after, 100, 100)["passed"]
    assert speed_guard(before, after, 100, 100, min_gain=0.02)["passed"]


def test_speed_guard_one_round_uses_min_gain_as_the_margin() -> None:
    """With one round the noise is unknown: min_gain stands in, and the verdict says so."""
    verdict = speed_guard(_rounds((1.0, 1000)), _rounds((1.03, 1000)), 100, 100)
    assert not verdict["passed"]
    assert not verdict["slower"]  # 3% slower is inside the 5% stand-in margin
    assert verdict["noise"] == {"latency": None, "throughput": None}
    assert "1 round, so the noise is unmeasured" in verdict["verdict"]


def test_speed_guard_throughput_objective() -> None:
    """For throughput only samples/s counts: 1.5x more passes even with a slower p50."""
    before = _rounds((1.0, 1000), (1.0, 1000))
    after = _rounds((1.2, 1500), (1.2, 1500))
    assert speed_guard(before, after, 100, 100, "throughput")["passed"]
    assert not speed_guard(before, after, 100, 100, "latency")["passed"]


def test_speed_guard_bad_arguments() -> None:
    """An unknown objective is a clear error; rounds must pair up."""
    one = _rounds((1.0, 1000))
    with pytest.raises(InvalidInputError, match="unknown objective 'cost'"):
        speed_guard(one, one, 1, 1, "cost")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="same number"):
        speed_guard(one, _rounds((1.0, 1000), (1.0, 1000)), 1, 1)
