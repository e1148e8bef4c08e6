"""Keras 3 sources (torch backend): to ONNX, to TFLite float32 and int8; served and queried."""

from __future__ import annotations

import json
import shutil
import tomllib
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from shipyard.repository.settings import update_settings
from shipyard.testing import RunningServer, running_server
from tests.convert.conftest import infer, run_cli
from tests.convert.tf_models import images, keras_cnn, keras_predict

pytestmark = pytest.mark.tensorflow

#: name → (--to/--quantize arguments, file published, tolerance of served vs Keras answers)
TARGETS: dict[str, tuple[list[str], str, float]] = {
    "onnx": ([], "model.onnx", 1e-5),
    "tflite": (["--to", "tflite"], "model.tflite", 1e-5),
    "int8": (["--to", "tflite", "--quantize", "int8"], "model.tflite", 0.05),
}


@pytest.fixture(scope="module")
def keras_repo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The Keras CNN converted to ONNX, TFLite and int8 TFLite, in one repository."""
    root = tmp_path_factory.mktemp("keras")
    model = keras_cnn(root / "cnn.keras")
    sample = root / "sample.npz"
    np.savez(sample, image=images(32, seed=3))
    repo = root / "repo"
    runs = {
        name: run_cli(
            root / "cnn.keras", "--name", name, "--repo", repo, *extra, "--sample", sample
        )
        for name, (extra, _, _) in TARGETS.items()
    }
    return {"root": root, "repo": repo, "model": model, "runs": runs}


@pytest.fixture(scope="module")
def keras_server(keras_repo: dict[str, Any]) -> Iterator[RunningServer]:
    """A real server (HTTP only) on the converted Keras models."""
    with running_server(keras_repo["repo"], grpc=False) as server:
        yield server


@pytest.mark.parametrize("name", list(TARGETS))
def test_conversion_passes_parity_and_publishes(keras_repo: dict[str, Any], name: str) -> None:
    """Each target converts, passes parity and publishes its file, report and signature."""
    result = keras_repo["runs"][name]
    assert result.exit_code == 0, result.output
    assert "parity: passed" in result.output
    folder = keras_repo["repo"] / name / "1"
    assert (folder / TARGETS[name][1]).is_file()
    report = json.loads((folder / "report.json").read_text())
    assert report["framework"] == "keras"
    assert report["target"] == ("onnx" if name == "onnx" else "tflite")
    # an untrained model's classes are close calls: int8 may flip a few
    assert report["parity"]["outputs"][0]["top1_agreement"] >= (0.8 if name == "int8" else 1.0)
    config = tomllib.loads((keras_repo["repo"] / name / "model.toml").read_text())
    assert "backend" not in config  # auto-detected from the file
    assert config["inputs"] == [{"name": "image", "datatype": "FP32", "shape": [-1, 28, 28, 1]}]
    assert config["outputs"] == [{"name": "probs", "datatype": "FP32", "shape": [-1, 10]}]
    if name == "int8":
        assert report["conversion"]["quantize"] == "int8"
        assert report["parity"]["tolerances"] == {
            "atol": 0.05,
            "rtol": 0.05,
            "range_relative": True,
        }


@pytest.mark.parametrize("name", list(TARGETS))
def test_served_answers_match_keras(
    keras_repo: dict[str, Any], keras_server: RunningServer, name: str
) -> None:
    """The served model answers a batch of 3 as Keras's predict does."""
    data = images(3, seed=7)
    expected = keras_predict(keras_repo["model"], data)
    tolerance = TARGETS[name][2]
    got = infer(keras_server.url, name, "image", data)["probs"]
    np.testing.assert_allclose(got, expected, atol=tolerance, rtol=tolerance)


