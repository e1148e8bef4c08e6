"""The Live page, in a real browser: under load from the built-in load generator its rate is
non-zero and changes; p50/p99 and the batch-size distribution come from the histograms named
in ``METRICS`` (js/metrics.js) as soon as ``/metrics`` has them."""

from __future__ import annotations

import re
import threading
import time
from typing import Any

import httpx
import pytest

from shipyard.loadgen import BenchPlan, run_bench
from shipyard.testing import RunningServer
from tests.dashboard.conftest import Watched

#: The histograms the Live page reads (also in docs/dashboard.md); issue 13 exposes them.
REQUEST_HISTOGRAM = "shipyard_request_duration_seconds"
BATCH_HISTOGRAM = "shipyard_batch_size"


def _rate(page: Any) -> float:
    cell = page.locator(".live-table tr[data-model='simple'] td[data-field='rate']")
    return float(cell.get_attribute("data-value") or "0")


def test_live_rate_under_load_is_non_zero_and_changes(page: Watched, served: RunningServer) -> None:
    """While ``shipyard.loadgen`` sends ``simple`` 40 then 160 requests/s (open loop), the
    page shows a non-zero request rate that changes, drawn as a line, and batch sizes."""
    page.open(served.url, "live")
    page.page.locator("#live-window").select_option("60")
    plan = BenchPlan(
        url=served.url,
        model="simple",
        rates=(40.0, 160.0),
        concurrency=(8,),
        duration_s=4.0,
        warmup_s=0.5,
    )
    errors: list[BaseException] = []

    def load() -> None:
        try:
            run_bench(plan)
        except BaseException as exc:  # reported by the test below
            errors.append(exc)

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    seen: set[float] = set()
    deadline = time.monotonic() + 30
    while thread.is_alive() and time.monotonic() < deadline:
        page.page.wait_for_timeout(250)
        rate = _rate(page.page)
        if rate > 0:
            seen.add(round(rate, 1))
        if len(seen) >= 3:
            break
    assert len(seen) >= 3, f"rates shown under load: {sorted(seen)}"
    card = page.page.locator("section.live[data-model='simple']")
    assert card.locator("polyline").count() >= 1
    assert card.locator("rect.bar").count() >= 1  # executions per batch size
    thread.join(timeout=30)
    assert not errors, errors
    page.page.wait_for_timeout(1500)  # one more refresh, for the screenshot of both rates
    page.screenshot("live-under-load")
    page.assert_clean()


def _histogram(name: str, model: str, bounds: list[float], counts: list[int]) -> str:
    """Prometheus text of a histogram series with cumulative ``counts`` per upper bound."""
    lines = [f"# TYPE {name} histogram"]
    for bound, count in zip([*bounds, float("inf")], counts, strict=True):
        le = "+Inf" if bound == float("inf") else repr(bound)
        lines.append(f'{name}_bucket{{model="{model}",version="1",le="{le}"}} {count}')
    lines.append(f'{name}_count{{model="{model}",version="1"}} {counts[-1]}')
    return "\n".join(lines) + "\n"


