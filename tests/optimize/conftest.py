"""Fixtures for optimization tests: a repository holding the MNIST-shaped CNN, data files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from shipyard.optimize import BenchmarkSettings
from shipyard.testing import cnn_model, write_model

#: Short budgets: a few hundred runs per phase are enough to compare, and keep tests fast.
FAST = BenchmarkSettings(
    warmup_runs=5, latency_seconds=0.15, throughput_seconds=0.15, throughput_batch=8, rounds=1
)
CONFIG = """\
# Tuned by hand; optimize must keep this comment and these settings.
instance_count = 2

[onnxruntime]
intra_op_threads = 1
graph_optimization_level = "all"
"""


def cnn_outputs(model_path: Path, images: np.ndarray) -> np.ndarray:
    """The CNN's probabilities for ``images`` straight from ONNX Runtime."""
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    result: np.ndarray = session.run(None, {"input": images})[0]
    return result


@pytest.fixture
def cnn_repo(tmp_path: Path) -> Path:
    """A repository with ``cnn`` version 1 (fp32) and a hand-written model.toml."""
    repo = tmp_path / "repo"
    write_model(repo, "cnn", cnn_model(), config=CONFIG)
    return repo


@pytest.fixture
def images() -> np.ndarray:
    """96 MNIST-shaped images: smooth blobs, so the CNN's activations resemble real inputs."""
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:28, 0:28]
    centres = rng.uniform(6, 22, size=(96, 2))
    blobs = np.exp(
        -((yy - centres[:, 0, None, None]) ** 2 + (xx - centres[:, 1, None, None]) ** 2) / 30.0
    )
    noise = rng.normal(0, 0.05, size=blobs.shape)
    images: np.ndarray = (blobs + noise).astype(np.float32)[:, None, :, :]
    return images


@pytest.fixture
def calibration(tmp_path: Path, images: np.ndarray) -> Path:
    """Calibration data: the first 64 images under the model's input name."""
    path = tmp_path / "calibration.npz"
    np.savez(path, input=images[:64])
    return path


#: A label from the untrained CNN means something only where it decides clearly: its top
#: probability leads the next by at least this much. (Near-ties flip under any int8 noise:
#: the held-out images' leads range from 0.006 to 0.98; with 7-bit weights the flipped ones
#: led by 0.011 and 0.156, with full-range weights none flipped.)
CLEAR_LEAD = 0.25


@pytest.fixture
def validation(tmp_path: Path, images: np.ndarray, cnn_repo: Path) -> Path:
    """Validation data: the held-out images (the last 32) that the fp32 model decides clearly
    (:data:`CLEAR_LEAD`; 25 of them), labelled with its own predictions."""
    path = tmp_path / "validation.npz"
    held_out = images[64:]
    scores = cnn_outputs(cnn_repo / "cnn" / "1" / "model.onnx", held_out)
    top2 = np.sort(scores, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] >= CLEAR_LEAD
    np.savez(path, input=held_out[clear], labels=scores[clear].argmax(axis=1))
    return path
