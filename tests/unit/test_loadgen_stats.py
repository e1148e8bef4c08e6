"""Tests for shipyard.loadgen.stats: nearest-rank percentiles, the window, errors by status."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shipyard.loadgen.stats import OK, Recorder, percentile

MS = 1_000_000


def test_percentiles_of_one_to_hundred_are_their_rank() -> None:
    """Of the values 1..100 the p50, p90, p99 and p100 are 50, 90, 99 and 100."""
    values = list(range(1, 101))
    assert [percentile(values, q) for q in (0.5, 0.9, 0.99, 1.0)] == [50, 90, 99, 100]


def test_percentile_of_few_values_rounds_up_to_a_real_value() -> None:
    """With few values a high quantile is the largest one, never an interpolation."""
    assert percentile([7], 0.5) == 7
    assert percentile([1, 2, 3], 0.5) == 2
    assert percentile([1, 2, 3], 0.99) == 3
    assert percentile([10, 20], 0.5) == 10


def test_percentile_of_nothing_is_none_and_bad_quantiles_are_refused() -> None:
    """No values give None; a quantile outside (0, 1] is a ValueError."""
    assert percentile([], 0.5) is None
    for q in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="quantile"):
            percentile([1, 2], q)


@given(st.lists(st.integers(0, 10**9), min_size=1, max_size=300), st.floats(0.01, 1.0))
def test_percentile_matches_numpy_inverted_cdf(values: list[int], q: float) -> None:
    """The nearest rank is NumPy's inverted_cdf percentile, for any data and quantile."""
    ordered = sorted(values)
    expected = np.percentile(np.array(ordered), q * 100, method="inverted_cdf")
    assert percentile(ordered, q) == int(expected)


def test_recorder_counts_only_the_window() -> None:
    """Responses before the window (warm-up) or after it are left out of every figure; the
    failures among them are counted apart (errors_outside)."""
    recorder = Recorder(start_ns=100 * MS, end_ns=1100 * MS)
    recorder.record(0, 50 * MS, OK)  # warm-up
    recorder.record(1100 * MS, 1200 * MS, OK)  # after the window
    recorder.record(1100 * MS, 1200 * MS, "503")  # after the window
    recorder.record(90 * MS, 110 * MS, OK)  # counted, but its latency spans the warm-up
    for i in range(4):
        recorder.record((200 + i) * MS, (201 + i) * MS + i * MS, OK)
    summary = recorder.summary(concurrency=2, client_cpu=0.25)
    assert summary.requests == 5
    assert summary.duration_s == pytest.approx(1.0)
    assert summary.rps == pytest.approx(5.0)
    assert summary.p50_ms == pytest.approx(2.0)
    assert summary.max_ms == pytest.approx(4.0)
    assert summary.mean_ms == pytest.approx(2.5)
    assert summary.errors == {}
    assert summary.errors_outside == 1
    assert summary.client_cpu == 0.25


def test_recorder_counts_errors_by_status_and_keeps_the_first() -> None:
    """Failures are counted per status, kept out of requests and latencies; the first is kept."""
    recorder = Recorder(start_ns=0, end_ns=10 * MS)
    recorder.record(0, 1 * MS, "503", "queue full")
    recorder.record(0, 2 * MS, "400", "bad shape")
    recorder.record(0, 3 * MS, "503", "queue full again")
    recorder.record(0, 4 * MS, "connection")
    summary = recorder.summary(concurrency=1, client_cpu=0.0)
    assert summary.errors == {"400": 1, "503": 2, "connection": 1}
    assert summary.error_count == 4
    assert summary.first_error == "503: queue full"
    assert summary.requests == 0
    assert summary.p50_ms is None
    assert summary.max_ms is None
    assert summary.to_dict()["error_count"] == 4


def test_summary_percentiles_are_ordered() -> None:
    """p50 <= p90 <= p99 <= max for a spread of latencies."""
    recorder = Recorder(start_ns=0, end_ns=10**12)
    rng = np.random.default_rng(0)
    for latency in rng.exponential(2 * MS, size=1000).astype(int):
        recorder.record(1, 1 + int(latency), OK)
    s = recorder.summary(concurrency=8, client_cpu=0.1, rate=100.0, missed=3)
    assert s.p50_ms is not None
    assert s.p90_ms is not None
    assert s.p99_ms is not None
    assert s.max_ms is not None
    assert s.p50_ms <= s.p90_ms <= s.p99_ms <= s.max_ms
    assert (s.rate, s.missed) == (100.0, 3)
