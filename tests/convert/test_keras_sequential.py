"""The seed's own Keras CNN as Sequential and subclassed models, trained briefly under each
Keras backend, converted (``.keras`` and SavedModel, to ONNX and to TFLite), served, and
compared with ``model.predict``.

Keras 3's ``Sequential`` has no ``output_names``, and one built by ``fit`` on the torch backend
records the training batch as a fixed first dimension: both used to fail or mis-convert.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from shipyard.testing import RunningServer, running_server
from tests.convert.conftest import infer, run_cli

pytestmark = pytest.mark.tensorflow

HERE = Path(__file__).resolve().parent / "keras_seed"
DATA = Path(__file__).resolve().parents[2] / "examples" / "mnist" / "data" / "mnist-9k.npz"

#: Repository name → (backend it was saved under, source in that backend's folder, model in
#: expected.npz, extra convert arguments).
SOURCES: dict[str, tuple[str, str, str, list[str]]] = {
    "tf_seq_input": ("tensorflow", "seq_input.keras", "seq_input", []),
    "tf_seq_noinput": ("tensorflow", "seq_noinput.keras", "seq_noinput", []),
    "tf_saved_model": ("tensorflow", "saved_model", "seq_input", []),
    "torch_seq_noinput": ("torch", "seq_noinput.keras", "seq_noinput", []),
    "tf_sub": (
        "tensorflow",
        "sub.keras",
        "sub",
        ["--custom-objects", str(HERE / "custom.py"), "--input", "x:FP32:-1,28,28,1"],
    ),
}
TARGETS = {"onnx": [], "tflite": ["--to", "tflite"]}


def _train(root: Path, backend: str) -> Path:
    out = root / backend
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(
        [sys.executable, str(HERE / "train.py"), str(out), backend, str(DATA)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every source trained, saved and converted to every target, in one repository."""
    root = tmp_path_factory.mktemp("keras-seed")
    folders = {backend: _train(root, backend) for backend in ("tensorflow", "torch")}
    repo = root / "repo"
    runs = {}
    for name, (backend, source, _, extra) in SOURCES.items():
        for target, args in TARGETS.items():
            runs[f"{name}-{target}"] = run_cli(
                folders[backend] / source, "--name", f"{name}-{target}", "--repo", repo,
                *args, *extra,
            )  # fmt: skip
    expected = {b: dict(np.load(f / "expected.npz")) for b, f in folders.items()}
    return {"repo": repo, "runs": runs, "expected": expected}


@pytest.fixture(scope="module")
def server(converted: dict[str, Any]) -> Iterator[RunningServer]:
    """A real server (HTTP only) on every converted model."""
    with running_server(converted["repo"], grpc=False) as running:
        yield running


@pytest.mark.parametrize("target", list(TARGETS))
@pytest.mark.parametrize("name", list(SOURCES))
def test_converts_serves_and_matches_predict(
    converted: dict[str, Any], server: RunningServer, name: str, target: str
) -> None:
    """Each source converts with parity, is served with a free batch axis, and its answers for
    64 real test digits (two batches of 32) match ``model.predict`` of the model as trained."""
    run = converted["runs"][f"{name}-{target}"]
    assert run.exit_code == 0, run.output
    assert "parity: passed" in run.output
    backend, _, model, _ = SOURCES[name]
    model_name = f"{name}-{target}"
    meta = httpx.get(f"{server.url}/v2/models/{model_name}", timeout=10).json()
    (image,) = meta["inputs"]
    assert image["shape"] == [-1, 28, 28, 1], meta
    (output,) = meta["outputs"]
    assert output["shape"] == [-1, 10], meta
    expected = converted["expected"][backend]
    for rows in (slice(0, 32), slice(32, 64)):  # max_batch_size is 32 by default
        got = infer(server.url, model_name, image["name"], expected["images"][rows])
        np.testing.assert_allclose(got[output["name"]], expected[model][rows], atol=2e-5)
