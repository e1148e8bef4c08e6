"""`shipyard ray serve` on a real local Ray cluster: a head and a worker node, 1 CPU each."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as triton

from shipyard.testing import cnn_model, slow_model, wait_until_blocking, write_model
from shipyard.testing.raycluster import RayCluster, free_port, local_ray_cluster

pytestmark = [pytest.mark.ray, pytest.mark.timeout(600)]

_CNN_TOML = "[scale]\nnum_cpus = 0.25\n"
# One replica at rest, a second one as soon as requests queue (autoscaling).
_SLOW_TOML = (
    "max_batch_size = 0\n[scale]\nmin_replicas = 1\nmax_replicas = 2\n"
    "target_ongoing_requests = 1\nnum_cpus = 0.75\nupscale_delay_s = 0\n"
)


@dataclass
class Deployed:
    """The cluster, the URL of its ingress and the CNN's file (for the oracle)."""

    cluster: RayCluster
    url: str
    address: str
    cnn_file: Path


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    """A 2-node cluster with the CNN and the slow model deployed by the CLI (--detach)."""
    workdir = tmp_path_factory.mktemp("ray")
    repo = workdir / "repo"
    cnn_file = write_model(repo, "cnn", cnn_model(), config=_CNN_TOML)
    write_model(repo, "slow", slow_model(40), config=_SLOW_TOML)
    fast_metrics = {"RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "0.5"}
    with local_ray_cluster(workdir, nodes=2, cpus_per_node=1, extra_env=fast_metrics) as cluster:
        port = free_port()
        shipyard = str(Path(sys.executable).parent / "shipyard")
        argv = [shipyard, "ray", "serve", str(repo), "--address", cluster.address]
        done = subprocess.run(
            [*argv, "--http-port", str(port), "--detach"],
            capture_output=True,
            text=True,
            env=cluster.env,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"http://127.0.0.1:{port}" in done.stdout
        yield Deployed(cluster, f"http://127.0.0.1:{port}", f"127.0.0.1:{port}", cnn_file)


def _image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((1, 1, 28, 28), dtype=np.float32)


def _expected(cnn_file: Path, image: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(cnn_file), providers=["CPUExecutionProvider"])
    result: np.ndarray = session.run(None, {"input": image})[0]
    return result


def _infer_json(image: np.ndarray) -> dict[str, object]:
    return {
        "inputs": [
            {
                "name": "input",
                "shape": [1, 1, 28, 28],
                "datatype": "FP32",
                "data": image.ravel().tolist(),
            }
        ]
    }


def test_tritonclient_http_through_the_cluster(deployed: Deployed) -> None:
    """Unmodified tritonclient gets health, metadata and ORT's exact answer through Ray."""
    client = triton.InferenceServerClient(deployed.address)
    try:
        assert client.is_server_live()
        assert client.is_server_ready()
        assert client.is_model_ready("cnn")
        assert client.get_model_metadata("cnn")["inputs"][0]["shape"] == [-1, 1, 28, 28]
        image = _image(1)
        tensor = triton.InferInput("input", [1, 1, 28, 28], "FP32")
        tensor.set_data_from_numpy(image, binary_data=True)
        got = client.infer("cnn", [tensor]).as_numpy("probabilities")
    finally:
        client.close()
    np.testing.assert_allclose(got, _expected(deployed.cnn_file, image), rtol=1e-5, atol=1e-6)
    index = httpx.post(f"{deployed.url}/v2/repository/index").json()
    assert {(row["name"], row["state"]) for row in index} == {("cnn", "READY"), ("slow", "READY")}


def test_cluster_refuses_what_it_does_not_serve_with_clear_errors(deployed: Deployed) -> None:
    """Unknown models get 404 and repository load gets 501, each with an {"error"} body."""
    unknown = httpx.get(f"{deployed.url}/v2/models/nope")
    assert unknown.status_code == 404
    assert "nope" in unknown.json()["error"]
    load = httpx.post(f"{deployed.url}/v2/repository/models/cnn/load")
    assert load.status_code == 501
    assert "shipyard ray serve" in load.json()["error"]
    bad = httpx.post(f"{deployed.url}/v2/models/cnn/infer", content=b"{not json")
    assert bad.status_code == 400
    assert "error" in bad.json()


def test_killed_replica_is_replaced_and_every_request_is_answered(deployed: Deployed) -> None:
    """Killing the CNN's replica under load: Ray starts another; each request gets an answer
    (correct output) or a clean error, none hangs, and requests succeed again afterwards."""
    title = "ServeReplica:shipyard:cnn"
    before = deployed.cluster.process_ids(title)
    assert len(before) == 1, before
    image = _image(2)
    expected = _expected(deployed.cnn_file, image)
    body = _infer_json(image)
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(timeout=30) as http:
            while not stop.is_set():
                try:
                    response = http.post(f"{deployed.url}/v2/models/cnn/infer", json=body)
                except httpx.TimeoutException:
                    kind = "timeout"
                except httpx.TransportError:
                    kind = "connection error"
                else:
                    if response.status_code == 200:
                        data = np.asarray(response.json()["outputs"][0]["data"], np.float32)
                        ok = np.allclose(data, expected.ravel(), atol=1e-5)
                        kind = "ok" if ok else "wrong answer"
                    else:
                        kind = f"HTTP {response.status_code}"
                with lock:
                    outcomes[kind] += 1

    with ThreadPoolExecutor(4) as pool:
        for _ in range(4):
            pool.submit(client)
        wait_until_blocking(lambda: outcomes["ok"] >= 20, "requests succeed", timeout_s=60)
        os.kill(before[0], signal.SIGKILL)
        killed_at = sum(outcomes.values())

        def replaced() -> bool:
            now = deployed.cluster.process_ids(title)
            return bool(now) and now != before

        wait_until_blocking(replaced, "Ray starts a new CNN replica", timeout_s=120)
        wait_until_blocking(
            lambda: sum(outcomes.values()) >= killed_at + 50 and outcomes["ok"] > killed_at,
            "requests succeed on the new replica",
            timeout_s=120,
        )
        ok_before_stop = outcomes["ok"]
        wait_until_blocking(
            lambda: outcomes["ok"] >= ok_before_stop + 20, "the new replica serves", 60
        )
        stop.set()
    assert outcomes["timeout"] == 0, outcomes
    assert outcomes["wrong answer"] == 0, outcomes
    clean_errors = {k for k in outcomes if k.startswith(("HTTP 5", "connection"))}
    assert set(outcomes) <= {"ok", *clean_errors}, outcomes


def test_autoscaling_adds_a_replica_under_load(deployed: Deployed) -> None:
    """The slow model ([scale] min 1, max 2, target 1) gets a second replica under load."""
    title = "ServeReplica:shipyard:slow"
    assert len(deployed.cluster.process_ids(title)) == 1
    body = {
        "inputs": [{"name": "INPUT0", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]
    }
    stop = threading.Event()
    answered: Counter[int] = Counter()

    def client() -> None:
        with httpx.Client(timeout=60) as http:
            while not stop.is_set():
                answered[
                    http.post(f"{deployed.url}/v2/models/slow/infer", json=body).status_code
                ] += 1

    started = time.monotonic()
    with ThreadPoolExecutor(6) as pool:
        for _ in range(6):
            pool.submit(client)
        try:
            wait_until_blocking(
                lambda: len(deployed.cluster.process_ids(title)) == 2,
                "autoscaling starts a second replica",
                timeout_s=150,
            )
        finally:
            stop.set()
    assert answered[200] > 0
    assert set(answered) == {200}, answered
    assert time.monotonic() - started < 150
