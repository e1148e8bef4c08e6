"""Reading /metrics back for ``shipyard top``: rates and histogram_quantile between scrapes."""

from __future__ import annotations

import pytest

from shipyard.metrics.scrape import activity, parse, quantile


def _text(requests: int, errors: int, le: dict[str, int], batch: tuple[int, int]) -> str:
    lines = [
        "# TYPE shipyard_requests_total counter",
        f'shipyard_requests_total{{model="m",version="1",transport="http",code="200",'
        f'outcome="success"}} {requests}',
        f'shipyard_requests_total{{model="m",version="1",transport="http",code="503",'
        f'outcome="overloaded"}} {errors}',
        'shipyard_requests_total{model="",version="",transport="http",code="404",'
        'outcome="not_found"} 99',
        "# TYPE shipyard_request_duration_seconds histogram",
    ]
    lines += [
        f'shipyard_request_duration_seconds_bucket{{model="m",version="1",le="{b}"}} {n}'
        for b, n in le.items()
    ]
    lines += [
        f'shipyard_request_duration_seconds_count{{model="m",version="1"}} {le["+Inf"]}',
        'shipyard_request_duration_seconds_sum{model="m",version="1"} 1.0',
        "# TYPE shipyard_batch_size histogram",
        f'shipyard_batch_size_count{{model="m",version="1"}} {batch[0]}',
        f'shipyard_batch_size_sum{{model="m",version="1"}} {batch[1]}',
        "# TYPE shipyard_queue_depth gauge",
        'shipyard_queue_depth{model="m",version="1"} 5',
    ]
    return "\n".join(lines) + "\n"


def test_quantile_interpolates_within_the_bucket_like_prometheus() -> None:
    """histogram_quantile: linear within the bucket holding the rank; +Inf gives the top bound."""
    buckets = [(0.001, 10.0), (0.002, 30.0), (0.004, 40.0), (float("inf"), 40.0)]
    assert quantile(0.5, buckets) == pytest.approx(0.0015)  # rank 20: halfway into (1, 2] ms
    assert quantile(0.25, buckets) == pytest.approx(0.001)
    assert quantile(0.99, buckets) == pytest.approx(0.002 + 0.002 * (39.6 - 30) / 10)
    assert quantile(0.99, [(0.001, 1.0), (float("inf"), 10.0)]) == 0.001
    assert quantile(0.5, [(0.001, 0.0), (float("inf"), 0.0)]) is None


def test_activity_between_two_scrapes() -> None:
    """Rates, percentiles and the mean batch are of the interval; gauges are of the moment."""
    before = parse(_text(100, 10, {"0.001": 50, "0.01": 100, "+Inf": 110}, (20, 40)), at=0.0)
    after = parse(_text(300, 30, {"0.001": 50, "0.01": 280, "+Inf": 330}, (60, 200)), at=2.0)
    assert after.has_histograms
    (row,) = activity(before, after)
    assert row.model == "m"
    assert row.requests_per_s == pytest.approx((330 - 110) / 2)
    assert row.errors_per_s == pytest.approx(10.0)
    # 220 new requests: none <= 1 ms, 180 <= 10 ms: the median is in (1, 10] ms.
    assert row.p50_s == pytest.approx(0.001 + 0.009 * 110 / 180)
    assert row.p99_s == pytest.approx(0.01)  # the +Inf bucket holds rank 217.8
    assert row.batch_mean == pytest.approx(160 / 40)
    assert row.queue == 5


def test_a_counter_reset_counts_from_zero() -> None:
    """A restarted server's smaller counters are taken as increases from 0."""
    before = parse(_text(1000, 0, {"0.001": 900, "+Inf": 1000}, (10, 10)), at=0.0)
    after = parse(_text(20, 0, {"0.001": 20, "+Inf": 20}, (2, 2)), at=1.0)
    (row,) = activity(before, after)
    assert row.requests_per_s == 20


def test_a_server_without_histograms_is_recognised() -> None:
    """Old servers (Triton-style counters only) have no latency histograms."""
    old = parse('shipyard_inference_request_success_total{model="m",version="1"} 3\n', at=0.0)
    assert not old.has_histograms