def test_histograms_light_up_p50_p99_and_batch_sizes(page: Watched, served: RunningServer) -> None:
    """When /metrics has the latency and batch-size histograms, the page shows p50/p99
    interpolated inside the buckets as Prometheus' histogram_quantile does, and the
    distribution from the batch histogram.

    The server's own histograms depend on timing, so this test replaces them in the server's
    real /metrics answer in the browser (Playwright's route) by two series of known counts:
    10 requests in (0, 1 ms], 50 in (1, 5 ms], 30 in (5, 10 ms], 10 above, between two scrapes.
    """
    scrapes = {"count": 0}

    def with_histograms(route: Any) -> None:
        real = route.fetch()
        grown = 1 if scrapes["count"] == 0 else 2  # the second scrape onwards: 100 more
        scrapes["count"] += 1
        latency = _histogram(
            REQUEST_HISTOGRAM,
            "simple",
            [0.001, 0.005, 0.01],
            [10 * grown, 60 * grown, 90 * grown, 100 * grown],
        )
        batches = _histogram(
            BATCH_HISTOGRAM,
            "simple",
            [1, 2, 4, 8],
            [5 * grown, 8 * grown, 9 * grown, 10 * grown, 10 * grown],
        )
        own = (REQUEST_HISTOGRAM, BATCH_HISTOGRAM)
        kept = [
            line
            for line in real.text().splitlines()
            if not any(name in line for name in own)  # the server's own series and headers
        ]
        route.fulfill(response=real, body="\n".join(kept) + "\n" + latency + batches)

    page.page.route("**/metrics", with_histograms)
    page.open(served.url, "live")
    row = page.page.locator(".live-table tr[data-model='simple']")
    page.page.wait_for_function(
        "document.querySelector(\".live-table tr[data-model='simple'] td[data-field='p50']\")"
        "?.dataset.value !== ''",
        timeout=15_000,
    )
    p50 = float(row.locator("td[data-field='p50']").get_attribute("data-value") or "nan")
    p99 = float(row.locator("td[data-field='p99']").get_attribute("data-value") or "nan")
    # Rank 50 of 100 lies in (1, 5] ms, 40 into its 50: 1 + 4 * 40/50 = 4.2 ms. Rank 99 lies in
    # the +Inf bucket, which reports its lower bound, 10 ms.
    assert p50 == pytest.approx(4.2, abs=1e-6)
    assert p99 == pytest.approx(10.0, abs=1e-6)
    assert "histogram in /metrics" in page.page.locator("p.note").inner_text()
    card = page.page.locator("section.live[data-model='simple']")
    assert card.locator("rect.bar").count() == 5  # one bar per bucket of shipyard_batch_size
    assert BATCH_HISTOGRAM in card.inner_text()
    page.screenshot("live-histograms")
    page.assert_clean()


def test_prometheus_parsing_and_quantiles_in_the_browser(
    page: Watched, served: RunningServer
) -> None:
    """The page's own parser reads labels with escapes and ``_total`` counters, and its
    quantile matches hand-computed values at bucket edges and inside buckets."""
    page.open(served.url, "server")
    result = page.page.evaluate(
        """async () => {
          const m = await import("/ui/js/metrics.js");
          const text = [
            '# HELP x y', 'shipyard_inference_queue_size{model="a\\\\"b",version="1"} 3',
            'shipyard_inference_queue_size{model="a\\\\"b",version="2"} 4',
            'c_total{model="z"} 7',
          ].join("\\n");
          const samples = m.parsePrometheus(text);
          const buckets = [[0.1, 4], [0.2, 8], [Infinity, 8]];
          return {
            queue: m.sumByModel(samples, "shipyard_inference_queue_size"),
            total: m.sumByModel(samples, "c"),
            q50: m.quantile(0.5, buckets),
            q100: m.quantile(1, buckets),
            q25: m.quantile(0.25, buckets),
            none: m.quantile(0.5, [[0.1, 0], [Infinity, 0]]),
          };
        }"""
    )
    assert result["queue"] == {'a"b': 7}
    assert result["total"] == {"z": 7}
    assert result["q50"] == pytest.approx(0.1)
    assert result["q25"] == pytest.approx(0.05)
    assert result["q100"] == pytest.approx(0.2)
    assert result["none"] is None
    page.assert_clean()


def test_the_metric_names_the_page_reads_are_the_documented_ones(served: RunningServer) -> None:
    """The names in js/metrics.js's METRICS are the counters, histograms and queue gauge that
    /metrics really has, per model version (the Live page reads nothing else)."""
    source = httpx.get(f"{served.url}/ui/js/metrics.js").text
    names = dict(re.findall(r'^  (\w+): "(shipyard_\w+)"', source, re.MULTILINE))
    assert names["requestDuration"] == REQUEST_HISTOGRAM
    assert names["batchSize"] == BATCH_HISTOGRAM
    assert names["stageDuration"] == "shipyard_stage_duration_seconds"
    metrics = httpx.get(f"{served.url}/metrics").text
    assert f'{names["queueSize"]}{{model="simple",version="1"}}' in metrics
    for counter in ("success", "failure", "inferences", "executions", "successTime"):
        assert f"# TYPE {names[counter]}_total counter" in metrics, counter
        assert f'{names[counter]}_total{{model="simple",version="1"}}' in metrics, counter
    for histogram in ("requestDuration", "batchSize", "stageDuration"):
        assert f"# TYPE {names[histogram]} histogram" in metrics, histogram