def test_tflite_metadata_and_platform(keras_server: RunningServer) -> None:
    """A .tflite version reports the tflite platform and the interpreter's signature."""
    body = httpx.get(f"{keras_server.url}/v2/models/tflite", timeout=10).json()
    assert body["platform"] == "tensorflow_lite"
    assert body["inputs"] == [{"name": "image", "datatype": "FP32", "shape": [-1, 28, 28, 1]}]
    assert body["outputs"] == [{"name": "probs", "datatype": "FP32", "shape": [-1, 10]}]
    config = httpx.get(f"{keras_server.url}/v2/models/tflite/config", timeout=10).json()
    assert config["backend"] == "tflite"
    assert config["platform"] == "tensorflow_lite"
    assert config["max_batch_size"] > 0


def test_tflite_concurrent_batches(keras_repo: dict[str, Any], tmp_path: Path) -> None:
    """Concurrent requests of different batch sizes are batched, resized and answered right."""
    repo = tmp_path / "repo"
    shutil.copytree(keras_repo["repo"] / "tflite", repo / "tflite")
    config = repo / "tflite" / "model.toml"
    # A queue delay far longer than the requests take to arrive: they run as one batch.
    delay = {"dynamic_batching.max_queue_delay_us": 2_000_000}
    text = config.read_text(encoding="utf-8") if config.exists() else ""
    config.write_text(update_settings(text, "tflite", delay), encoding="utf-8")
    batches = [images(rows, seed=20 + rows) for rows in (1, 4, 2, 5, 1, 3, 2, 4)]
    with running_server(repo, grpc=False) as server, ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda d: infer(server.url, "tflite", "image", d), batches))
        stats = httpx.get(f"{server.url}/v2/models/tflite/stats", timeout=10).json()
    for data, answer in zip(batches, answers, strict=True):
        expected = keras_predict(keras_repo["model"], data)
        np.testing.assert_allclose(answer["probs"], expected, atol=1e-5, rtol=1e-5)
    (entry,) = stats["model_stats"]
    assert int(entry["inference_stats"]["success"]["count"]) == len(batches)
    assert int(entry["execution_count"]) < len(batches), "no two requests were batched"


def test_wrong_shape_is_a_clear_400(keras_server: RunningServer) -> None:
    """An image of the wrong size is refused with 400, and the model keeps serving."""
    body = {"inputs": [{"name": "image", "datatype": "FP32", "shape": [1, 7], "data": [0.0] * 7}]}
    response = httpx.post(f"{keras_server.url}/v2/models/tflite/infer", json=body, timeout=10)
    assert response.status_code == 400
    assert "error" in response.json()
    infer(keras_server.url, "tflite", "image", images(1, seed=1))


def test_wrong_framework_is_refused(keras_repo: dict[str, Any], repo: Path) -> None:
    """A .keras file given with --framework torch is refused, nothing published."""
    result = run_cli(
        keras_repo["root"] / "cnn.keras", "--name", "m", "--repo", repo, "--framework", "torch"
    )
    assert result.exit_code == 2
    assert "looks like a Keras model, not a PyTorch one" in result.output
    assert not (repo / "m").exists()


@pytest.mark.parametrize("to", [[], ["--to", "tflite"]])
def test_corrupt_keras_file(tmp_path: Path, repo: Path, to: list[str]) -> None:
    """A .keras archive that holds no valid model fails at the load step, in one line."""
    path = tmp_path / "bad.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", "{not json")
        archive.writestr("metadata.json", "{}")
    result = run_cli(path, "--name", "m", "--repo", repo, *to)
    assert result.exit_code == 2
    assert "error: load failed (keras)" in result.output
    assert "Traceback" not in result.output
    assert not (repo / "m").exists()


def test_int8_without_sample_is_refused(keras_repo: dict[str, Any], repo: Path) -> None:
    """int8 quantization without --sample says calibration data is needed; nothing published."""
    result = run_cli(
        keras_repo["root"] / "cnn.keras",
        "--name",
        "m",
        "--repo",
        repo,
        "--to",
        "tflite",
        "--quantize",
        "int8",
    )
    assert result.exit_code == 2
    assert "int8 quantization needs representative inputs" in result.output
    assert "--sample" in result.output
    assert not (repo / "m").exists()
