"""Overload at about three times a model's capacity: fast refusals, a responsive server, and a
quick return to normal once the load drops."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import httpx
import onnx

from shipyard.testing import serve_process, wait_until_blocking, write_model
from tests.load.clients import Load, Probe
from tests.load.conftest import ONE_AT_A_TIME, ROW


def _capacity(url: str, count: int = 20) -> float:
    """Requests per second the model serves one at a time (from sequential requests)."""
    with httpx.Client(base_url=url, timeout=30) as client:
        latencies = []
        for _ in range(count):
            start = time.perf_counter()
            answer = client.post("/v2/models/slow/infer", json=ROW)
            latencies.append(time.perf_counter() - start)
            assert answer.status_code == 200, answer.text
    return 1 / statistics.median(latencies)


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def test_three_times_capacity(repository: Path, model_20ms: onnx.ModelProto) -> None:
    """At ~3x capacity excess requests get 503 + Retry-After at once, health and metrics stay
    fast, nothing is lost, and throughput is back to normal within 2 s after."""
    write_model(repository, "slow", model_20ms, config=ONE_AT_A_TIME.format(queue=4))
    with serve_process(repository) as server:
        capacity = _capacity(server.url)
        threads = 12
        load = Load(server.url, "/v2/models/slow/infer", ROW, threads, threads / (3 * capacity))
        probe = Probe(server.url).start()
        load.start()
        # About 3 s of load: 9 x capacity requests offered at 3 x capacity.
        wait_until_blocking(lambda: load.sent >= 9 * capacity, "the load is sent", 60)
        outcomes = load.stop()
        stopped = time.monotonic()
        probes = probe.stop()
        # Back to normal: a request is served at the model's own pace again, then ten more.
        with httpx.Client(base_url=server.url, timeout=30) as client:
            recovered: list[tuple[int, float]] = []
            normal_by = None
            while len(recovered) < 10:
                start = time.perf_counter()
                answer = client.post("/v2/models/slow/infer", json=ROW)
                took = time.perf_counter() - start
                if normal_by is None:
                    if answer.status_code == 200 and took < 2 / capacity:
                        normal_by = time.monotonic() - stopped
                    continue
                recovered.append((answer.status_code, took))
    assert len(outcomes) == load.sent, "every request sent has an outcome"
    statuses = [o.status for o in outcomes]
    assert set(statuses) <= {200, 503}, {s for s in statuses if s not in (200, 503)}
    refused = [o for o in outcomes if o.status == 503]
    served = [o for o in outcomes if o.status == 200]
    assert len(refused) >= len(outcomes) / 3, (len(refused), len(outcomes))
    assert len(served) >= 1.5 * capacity, (len(served), capacity)  # ~3 s at capacity
    assert all(o.retry_after == "1" for o in refused)
    assert all("queue full" in o.error for o in refused)
    refusal = [o.latency_s for o in refused]
    assert _percentile(refusal, 0.5) < 0.02, sorted(refusal)[-10:]  # refused within ms
    assert _percentile(refusal, 0.95) < 0.1, sorted(refusal)[-10:]
    for path in ("/v2/health/ready", "/metrics"):
        times = [seconds for p, status, seconds in probes if p == path]
        assert all(status == 200 for p, status, _ in probes if p == path)
        assert len(times) >= 20
        assert _percentile(times, 0.95) < 0.05, (path, sorted(times)[-10:])
    assert normal_by is not None
    assert normal_by < 2.0
    assert all(status == 200 for status, _ in recovered)
    assert statistics.median(s for _, s in recovered) < 2 / capacity
