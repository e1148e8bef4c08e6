"""The serving engine under load, against a real server: batching, queueing, deadlines,
reloads, unloads, broken models and metrics."""

from __future__ import annotations

import asyncio
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from shipyard.batching.batcher import DynamicBatcher
from shipyard.testing import (
    RunningServer,
    add_sub_model,
    identity_model,
    running_server,
    slow_model,
    wait_until,
    write_model,
)

#: slow_model iterations per millisecond of compute, measured on a 2-core CI runner
#: (~100 iterations took 34 ms); the tests only need the order of magnitude.
ITERATIONS_PER_MS = 3

BATCHING_OFF = "max_batch_size = 0\n"
QUEUE_OF_ONE = "[dynamic_batching]\nmax_queue_size = 1\n"


def slow(milliseconds: int) -> Any:
    """A slow model computing for about ``milliseconds`` per execution."""
    return slow_model(max(1, milliseconds * ITERATIONS_PER_MS))


def row(value: float) -> dict[str, Any]:
    """An inference request of one [1, 4] FP32 row for INPUT0, all ``value``."""
    return {
        "inputs": [{"name": "INPUT0", "shape": [1, 4], "datatype": "FP32", "data": [value] * 4}]
    }


def batcher(server: RunningServer, model: str) -> DynamicBatcher:
    """The batcher of the served version of ``model`` (to observe queue and executions)."""
    service = server.server.service
    assert service is not None
    return service.registry.get(model).batcher


def model_stats(client: httpx.Client, model: str) -> dict[str, Any]:
    """The statistics entry of the served version of ``model``."""
    response = client.get(f"/v2/models/{model}/stats")
    assert response.status_code == 200, response.text
    entry: dict[str, Any] = response.json()["model_stats"][0]
    return entry


def index_rows(client: httpx.Client) -> dict[str, list[dict[str, Any]]]:
    """The repository index, rows grouped by model name."""
    response = client.post("/v2/repository/index", json={})
    assert response.status_code == 200, response.text
    rows: dict[str, list[dict[str, Any]]] = {}
    for entry in response.json():
        rows.setdefault(entry["name"], []).append(entry)
    return rows


def publish_version(repo: Path, name: str, version: int, model: Any) -> None:
    """Write a version the way the repository expects: under a hidden name, then renamed."""
    staging = repo / name / f".staging-{version}"
    write_model(staging.parent, staging.name, model, version=1)
    (staging / "1").rename(repo / name / str(version))
    shutil.rmtree(staging)


# -- dynamic batching ----------------------------------------------------------------------


def test_concurrent_requests_are_batched(repository: Path) -> None:
    """64 concurrent requests run in fewer, merged executions; each gets its own row back."""
    write_model(repository, "slow", slow(5))
    requests = 64

    async def fire(url: str) -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=requests)
        async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
            return await asyncio.gather(
                *(client.post("/v2/models/slow/infer", json=row(i)) for i in range(requests))
            )

    with running_server(repository) as server:
        responses = asyncio.run(fire(server.url))
        for i, response in enumerate(responses):
            assert response.status_code == 200, response.text
            assert response.json()["outputs"][0]["data"] == [float(i)] * 4
        with httpx.Client(base_url=server.url) as client:
            stats = model_stats(client, "slow")
    assert stats["inference_count"] == requests
    assert stats["execution_count"] < requests
    sizes = [b["batch_size"] for b in stats["batch_stats"]]
    assert max(sizes) > 1
    executions = sum(b["compute_infer"]["count"] for b in stats["batch_stats"])
    assert executions == stats["execution_count"]


