"""The MNIST example: architecture, reproducible training, conversion and test accuracy.

``test_converted_model_accuracy`` uses the real trained weights in ``examples/mnist/build/``
(``train.py --reuse``): when they are absent or stale (the code, data or settings changed) it
runs the FULL training first (8 epochs; about 30 s on 2 idle cores, up to ~80 s on a loaded
machine), then converts with ``shipyard convert`` and evaluates the ONNX model.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from tests.examples.conftest import MNIST as EXAMPLE
from tests.examples.conftest import MNIST_BUILD as BUILD
from tests.examples.conftest import load_example as _load
from tests.examples.conftest import run as _run

torch = pytest.importorskip("torch", reason="the MNIST example needs torch (the [torch] extra)")
ort = pytest.importorskip("onnxruntime")


def _train(out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    result = _run(sys.executable, EXAMPLE / "train.py", "--out", out, *extra)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture(scope="module")
def dataset() -> ModuleType:
    """examples/mnist/dataset.py, imported by path."""
    return _load("dataset")


@pytest.fixture(scope="module")
def trained(mnist_trained: Path) -> dict[str, Any]:
    """The metrics of the real trained weights in examples/mnist/build/."""
    metrics: dict[str, Any] = json.loads((BUILD / "metrics.json").read_text(encoding="utf-8"))
    return metrics


def test_architecture_is_the_classic_cnn() -> None:
    """The model has the classic layers (93,322 parameters) and outputs probabilities."""
    model = _load("model").factory().eval()
    assert sum(p.numel() for p in model.parameters()) == 93_322
    kinds = [type(m).__name__ for m in [*model.features, *model.classifier]]
    assert kinds == [
        *("Conv2d", "ReLU", "MaxPool2d", "Conv2d", "ReLU", "MaxPool2d", "Conv2d", "ReLU"),
        *("Flatten", "Linear", "ReLU", "Linear"),
    ]
    with torch.no_grad():
        out = model(torch.rand(3, 1, 28, 28))
    assert out.shape == (3, 10)
    assert torch.all(out >= 0)
    torch.testing.assert_close(out.sum(1), torch.ones(3))


def test_split_is_deterministic_and_disjoint(dataset: ModuleType) -> None:
    """7,500 train / 1,500 test digits, the same on every load, no digit in both."""
    (x_train, y_train), (x_test, y_test) = dataset.load_split()
    assert (len(x_train), len(y_train), len(x_test), len(y_test)) == (7500, 7500, 1500, 1500)
    assert set(np.unique(y_train)) == set(np.unique(y_test)) == set(range(10))
    (x_again, _), (x_test_again, _) = dataset.load_split()
    assert np.array_equal(x_train, x_again)
    assert np.array_equal(x_test, x_test_again)
    train_keys = {image.tobytes() for image in x_train}
    assert not any(image.tobytes() in train_keys for image in x_test)


@pytest.mark.slow
def test_short_training_is_reproducible_and_cached(tmp_path: Path) -> None:
    """A short run (2 epochs, 1,500 digits) learns, repeats bit-exactly, --reuse caches it."""
    short = ("--epochs", "2", "--limit", "1500")
    _train(tmp_path / "a", *short)
    _train(tmp_path / "b", *short)
    first = torch.load(tmp_path / "a" / "weights.pt", weights_only=True)
    second = torch.load(tmp_path / "b" / "weights.pt", weights_only=True)
    assert all(torch.equal(first[k], second[k]) for k in first)
    metrics = json.loads((tmp_path / "a" / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["test_accuracy"] > 0.7, metrics  # 0.814 with torch 2.13 CPU; chance is 0.1
    assert "reusing" in _train(tmp_path / "a", *short, "--reuse").stdout
    changed = _train(tmp_path / "a", "--epochs", "1", "--limit", "100", "--reuse")
    assert "reusing" not in changed.stdout


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_converted_model_accuracy(
    trained: dict[str, Any], dataset: ModuleType, mnist_repo: Path
) -> None:
    """The trained model, converted by `shipyard convert`, scores >= 97.5% on the test split."""
    assert trained["test_accuracy"] >= 0.975, trained
    _, (images, labels) = dataset.load_split()
    inputs = dataset.to_input(images)
    repo = mnist_repo
    report = json.loads((repo / "mnist" / "1" / "report.json").read_text(encoding="utf-8"))
    assert report["parity"]["passed"]
    assert report["parity"]["batch"] == 32
    assert report["parity"]["outputs"][0]["top1_agreement"] == 1.0
    session = ort.InferenceSession(str(repo / "mnist" / "1" / "model.onnx"))
    (probabilities,) = session.run(None, {"input": inputs})
    assert probabilities.shape == (1500, 10)
    np.testing.assert_allclose(probabilities.sum(1), 1.0, atol=1e-5)
    accuracy = float((probabilities.argmax(1) == labels).mean())
    assert accuracy >= 0.975, accuracy


def test_pngs_hold_the_test_digits(dataset: ModuleType, tmp_path: Path) -> None:
    """make_pngs.py writes the first test digits as 28x28 grayscale PNGs, labels in the name."""
    image_module = pytest.importorskip("PIL.Image", reason="make_pngs.py needs Pillow")
    result = _run(sys.executable, EXAMPLE / "make_pngs.py", "--out", tmp_path, "--count", "12")
    assert result.returncode == 0, result.stderr
    _, (images, labels) = dataset.load_split()
    files = sorted(tmp_path.glob("*.png"))
    assert [f.name for f in files] == [f"{i:04d}-{labels[i]}.png" for i in range(12)]
    for index, path in enumerate(files):
        with image_module.open(path) as png:
            assert png.mode == "L"
            assert np.array_equal(np.asarray(png), images[index])


def test_labels_file_matches_outputs() -> None:
    """labels.txt names the 10 output classes in order, one per line."""
    lines = (EXAMPLE / "labels.txt").read_text(encoding="utf-8").splitlines()
    assert lines == [str(d) for d in range(10)]
