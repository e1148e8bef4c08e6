"""ONNX sources: checked, copied as the next version, model.toml updated without losing keys."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import onnxruntime as ort

from shipyard.testing import cnn_model, running_server
from tests.convert.conftest import infer, run_cli


def test_onnx_copied_as_next_version_and_served(tmp_path: Path, repo: Path) -> None:
    """Two conversions give versions 1 and 2; other model.toml keys survive; answers match."""
    source = tmp_path / "cnn.onnx"
    source.write_bytes(cnn_model().SerializeToString())
    (repo / "cnn").mkdir()
    (repo / "cnn" / "model.toml").write_text(
        "# tuned by hand\ninstance_count = 2\n\n[dynamic_batching]\nmax_queue_delay_us = 100\n"
    )
    for version in (1, 2):
        result = run_cli(source, "--name", "cnn", "--repo", repo)
        assert result.exit_code == 0, result.output
        assert (repo / "cnn" / str(version) / "model.onnx").is_file()
    text = (repo / "cnn" / "model.toml").read_text()
    config = tomllib.loads(text)
    assert "# tuned by hand" in text
    assert config["instance_count"] == 2
    assert config["dynamic_batching"] == {"max_queue_delay_us": 100}
    assert config["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 1, 28, 28]}]
    assert len(config["outputs"]) == 1
    assert not [p for p in (repo / "cnn").iterdir() if p.name.startswith(".")]
    data = np.random.default_rng(0).standard_normal((2, 1, 28, 28)).astype(np.float32)
    expected = ort.InferenceSession(str(source)).run(None, {"input": data})[0]
    with running_server(repo) as server:
        outputs = infer(server.url, "cnn", "input", data)
    np.testing.assert_allclose(outputs["probabilities"], expected, rtol=1e-5, atol=1e-6)