def test_lone_request_is_not_delayed(repository: Path) -> None:
    """A request arriving alone runs at once as a batch of one, with next to no queue time."""
    write_model(repository, "simple", add_sub_model())
    with running_server(repository) as server, httpx.Client(base_url=server.url) as client:
        data = [1.0] * 16
        inputs = [
            {"name": n, "shape": [1, 16], "datatype": "FP32", "data": data}
            for n in ("INPUT0", "INPUT1")
        ]
        response = client.post("/v2/models/simple/infer", json={"inputs": inputs})
        assert response.status_code == 200, response.text
        stats = model_stats(client, "simple")
    assert stats["execution_count"] == 1
    assert [b["batch_size"] for b in stats["batch_stats"]] == [1]
    queue = stats["inference_stats"]["queue"]
    assert queue["count"] == 1
    assert queue["ns"] < 20_000_000  # well under 20 ms: nothing waited for company


def test_max_batch_size_zero_turns_batching_off(repository: Path) -> None:
    """With max_batch_size = 0 concurrent requests each run alone and any dim 0 is accepted."""
    write_model(repository, "unbatched", slow(3), config=BATCHING_OFF)
    requests = 16

    async def fire(url: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            return await asyncio.gather(
                *(client.post("/v2/models/unbatched/infer", json=row(i)) for i in range(requests))
            )

    with running_server(repository) as server:
        responses = asyncio.run(fire(server.url))
        assert all(r.status_code == 200 for r in responses)
        with httpx.Client(base_url=server.url) as client:
            config = client.get("/v2/models/unbatched/config").json()
            rows = 40  # more than the default max_batch_size of 32
            big = {
                "inputs": [
                    {
                        "name": "INPUT0",
                        "shape": [rows, 4],
                        "datatype": "FP32",
                        "data": [0.5] * rows * 4,
                    }
                ]
            }
            response = client.post("/v2/models/unbatched/infer", json=big)
            assert response.status_code == 200, response.text
            assert response.json()["outputs"][0]["shape"] == [rows, 4]
            stats = model_stats(client, "unbatched")
    assert config["max_batch_size"] == 0
    assert stats["execution_count"] == requests + 1
    assert {b["batch_size"] for b in stats["batch_stats"]} == {1}


# -- the event loop stays free ---------------------------------------------------------------


def test_slow_inference_does_not_block_health(repository: Path) -> None:
    """While a ~1 s inference runs, GET /v2/health/live answers within 50 ms, every time."""
    write_model(repository, "slow", slow(1000))

    async def scenario(server: RunningServer) -> list[float]:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            await client.get("/v2/health/live")  # open the keep-alive connection first
            inference = asyncio.create_task(client.post("/v2/models/slow/infer", json=row(1)))
            await wait_until(lambda: batcher(server, "slow").busy == 1, "the inference runs")
            latencies = []
            for _ in range(10):
                start = time.perf_counter()
                response = await client.get("/v2/health/live")
                latencies.append(time.perf_counter() - start)
                assert response.status_code == 200
            assert batcher(server, "slow").busy == 1, "the probes did not overlap the inference"
            assert (await inference).status_code == 200
            return latencies

    with running_server(repository) as server:
        latencies = asyncio.run(scenario(server))
    assert max(latencies) < 0.05, f"live latencies (s): {latencies}"
    assert statistics.median(latencies) < 0.02


# -- queue and deadlines ---------------------------------------------------------------------


def test_full_queue_is_refused_at_once(repository: Path) -> None:
    """With max_queue_size = 1 a third concurrent request gets 503 at once; the others finish."""
    write_model(repository, "slow", slow(400), config=QUEUE_OF_ONE)

    async def scenario(server: RunningServer) -> None:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            running = asyncio.create_task(client.post("/v2/models/slow/infer", json=row(1)))
            await wait_until(lambda: batcher(server, "slow").busy == 1, "the first runs")
            queued = asyncio.create_task(client.post("/v2/models/slow/infer", json=row(2)))
            await wait_until(lambda: batcher(server, "slow").queued == 1, "the second queues")
            start = time.perf_counter()
            refused = await client.post("/v2/models/slow/infer", json=row(3))
            elapsed = time.perf_counter() - start
            assert refused.status_code == 503, refused.text
            assert "queue full" in refused.json()["error"]
            assert "slow" in refused.json()["error"]
            assert elapsed < 0.2, f"the refusal took {elapsed:.3f} s"
            assert batcher(server, "slow").busy == 1, "the refusal waited for the model"
            first, second = await running, await queued
            assert first.status_code == 200, first.text
            assert second.status_code == 200, second.text
            assert second.json()["outputs"][0]["data"] == [2.0] * 4

    with running_server(repository) as server:
        asyncio.run(scenario(server))


def test_request_timeout_expires_a_queued_request(repository: Path) -> None:
    """A queued request whose 'timeout' (µs) passes gets 504 at once; the running one completes."""
    write_model(repository, "slow", slow(600))

    async def scenario(server: RunningServer) -> None:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            running = asyncio.create_task(client.post("/v2/models/slow/infer", json=row(1)))
            await wait_until(lambda: batcher(server, "slow").busy == 1, "the first runs")
            start = time.perf_counter()
            expired = await client.post(
                "/v2/models/slow/infer", json={**row(2), "parameters": {"timeout": 50_000}}
            )
            elapsed = time.perf_counter() - start
            assert expired.status_code == 504, expired.text
            message = expired.json()["error"]
            assert "slow" in message
            assert "timed out" in message
            assert 0.04 < elapsed < 0.4, f"expired after {elapsed:.3f} s"
            assert batcher(server, "slow").busy == 1, "the expiry waited for the model"
            first = await running
            assert first.status_code == 200, first.text
            stats = (await client.get("/v2/models/slow/stats")).json()["model_stats"][0]
            assert stats["inference_stats"]["fail"]["count"] == 1
            assert stats["execution_count"] == 1  # the expired request never reached the model

    with running_server(repository) as server:
        asyncio.run(scenario(server))


# -- reload, unload and broken models ------------------------------------------------------


def test_reload_while_serving(repository: Path) -> None:
    """Requests during a reload all succeed; once load returns, every request gets version 2."""
    write_model(repository, "live", slow(5))
    workers = 4

    async def scenario(server: RunningServer) -> tuple[list[Any], float, float]:
        records: list[tuple[float, float, int, str]] = []
        done_loading = asyncio.Event()
        after_load = [0] * workers

        async def worker(index: int, client: httpx.AsyncClient) -> None:
            while after_load[index] < 5:
                start = time.monotonic()
                loaded = done_loading.is_set()
                response = await client.post("/v2/models/live/infer", json=row(index))
                version = (
                    response.json().get("model_version", "") if response.status_code == 200 else ""
                )
                records.append((start, time.monotonic(), response.status_code, version))
                if loaded:
                    after_load[index] += 1

        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            tasks = [asyncio.create_task(worker(i, client)) for i in range(workers)]
            await wait_until(lambda: len(records) >= 2 * workers, "the workers are going")
            publish_version(repository, "live", 2, slow(5))
            load_start = time.monotonic()
            response = await client.post("/v2/repository/models/live/load")
            load_end = time.monotonic()
            assert response.status_code == 200, response.text
            done_loading.set()
            await asyncio.wait_for(asyncio.gather(*tasks), 60)
        return records, load_start, load_end

    with running_server(repository) as server:
        records, load_start, load_end = asyncio.run(scenario(server))
        with httpx.Client(base_url=server.url) as client:
            rows = index_rows(client)["live"]
    assert all(status == 200 for _, _, status, _ in records), records
    during = [r for r in records if r[0] < load_end and r[1] > load_start]
    assert during, "no request was in flight during the reload"
    after = [r for r in records if r[0] > load_end]
    assert len(after) >= workers * 5
    assert {version for *_, version in after} == {"2"}
    before = [r for r in records if r[1] < load_start]
    assert before
    assert {version for *_, version in before} == {"1"}
    assert [(r["version"], r["state"]) for r in rows] == [("2", "READY")]


def test_failed_reload_keeps_the_old_version(repository: Path) -> None:
    """A reload of a corrupt version 3 fails; version 2 keeps serving and the index says why."""
    write_model(repository, "model", identity_model(), version=1)
    write_model(repository, "model", identity_model(), version=2)
    with running_server(repository) as server, httpx.Client(base_url=server.url) as client:
        before = client.post("/v2/models/model/infer", json=row(1))
        assert before.json()["model_version"] == "2"
        publish_version(repository, "model", 3, b"corrupt, not a protobuf")
        response = client.post("/v2/repository/models/model/load")
        assert response.status_code == 400, response.text
        assert "model" in response.json()["error"]
        assert "Traceback" not in response.text
        after = client.post("/v2/models/model/infer", json=row(1))
        assert after.status_code == 200, after.text
        assert after.json()["model_version"] == "2"
        rows = index_rows(client)["model"]
        assert [(r["version"], r["state"]) for r in rows] == [("2", "READY")]
        assert "reload failed" in rows[0]["reason"]
        assert "still serving version(s) 2" in rows[0]["reason"]
        assert client.get("/v2/models/model/versions/3/ready").status_code == 404


def test_unload_then_infer(repository: Path) -> None:
    """After unload the model answers 503, is not ready and shows 'unloaded'; load restores it."""
    write_model(repository, "model", identity_model())
    write_model(repository, "other", identity_model())
    with running_server(repository) as server, httpx.Client(base_url=server.url) as client:
        assert client.post("/v2/repository/models/model/unload").status_code == 200
        response = client.post("/v2/models/model/infer", json=row(1))
        assert response.status_code == 503, response.text
        assert "model" in response.json()["error"]
        assert client.get("/v2/models/model/ready").status_code == 503
        assert index_rows(client)["model"] == [
            {"name": "model", "state": "UNAVAILABLE", "reason": "unloaded"}
        ]
        assert client.get("/v2/health/ready").status_code == 200  # unloaded on purpose
        assert client.post("/v2/models/other/infer", json=row(1)).status_code == 200
        assert client.post("/v2/repository/models/model/load").status_code == 200
        assert client.post("/v2/models/model/infer", json=row(1)).status_code == 200


def test_broken_model_is_unavailable_and_others_serve(repository: Path) -> None:
    """A model with a corrupt file is UNAVAILABLE with a reason; the others serve."""
    write_model(repository, "broken", b"\x00\x01 not onnx")
    write_model(repository, "good", identity_model())
    with running_server(repository) as server, httpx.Client(base_url=server.url) as client:
        rows = index_rows(client)
        assert rows["broken"][0]["state"] == "UNAVAILABLE"
        assert "ONNX Runtime cannot load model.onnx" in rows["broken"][0]["reason"]
        assert rows["good"][0]["state"] == "READY"
        assert client.post("/v2/models/good/infer", json=row(1)).status_code == 200
        response = client.post("/v2/models/broken/infer", json=row(1))
        assert response.status_code == 503, response.text
        assert "broken" in response.json()["error"]
        assert client.get("/v2/models/broken/ready").status_code == 503
        assert client.get("/v2/health/ready").status_code == 503
        assert client.get("/v2/health/live").status_code == 200


# -- metrics -------------------------------------------------------------------------------


def test_metrics_expose_inference_counters(repository: Path) -> None:
    """/metrics has shipyard_inference_* counters that match the requests served."""
    write_model(repository, "model", identity_model())
    with running_server(repository) as server, httpx.Client(base_url=server.url) as client:
        for i in range(3):
            assert client.post("/v2/models/model/infer", json=row(i)).status_code == 200
        response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {
        sample.name: sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
        if sample.labels == {"model": "model", "version": "1"}
    }
    assert samples["shipyard_inference_request_success_total"] == 3
    assert samples["shipyard_inference_request_failure_total"] == 0
    assert samples["shipyard_inference_count_total"] == 3
    assert samples["shipyard_inference_exec_count_total"] == 3
    assert samples["shipyard_inference_request_duration_us_total"] > 0
    assert samples["shipyard_inference_queue_size"] == 0
