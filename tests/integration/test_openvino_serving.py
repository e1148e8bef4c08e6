"""Models served by OpenVINO on a real server: batching, instances and IR detection, with
ONNX Runtime's answers."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from shipyard.testing import RunningServer, cnn_model, running_server, write_model

BATCHED = """backend = "openvino"
instance_count = 2

[dynamic_batching]
max_queue_delay_us = 20000
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """The CNN on ONNX Runtime (cnn), on OpenVINO with 2 instances (cnn-ov), and as IR only."""
    import openvino

    repo = tmp_path_factory.mktemp("openvino")
    source = write_model(repo, "cnn", cnn_model())
    write_model(repo, "cnn-ov", cnn_model(), config=BATCHED)
    (repo / "cnn-ir" / "1").mkdir(parents=True)
    model = openvino.convert_model(str(source))
    openvino.save_model(model, str(repo / "cnn-ir" / "1" / "model.xml"), compress_to_fp16=False)
    with running_server(repo, grpc=False) as running:
        yield running


def _infer(client: httpx.Client, model: str, x: np.ndarray) -> np.ndarray:
    body = {
        "inputs": [
            {
                "name": "input",
                "datatype": "FP32",
                "shape": list(x.shape),
                "data": x.ravel().tolist(),
            }
        ]
    }
    response = client.post(f"/v2/models/{model}/infer", json=body)
    assert response.status_code == 200, response.text
    output = response.json()["outputs"][0]
    return np.array(output["data"], np.float32).reshape(output["shape"])


def test_openvino_models_answer_as_onnxruntime(server: RunningServer) -> None:
    """Concurrent requests to the batched two-instance OpenVINO model and to the IR-only model
    get ONNX Runtime's answers within 1e-5, and batching merged them (fewer executions than
    requests)."""
    rng = np.random.default_rng(0)
    images = [rng.random((1, 1, 28, 28), dtype=np.float32) for _ in range(24)]
    with httpx.Client(base_url=server.url, timeout=30) as client:
        reference = [_infer(client, "cnn", x) for x in images]
        for model in ("cnn-ov", "cnn-ir"):
            with concurrent.futures.ThreadPoolExecutor(12) as pool:
                answers = list(pool.map(lambda x, m=model: _infer(client, m, x), images))
            for got, want in zip(answers, reference, strict=True):
                np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
        stats = client.get("/v2/models/cnn-ov/stats").json()["model_stats"][0]
        assert stats["inference_count"] == 24
        assert stats["execution_count"] < 24


def test_metadata_names_the_engine(server: RunningServer) -> None:
    """Both OpenVINO models report the ``openvino`` platform; the IR one was detected without
    a model.toml, with the ONNX model's signature and batching."""
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for model in ("cnn-ov", "cnn-ir"):
            metadata = client.get(f"/v2/models/{model}").json()
            assert metadata["platform"] == "openvino"
            assert metadata["inputs"] == [
                {"name": "input", "datatype": "FP32", "shape": [-1, 1, 28, 28]}
            ]
        assert client.get("/v2/models/cnn").json()["platform"] == "onnx_onnxv1"
        config = client.get("/v2/models/cnn-ir/config").json()
        assert config["max_batch_size"] == 32


def test_a_bad_shape_is_a_400_not_a_misread(server: RunningServer) -> None:
    """A wrong image size is refused (OpenVINO itself would read past the data)."""
    with httpx.Client(base_url=server.url, timeout=30) as client:
        body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 1, 27, 28],
                            "data": [0.0] * 756}]}  # fmt: skip
        response = client.post("/v2/models/cnn-ov/infer", json=body)
        assert response.status_code == 400
        assert "'cnn-ov'" in response.json()["error"]
