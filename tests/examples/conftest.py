"""Fixtures shared by the example tests: the real trained MNIST CNN, converted to ONNX."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
MNIST = ROOT / "examples" / "mnist"
MNIST_BUILD = MNIST / "build"
SHIPYARD = str(Path(sys.executable).with_name("shipyard"))


def load_example(name: str, folder: Path = MNIST) -> ModuleType:
    """Import ``folder/name.py`` by path (the examples are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(
        f"example_{folder.name}_{name}", folder / f"{name}.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(*args: str | Path, timeout: float = 280) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing its text output; never raises on a non-zero exit."""
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="session")
def mnist_trained() -> Path:
    """The real trained weights in examples/mnist/build/ (the FULL training if not cached)."""
    result = run(sys.executable, MNIST / "train.py", "--out", MNIST_BUILD, "--reuse")
    assert result.returncode == 0, result.stdout + result.stderr
    return MNIST_BUILD / "weights.pt"


@pytest.fixture(scope="session")
def mnist_repo(mnist_trained: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository holding the trained MNIST CNN as ``mnist`` v1 (``shipyard convert``)."""
    repo = tmp_path_factory.mktemp("mnist") / "repo"
    result = run(
        SHIPYARD,
        "convert",
        f"{MNIST / 'model.py'}:factory",
        "--weights",
        mnist_trained,
        "--name",
        "mnist",
        "--repo",
        repo,
        "--input",
        "input:FP32:-1,1,28,28",
        "--sample",
        MNIST_BUILD / "sample.npz",  # written by train.py: 32 real test digits
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return repo
