"""A model that hangs, under load: each run past ``execution_timeout_s`` fails with 504, its
instance is replaced, the other instance and the other models keep serving, and the server
stays live and responsive."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from shipyard.testing import (
    identity_model,
    serve_process,
    spin_model,
    wait_until_blocking,
    write_model,
)
from tests.load.clients import Load, Probe

SPIN = """\
instance_count = 2
max_batch_size = 4
dynamic_batching = false
execution_timeout_s = 1
"""
FOREVER = 10**15


def _spin(iterations: int) -> dict[str, object]:
    return {
        "inputs": [
            {"name": "INPUT0", "datatype": "FP32", "shape": [1, 4], "data": [1.0] * 4},
            {"name": "ITERATIONS", "datatype": "INT64", "shape": [1, 1], "data": [iterations]},
        ]
    }


IDENTITY = {"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [1, 4], "data": [2.0] * 4}]}


def _metric(url: str, series: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(series))


def test_hung_runs_under_load(repository: Path) -> None:
    """Three runs that hang, during steady load on both models: each is 504 naming
    execution_timeout_s after about 1 s, every other request succeeds, readiness holds, health
    stays fast, and /metrics counts three instance replacements."""
    write_model(repository, "spin", spin_model(), config=SPIN)
    write_model(repository, "other", identity_model())
    with serve_process(repository) as server:
        spin_load = Load(server.url, "/v2/models/spin/infer", _spin(0), threads=3).start()
        other_load = Load(server.url, "/v2/models/other/infer", IDENTITY, threads=2).start()
        probe = Probe(server.url, ("/v2/health/ready", "/v2/health/live")).start()
        wait_until_blocking(lambda: spin_load.sent >= 50, "the load runs", 60)
        hung = []
        with ThreadPoolExecutor(1) as pool:
            for _ in range(3):
                started = time.monotonic()
                answer = pool.submit(
                    httpx.post,
                    f"{server.url}/v2/models/spin/infer",
                    json=_spin(FOREVER),
                    timeout=60,
                ).result(timeout=60)
                hung.append((answer, time.monotonic() - started))
                wait_until_blocking(
                    lambda: _metric(server.url, 'shipyard_instances{model="spin"') == 2,
                    "the replacement instance is working",
                    60,
                )
        mark = spin_load.sent
        wait_until_blocking(lambda: spin_load.sent >= mark + 50, "the load runs on", 60)
        spin_outcomes, other_outcomes = spin_load.stop(), other_load.stop()
        probes = probe.stop()
        replaced = _metric(server.url, 'shipyard_instance_replacements_total{model="spin"')
        timed_out = _metric(
            server.url,
            'shipyard_requests_total{code="504",model="spin",outcome="deadline_exceeded"',
        )
        assert server.process.poll() is None
    for answer, seconds in hung:
        assert answer.status_code == 504, answer.text
        assert "execution_timeout_s" in answer.json()["error"]
        assert 0.9 < seconds < 10, seconds
    for outcomes in (spin_outcomes, other_outcomes):
        assert {o.status for o in outcomes} == {200}, {o.status for o in outcomes}
    assert replaced == 3
    assert timed_out == 3
    assert all(status == 200 for _, status, _ in probes), "readiness held throughout"
    times = sorted(seconds for _, _, seconds in probes)
    assert times[int(len(times) * 0.95)] < 0.05, times[-10:]
