"""Models written in Python (model.py) on a real server, through unmodified tritonclient.

The server runs with ``allow_python_models``; each model's code runs in worker processes. One
model scales its input (and reports the batch it saw), one misbehaves on request: it raises,
aborts its process or hangs past ``execution_timeout_s``, so the tests can check that each
fails only its own request while the model, the server and an ONNX model keep serving.
"""

from __future__ import annotations

import concurrent.futures
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

from shipyard.batching import DynamicBatcher
from shipyard.testing import (
    RunningServer,
    identity_model,
    running_server,
    wait_until_blocking,
    write_model,
    write_python_model,
)
from tests.integration.transports import (
    TRANSPORTS,
    expected_status,
    infer_input,
    make_client,
    model_stats,
    output_array,
    repository_index,
)

SCALED = """\
import numpy as np
import shipyard


class Model(shipyard.PythonModel):
    def load(self, context):
        self.scale = float(context.settings["scale"])

    def predict(self, batch):
        x = batch["INPUT0"]
        rows = np.full((x.shape[0], 1), x.shape[0], dtype=np.int32)
        return {"OUTPUT0": x * self.scale, "ROWS": rows}
"""

SCALED_TOML = """\
max_batch_size = 4

[dynamic_batching]
# Held until 4 requests are queued (the most a batch takes), then run as one batch.
max_queue_delay_us = 20_000_000

[python]
workers = 1

[python.settings]
scale = 2.5

[[inputs]]
name = "INPUT0"
datatype = "FP32"
shape = [-1, 3]

[[outputs]]
name = "OUTPUT0"
datatype = "FP32"
shape = [-1, 3]

[[outputs]]
name = "ROWS"
datatype = "INT32"
shape = [-1, 1]
"""

FAULTY = """\
import os
import time

import shipyard


class Model(shipyard.PythonModel):
    def predict(self, batch):
        x = batch["INPUT0"]
        code = int(x[0, 0])
        if code == -1:
            raise ValueError("the secret detail of request -1")
        if code == -2:
            os.abort()
        if code == -3:
            time.sleep(3600)
        return {"OUTPUT0": x + 1}
"""

FAULTY_TOML = """\
max_batch_size = 4
dynamic_batching = false
execution_timeout_s = 3

[python]
workers = 2

[[inputs]]
name = "INPUT0"
datatype = "FP32"
shape = [-1, 2]

[[outputs]]
name = "OUTPUT0"
datatype = "FP32"
shape = [-1, 2]
"""


@pytest.fixture(scope="module")
def python_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository with the two Python models and an ONNX identity ``onnx``."""
    repo = tmp_path_factory.mktemp("python-models")
    write_python_model(repo, "scaled", SCALED, SCALED_TOML)
    write_python_model(repo, "faulty", FAULTY, FAULTY_TOML)
    write_model(repo, "onnx", identity_model())
    return repo


@pytest.fixture(scope="module")
def server(python_repository: Path) -> Iterator[RunningServer]:
    """A server that runs Python models."""
    with running_server(python_repository, allow_python_models=True) as running:
        yield running


def batcher(server: RunningServer, name: str) -> DynamicBatcher:
    """The batcher of ``name``'s latest version in the running server."""
    assert server.server.service is not None
    found = server.server.service.registry.get(name).batcher
    assert isinstance(found, DynamicBatcher)
    return found


def infer(transport: str, server: RunningServer, model: str, x: np.ndarray) -> Any:
    """One request with INPUT0 = ``x`` through a fresh client of ``transport``."""
    client = make_client(transport, server)
    try:
        return client.infer(model, [infer_input(transport, "INPUT0", x)])
    finally:
        client.close()


def error_of(transport: str, server: RunningServer, model: str, x: np.ndarray) -> Any:
    """The InferenceServerException a request raises."""
    with pytest.raises(InferenceServerException) as caught:
        infer(transport, server, model, x)
    return caught.value


def onnx_still_serves(transport: str, server: RunningServer) -> None:
    """The ONNX model answers correctly."""
    x = np.arange(4, dtype=np.float32).reshape(1, 4)
    np.testing.assert_array_equal(
        output_array(transport, infer(transport, server, "onnx", x), "OUTPUT0"), x
    )


