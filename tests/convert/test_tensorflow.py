"""TensorFlow SavedModel sources: to ONNX (tf2onnx) and TFLite (float32, int8); served, queried."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shipyard.testing import RunningServer, running_server
from tests.convert.conftest import infer, run_cli
from tests.convert.tf_models import images, tf_call, tf_module

pytestmark = pytest.mark.tensorflow

TARGETS: dict[str, tuple[list[str], str, float]] = {
    "onnx": ([], "model.onnx", 1e-5),
    "tflite": (["--to", "tflite"], "model.tflite", 1e-5),
    "int8": (["--to", "tflite", "--quantize", "int8"], "model.tflite", 0.05),
}


@pytest.fixture(scope="module")
def tf_repo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A tf.Module SavedModel converted to ONNX, TFLite and int8 TFLite, in one repository."""
    root = tmp_path_factory.mktemp("tensorflow")
    module = tf_module(root / "saved")
    sample = root / "sample.npz"
    np.savez(sample, image=images(32, seed=4))
    repo = root / "repo"
    runs = {
        name: run_cli(root / "saved", "--name", name, "--repo", repo, *extra, "--sample", sample)
        for name, (extra, _, _) in TARGETS.items()
    }
    return {"root": root, "repo": repo, "module": module, "runs": runs}


@pytest.fixture(scope="module")
def tf_server(tf_repo: dict[str, Any]) -> Iterator[RunningServer]:
    """A real server (HTTP only) on the converted SavedModels."""
    with running_server(tf_repo["repo"], grpc=False) as server:
        yield server


@pytest.mark.parametrize("name", list(TARGETS))
def test_conversion_passes_parity_and_publishes(tf_repo: dict[str, Any], name: str) -> None:
    """Each target converts, passes parity for both outputs and publishes its signature."""
    result = tf_repo["runs"][name]
    assert result.exit_code == 0, result.output
    assert "parity: passed" in result.output
    folder = tf_repo["repo"] / name / "1"
    assert (folder / TARGETS[name][1]).is_file()
    report = json.loads((folder / "report.json").read_text())
    assert report["framework"] == "tensorflow"
    assert report["conversion"]["signature"] == "serving_default"
    assert {row["name"] for row in report["parity"]["outputs"]} == {"probs", "logits"}
    config = tomllib.loads((tf_repo["repo"] / name / "model.toml").read_text())
    assert config["inputs"] == [{"name": "image", "datatype": "FP32", "shape": [-1, 28, 28, 1]}]
    assert sorted(o["name"] for o in config["outputs"]) == ["logits", "probs"]
    if name == "onnx":
        assert report["conversion"]["exporter"].startswith("tf2onnx")


@pytest.mark.parametrize("name", list(TARGETS))
def test_served_answers_match_tensorflow(
    tf_repo: dict[str, Any], tf_server: RunningServer, name: str
) -> None:
    """The served model answers a batch of 3 as the TensorFlow module does, for both outputs."""
    data = images(3, seed=8)
    expected = tf_call(tf_repo["module"], data)
    got = infer(tf_server.url, name, "image", data)
    tolerance = TARGETS[name][2]
    np.testing.assert_allclose(got["probs"], expected["probs"], atol=tolerance, rtol=tolerance)
    scale = float(np.abs(expected["logits"]).max())
    np.testing.assert_allclose(got["logits"], expected["logits"], atol=tolerance * max(scale, 1))


def test_keras_framework_on_a_saved_model_is_refused(tf_repo: dict[str, Any], repo: Path) -> None:
    """A SavedModel folder given with --framework keras is refused; nothing published."""
    result = run_cli(
        tf_repo["root"] / "saved", "--name", "m", "--repo", repo, "--framework", "keras"
    )
    assert result.exit_code == 2
    assert "looks like a TensorFlow model, not a Keras one" in result.output
    assert not (repo / "m").exists()


@pytest.mark.parametrize("to", [[], ["--to", "tflite"]])
def test_corrupt_saved_model(tmp_path: Path, repo: Path, to: list[str]) -> None:
    """A SavedModel folder whose saved_model.pb is garbage fails at the load step."""
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "saved_model.pb").write_bytes(b"not a protobuf at all")
    result = run_cli(folder, "--name", "m", "--repo", repo, *to)
    assert result.exit_code == 2
    assert "error: load failed (tensorflow)" in result.output
    assert "Traceback" not in result.output
    assert not (repo / "m").exists()


def test_int8_without_sample_is_refused(tf_repo: dict[str, Any], repo: Path) -> None:
    """int8 without --sample fails before converting; nothing published."""
    result = run_cli(
        tf_repo["root"] / "saved",
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
    assert not (repo / "m").exists()
