"""``shipyard serve --workers 2`` answers as one server: summed statistics and /metrics over
HTTP and gRPC, repository control applied by every worker, readiness of all, one core share
each, and every log line naming its worker."""

from __future__ import annotations

import http.client
import re
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from shipyard.backends.threads import usable_cores
from shipyard.testing import add_sub_model, slow_model, write_model
from tests.workers.serving import ServeWorkers, serve_workers

HTTP_REQUESTS = 24
GRPC_REQUESTS = 12
BODY = {
    "inputs": [
        {"name": "INPUT0", "shape": [1, 16], "datatype": "FP32", "data": list(range(16))},
        {"name": "INPUT1", "shape": [1, 16], "datatype": "FP32", "data": [1] * 16},
    ]
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeWorkers]:
    """Two workers serving ``simple`` and a compute-bound ``heavy`` model (threads "auto"),
    with a temporary folder too deep for a Unix socket's path (the control sockets go to
    /tmp instead)."""
    root = tmp_path_factory.mktemp("workers")
    repository = root / "repo"
    write_model(repository, "simple", add_sub_model())
    write_model(repository, "heavy", slow_model(16))
    deep = root / ("d" * 100)
    deep.mkdir()
    with serve_workers(repository, 2, env={"TMPDIR": str(deep)}) as running:
        yield running


def _grpc_infer(address: str) -> None:
    """One ModelInfer on a new gRPC channel (a new connection)."""
    client = grpcclient.InferenceServerClient(address)
    try:
        inputs = [grpcclient.InferInput(n, [1, 16], "FP32") for n in ("INPUT0", "INPUT1")]
        for tensor in inputs:
            tensor.set_data_from_numpy(np.ones((1, 16), np.float32))
        assert client.infer("simple", inputs).as_numpy("OUTPUT0") is not None
    finally:
        client.close()


def _get(connection: http.client.HTTPConnection, path: str, body: str | None = None) -> Any:
    connection.request("GET" if body is None else "POST", path, body)
    answer = connection.getresponse()
    return answer.status, answer.read()


def _metric(text: str, name: str, labels: str) -> float:
    series = f"{name}{{{labels}}}" if labels else name
    match = re.search(rf"^{re.escape(series)} (\S+)$", text, re.M)
    assert match, f"{series} not in /metrics"
    return float(match.group(1))


def test_statistics_and_metrics_are_the_sum_over_workers(server: ServeWorkers) -> None:
    """Known numbers of requests over HTTP and gRPC, each on a new connection (so both
    workers serve some): every worker answers the statistics and /metrics with the totals."""
    for _ in range(HTTP_REQUESTS):
        answer = httpx.post(f"{server.url}/v2/models/simple/infer", json=BODY, timeout=30)
        assert answer.status_code == 200, answer.text
    for _ in range(GRPC_REQUESTS):
        _grpc_infer(server.grpc_address)
    total = HTTP_REQUESTS + GRPC_REQUESTS
    for pid in server.worker_pids():  # ask each worker in turn
        connection = server.connection_on(pid)
        status, body = _get(connection, "/v2/models/simple/stats")
        assert status == 200
        stats = httpx.Response(200, content=body).json()["model_stats"][0]
        assert stats["inference_stats"]["success"]["count"] == total
        assert stats["inference_count"] == total
        assert stats["execution_count"] == sum(
            b["compute_infer"]["count"] for b in stats["batch_stats"]
        )
        status, body = _get(connection, "/metrics")
        text = body.decode()
        labels = 'model="simple",version="1"'
        assert _metric(text, "shipyard_inference_request_success_total", labels) == total
        assert _metric(text, "shipyard_inference_count_total", labels) == total
        # The latency histogram too: every bucket summed, so +Inf and the count are the total.
        assert _metric(text, "shipyard_request_duration_seconds_count", labels) == total
        inf = f'le="+Inf",{labels}'  # the exposition sorts the labels
        assert _metric(text, "shipyard_request_duration_seconds_bucket", inf) == total
        assert _metric(text, "shipyard_workers", "") == 2
        status, body = _get(connection, "/v2/models/stats")  # what the dashboard reads
        every = httpx.Response(200, content=body).json()["model_stats"]
        simple = next(s for s in every if s["name"] == "simple")
        assert simple["inference_stats"]["success"]["count"] == total
        connection.close()
    for _ in range(4):  # gRPC ModelStatistics, on new connections
        client = grpcclient.InferenceServerClient(server.grpc_address)
        try:
            answer = client.get_inference_statistics("simple", as_json=True)
        finally:
            client.close()
        stats = answer["model_stats"][0]
        assert int(stats["inference_stats"]["success"]["count"]) == total
        assert int(stats["inference_count"]) == total


def test_repository_control_reaches_every_worker(server: ServeWorkers) -> None:
    """An unload sent to one worker (HTTP) and a load sent to another (gRPC) are done by both
    before the call returns; a load of an unknown model is one 404."""
    one, two = server.worker_pids()
    first, second = server.connection_on(one), server.connection_on(two)
    try:
        assert _get(first, "/v2/repository/models/simple/unload", "")[0] == 200
        for connection in (first, second):
            assert _get(connection, "/v2/models/simple/ready")[0] == 503
            assert _get(connection, "/v2/health/ready")[0] == 200  # unloaded is not "not ready"
        client = grpcclient.InferenceServerClient(server.grpc_address)
        try:
            client.load_model("simple")
        finally:
            client.close()
        for connection in (first, second):
            assert _get(connection, "/v2/models/simple/ready")[0] == 200
        status, body = _get(second, "/v2/repository/models/nope/load", "")
        assert status == 404
        assert body.decode().count("nope") == 1, body  # one error, not one per worker
    finally:
        first.close()
        second.close()


def test_each_worker_gets_its_share_of_the_cores_and_logs_its_id(server: ServeWorkers) -> None:
    """A compute-bound "auto" model takes cores // 2 threads in each worker, and every line a
    worker logs names it."""
    share = max(1, usable_cores() // 2)
    _, stderr = server.output()
    chosen = [line for line in stderr.splitlines() if "model heavy version 1: intra_op" in line]
    assert len(chosen) == 2, stderr
    for worker, line in zip((0, 1), sorted(chosen, key=lambda x: "worker 1" in x), strict=True):
        assert f" worker {worker} " in line
        if share == 1:
            assert "1 thread: 1 core(s) for 1 instance(s)" in line
        else:
            assert f"{share} threads:" in line
            assert f"{share} cores / 1 instance(s)" in line
    started = [line for line in stderr.splitlines() if "Started server process" in line]
    assert sorted(re.findall(r" worker (\d) ", "\n".join(started))) == ["0", "1"]


def test_the_dashboard_shows_the_workers_setting(server: ServeWorkers) -> None:
    """The Server page's settings say how many workers serve."""
    settings = httpx.get(f"{server.url}/ui/api/server", timeout=30).json()["settings"]
    assert settings["workers"] == 2