def faulty_still_serves(transport: str, server: RunningServer) -> None:
    """The misbehaving model answers a normal request (waiting for a restarted worker)."""
    wait_until_blocking(lambda: batcher(server, "faulty").ready, "the faulty model is ready")
    x = np.array([[5.0, 6.0]], dtype=np.float32)
    result = infer(transport, server, "faulty", x)
    np.testing.assert_array_equal(output_array(transport, result, "OUTPUT0"), x + 1)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_python_model_serves_and_batches(transport: str, server: RunningServer) -> None:
    """Four concurrent requests run as one batch of four: predict saw 4 rows, each caller got
    its own rows back, and the statistics count 1 execution for 4 inferences."""
    client = make_client(transport, server)
    before = model_stats(transport, client, "scaled")[0]
    inputs = [np.full((1, 3), i, dtype=np.float32) for i in range(4)]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda x: infer(transport, server, "scaled", x), inputs))
    for x, result in zip(inputs, results, strict=True):
        np.testing.assert_allclose(output_array(transport, result, "OUTPUT0"), x * 2.5)
        np.testing.assert_array_equal(output_array(transport, result, "ROWS"), [[4]])
    after = model_stats(transport, client, "scaled")[0]
    client.close()
    assert after["inference_count"] - before["inference_count"] == 4
    assert after["execution_count"] - before["execution_count"] == 1
    assert 4 in after["batch_sizes"]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_python_model_metadata_is_the_declared_signature(
    transport: str, server: RunningServer
) -> None:
    """Metadata shows platform python and the [[inputs]]/[[outputs]] of model.toml."""
    client = make_client(transport, server)
    try:
        metadata = client.get_model_metadata("scaled")
    finally:
        client.close()
    if transport == "grpc":
        platform = metadata.platform
        outputs = [o.name for o in metadata.outputs]
    else:
        platform, outputs = metadata["platform"], [o["name"] for o in metadata["outputs"]]
    assert platform == "python"
    assert outputs == ["OUTPUT0", "ROWS"]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_bad_input_is_refused_before_the_worker(transport: str, server: RunningServer) -> None:
    """A wrong shape is a 400 naming the model and input, as for an ONNX model."""
    error = error_of(transport, server, "scaled", np.zeros((1, 5), dtype=np.float32))
    assert error.status() == expected_status(transport, "invalid")
    assert "'scaled'" in str(error)
    assert "INPUT0" in str(error)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_exception_fails_only_its_request(
    transport: str, server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    """predict() raising is a 500 naming the model, without the user's message or traceback;
    the traceback is in the server log, and the model and the server keep serving."""
    with caplog.at_level(logging.ERROR):
        error = error_of(transport, server, "faulty", np.array([[-1, 0]], dtype=np.float32))
    assert error.status() == ("500" if transport == "http" else "StatusCode.INTERNAL")
    assert "'faulty'" in str(error)
    assert "ValueError" in str(error)
    assert "secret" not in str(error)
    assert "Traceback" not in str(error)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "Traceback" in logged
    assert "the secret detail of request -1" in logged
    faulty_still_serves(transport, server)
    onnx_still_serves(transport, server)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_crash_fails_only_its_request_and_the_worker_restarts(
    transport: str, server: RunningServer
) -> None:
    """os.abort() in predict is a 500 naming the model; the worker is replaced and the model
    serves again, while the ONNX model never stops serving."""
    pool = batcher(server, "faulty").instances
    retired = pool.retired_count
    error = error_of(transport, server, "faulty", np.array([[-2, 0]], dtype=np.float32))
    assert error.status() == ("500" if transport == "http" else "StatusCode.INTERNAL")
    assert "'faulty'" in str(error)
    assert "SIGABRT" in str(error)
    assert pool.retired_count == retired + 1
    onnx_still_serves(transport, server)
    wait_until_blocking(lambda: pool.size == 2, "the crashed worker is replaced", 60)
    faulty_still_serves(transport, server)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_hang_past_the_timeout_fails_only_its_request(
    transport: str, server: RunningServer
) -> None:
    """A predict() that hangs is cut at execution_timeout_s with 504 / DEADLINE_EXCEEDED;
    meanwhile the model's other worker and the ONNX model serve, and the hung worker is
    replaced."""
    pool = batcher(server, "faulty").instances
    wait_until_blocking(lambda: pool.size == 2 and not pool.busy, "both workers are idle", 60)
    retired = pool.retired_count
    with concurrent.futures.ThreadPoolExecutor(1) as executor:
        hung = executor.submit(
            error_of, transport, server, "faulty", np.array([[-3, 0]], dtype=np.float32)
        )
        wait_until_blocking(lambda: pool.busy == 1, "the hanging request runs")
        faulty_still_serves(transport, server)  # on the other worker
        onnx_still_serves(transport, server)
        error = hung.result(timeout=60)
    assert error.status() == expected_status(transport, "deadline")
    assert "'faulty'" in str(error)
    assert "execution_timeout_s" in str(error)
    assert pool.retired_count == retired + 1
    wait_until_blocking(lambda: pool.size == 2, "the hung worker is replaced", 60)
    faulty_still_serves(transport, server)
    with httpx.Client(base_url=server.url) as client:
        assert client.get("/v2/health/live").status_code == 200
        assert client.get("/v2/health/ready").status_code == 200


def test_without_the_flag_python_models_are_unavailable(python_repository: Path) -> None:
    """A server started without allow_python_models refuses to load model.py: the model is
    UNAVAILABLE with a reason naming --allow-python-models; the ONNX model serves."""
    with running_server(python_repository) as running:
        rows = {r["name"]: r for r in repository_index("http", make_client("http", running))}
        for name in ("scaled", "faulty"):
            assert rows[name]["state"] == "UNAVAILABLE"
            assert "--allow-python-models" in rows[name]["reason"]
        assert rows["onnx"]["state"] == "READY"
        with httpx.Client(base_url=running.url) as client:
            tensor = {"name": "INPUT0", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}
            answer = client.post("/v2/models/scaled/infer", json={"inputs": [tensor]})
            assert answer.status_code == 503
            assert "--allow-python-models" in answer.json()["error"]
            assert client.get("/v2/models/scaled/ready").status_code != 200
        onnx_still_serves("http", running)


GATED = """\
import os
import time
from pathlib import Path

import shipyard


class Model(shipyard.PythonModel):
    def load(self, context):
        gate = Path(context.settings["gate"])
        # A restart (not the first start) waits until the test opens the gate.
        if (gate / "closed").exists():
            while not (gate / "open").exists():
                time.sleep(0.01)

    def predict(self, batch):
        x = batch["INPUT0"]
        if int(x[0, 0]) == -2:
            os.abort()
        return {"OUTPUT0": x + 1}
"""


def test_readiness_follows_the_restart_of_the_only_worker(tmp_path: Path) -> None:
    """While the only worker is being replaced the model is not ready (ready endpoint, 503
    naming why, index UNAVAILABLE) and the server is live; once it is back, all is ready."""
    gate = tmp_path / "gate"
    gate.mkdir()
    repo = tmp_path / "repo"
    config = FAULTY_TOML.replace("workers = 2", "workers = 1")
    config = config.replace("[python]\n", f'[python]\nsettings = {{gate = "{gate}"}}\n')
    write_python_model(repo, "gated", GATED, config)
    with running_server(repo, allow_python_models=True) as running:
        (gate / "closed").touch()
        error = error_of("http", running, "gated", np.array([[-2, 0]], dtype=np.float32))
        assert error.status() == "500"
        with httpx.Client(base_url=running.url) as client:
            assert client.get("/v2/health/live").status_code == 200
            assert client.get("/v2/health/ready").status_code == 503
            assert client.get("/v2/models/gated/ready").status_code != 200
            tensor = {"name": "INPUT0", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}
            answer = client.post("/v2/models/gated/infer", json={"inputs": [tensor]})
            assert answer.status_code == 503
            assert "SIGABRT" in answer.json()["error"]
            (row,) = repository_index("http", make_client("http", running))
            assert row["state"] == "UNAVAILABLE"
            assert "SIGABRT" in row["reason"]
            (gate / "open").touch()
            wait_until_blocking(
                lambda: client.get("/v2/health/ready").status_code == 200, "the restart", 60
            )
            answer = client.post("/v2/models/gated/infer", json={"inputs": [tensor]})
            assert answer.status_code == 200
            assert answer.json()["outputs"][0]["data"] == [2.0, 3.0]
