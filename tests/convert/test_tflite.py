"""The tflite serving backend: backend choice, fixed-shape models, and publishing rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from shipyard.backends.base import load_backend, resolve_backend
from shipyard.config import ModelConfig
from shipyard.errors import InvalidInputError, ModelLoadError
from shipyard.testing import running_server
from tests.convert.conftest import infer, run_cli
from tests.convert.tf_models import images, tf_call, tf_module, tflite_bytes

pytestmark = pytest.mark.tensorflow


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two .tflite flatbuffers of the same net: batch dim dynamic, and fixed at 2."""
    root = tmp_path_factory.mktemp("tflite")
    dynamic = tf_module(root / "dynamic")
    tf_module(root / "fixed", batch=2)
    return {
        "root": root,
        "module": dynamic,
        "dynamic": tflite_bytes(root / "dynamic"),
        "fixed": tflite_bytes(root / "fixed"),
    }


def _version(repo: Path, name: str, data: bytes, toml: str = "") -> Path:
    folder = repo / name / "1"
    folder.mkdir(parents=True)
    (folder / "model.tflite").write_bytes(data)
    if toml:
        (repo / name / "model.toml").write_text(toml)
    return folder


def test_backend_choice(tmp_path: Path, models: dict[str, Any]) -> None:
    """auto picks tflite for a folder with model.tflite only; a named backend is obeyed."""
    folder = _version(tmp_path, "m", models["dynamic"])
    assert resolve_backend(folder, ModelConfig(name="m")) == "tflite"
    assert resolve_backend(folder, ModelConfig(name="m", backend="onnxruntime")) == "onnxruntime"
    (folder / "model.onnx").write_bytes(b"")
    assert resolve_backend(folder, ModelConfig(name="m")) == "onnxruntime"
    (folder / "model.onnx").unlink()
    with pytest.raises(ModelLoadError, match=r"no model\.onnx"):
        load_backend(folder, ModelConfig(name="m", backend="onnxruntime"))


def test_backend_resizes_between_batches(tmp_path: Path, models: dict[str, Any]) -> None:
    """One backend instance answers batches of 1, 5 and 2 in turn, each as TensorFlow does."""
    folder = _version(tmp_path, "m", models["dynamic"])
    backend = load_backend(folder, ModelConfig(name="m", backend="tflite"))
    try:
        assert backend.platform == "tensorflow_lite"
        for rows in (1, 5, 2):
            data = images(rows, seed=rows)
            probs, logits = backend.run({"image": data}, ["probs", "logits"])
            expected = tf_call(models["module"], data)
            np.testing.assert_allclose(probs, expected["probs"], atol=1e-5)
            np.testing.assert_allclose(logits, expected["logits"], atol=1e-4)
        with pytest.raises(InvalidInputError):
            backend.run({"image": np.zeros((1, 3, 3, 1), np.float32)}, ["probs"])
        assert backend.run({"image": images(1, seed=0)}, ["probs"])[0].shape == (1, 10)
    finally:
        backend.close()


def test_served_auto_and_fixed_shape(tmp_path: Path, models: dict[str, Any]) -> None:
    """A fixed-batch model is served without batching; an explicit backend loads too."""
    _version(tmp_path, "fixed", models["fixed"])
    _version(tmp_path, "named", models["dynamic"], 'backend = "tflite"\n')
    _version(tmp_path, "wrong", models["dynamic"], 'backend = "onnxruntime"\n')
    with running_server(tmp_path, grpc=False) as server:
        meta = httpx.get(f"{server.url}/v2/models/fixed", timeout=10).json()
        assert meta["inputs"][0]["shape"] == [2, 28, 28, 1]
        config = httpx.get(f"{server.url}/v2/models/fixed/config", timeout=10).json()
        assert config["max_batch_size"] == 0
        data = images(2, seed=9)
        got = infer(server.url, "fixed", "image", data)["probs"]
        np.testing.assert_allclose(got, tf_call(models["module"], data)["probs"], atol=1e-5)
        response = httpx.post(
            f"{server.url}/v2/models/fixed/infer",
            json={
                "inputs": [
                    {
                        "name": "image",
                        "datatype": "FP32",
                        "shape": [3, 28, 28, 1],
                        "data": [0.0] * 3 * 28 * 28,
                    }
                ]
            },
            timeout=10,
        )
        assert response.status_code == 400
        assert infer(server.url, "named", "image", images(3, seed=1))["probs"].shape == (3, 10)
        index = httpx.post(f"{server.url}/v2/repository/index", json={}, timeout=10).json()
        wrong = next(row for row in index if row["name"] == "wrong")
        assert wrong["state"] == "UNAVAILABLE"
        assert "model.onnx" in wrong["reason"]


def test_convert_refuses_a_backend_that_cannot_serve_the_target(
    tmp_path: Path, models: dict[str, Any]
) -> None:
    """--to tflite into a model whose model.toml says onnxruntime fails before converting."""
    repo = tmp_path / "repo"
    (repo / "m").mkdir(parents=True)
    (repo / "m" / "model.toml").write_text('backend = "onnxruntime"\n')
    result = run_cli(models["root"] / "dynamic", "--name", "m", "--repo", repo, "--to", "tflite")
    assert result.exit_code == 2
    assert "sets backend = 'onnxruntime', which cannot serve a tflite model" in result.output
    assert [p.name for p in (repo / "m").iterdir()] == ["model.toml"]
