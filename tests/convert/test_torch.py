"""PyTorch sources (factory, --weights, TorchScript, torch.export): converted, served, queried."""

from __future__ import annotations

import importlib.util
import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shipyard.testing import RunningServer, running_server
from tests.convert.conftest import CNN_MODULE, infer, run_cli

torch = pytest.importorskip("torch")

SIGNATURE = "input:FP32:-1,1,28,28"


def _load_make(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location("cnn_for_test", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make


@pytest.fixture(scope="module")
def torch_repo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Convert the CNN four ways (factory, factory+weights, TorchScript, .pt2) into one repo."""
    root = tmp_path_factory.mktemp("torch")
    module = root / "net.py"
    module.write_text(CNN_MODULE, encoding="utf-8")
    repo = root / "repo"
    model = _load_make(module)().eval()
    altered = _load_make(module)().eval()
    with torch.no_grad():
        altered.fc.weight.mul_(3.0)
    torch.save(altered.state_dict(), root / "weights.pt")
    with warnings.catch_warnings():  # torch.jit.script is deprecated, yet users still have files
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(model).save(str(root / "cnn.ts.pt"))
        example = torch.randn(2, 1, 28, 28)
        program = torch.export.export(
            model, (example,), dynamic_shapes=({0: torch.export.Dim("batch")},)
        )
        torch.export.save(program, str(root / "cnn.pt2"))
    runs = {
        "factory": run_cli(
            f"{module}:make", "--name", "factory", "--repo", repo, "--input", SIGNATURE
        ),
        "weights": run_cli(
            f"{module}:make",
            "--name",
            "weights",
            "--repo",
            repo,
            "--input",
            SIGNATURE,
            "--weights",
            root / "weights.pt",
            "--exporter",
            "legacy",
        ),
        "script": run_cli(
            root / "cnn.ts.pt", "--name", "script", "--repo", repo, "--input", SIGNATURE
        ),
        "program": run_cli(root / "cnn.pt2", "--name", "program", "--repo", repo),
    }
    return {"repo": repo, "runs": runs, "model": model, "altered": altered}


@pytest.fixture(scope="module")
def torch_server(torch_repo: dict[str, Any]) -> Iterator[RunningServer]:
    """A real server on the converted PyTorch models."""
    with running_server(torch_repo["repo"]) as server:
        yield server


@pytest.mark.parametrize("name", ["factory", "weights", "script", "program"])
def test_conversion_passes_parity_and_publishes(torch_repo: dict[str, Any], name: str) -> None:
    """Each PyTorch source kind converts, passes parity and publishes version 1 with a report."""
    result = torch_repo["runs"][name]
    assert result.exit_code == 0, result.output
    assert "parity: passed" in result.output
    report = json.loads((torch_repo["repo"] / name / "1" / "report.json").read_text())
    assert report["parity"]["passed"] is True
    assert report["parity"]["outputs"][0]["top1_agreement"] == 1.0
    assert report["inputs"] == [
        {
            "name": "input" if name != "program" else "x",
            "datatype": "FP32",
            "shape": [-1, 1, 28, 28],
        }
    ]
    assert report["conversion"]["exporter"] == (
        "dynamo" if name in ("factory", "program") else "legacy"
    )


@pytest.mark.parametrize(
    ("name", "source"),
    [("factory", "model"), ("weights", "altered"), ("script", "model"), ("program", "model")],
)
def test_served_answers_match_torch(
    torch_repo: dict[str, Any], torch_server: RunningServer, name: str, source: str
) -> None:
    """The served ONNX model answers a batch of 3 as the PyTorch model does."""
    data = np.random.default_rng(1).standard_normal((3, 1, 28, 28)).astype(np.float32)
    with torch.no_grad():
        expected = torch_repo[source](torch.from_numpy(data)).numpy()
    input_name = "x" if name == "program" else "input"
    outputs = infer(torch_server.url, name, input_name, data)
    np.testing.assert_allclose(outputs["output"], expected, rtol=1e-4, atol=1e-5)


def test_weights_are_loaded(torch_repo: dict[str, Any], torch_server: RunningServer) -> None:
    """--weights changes the answers: the altered state dict was really loaded."""
    data = np.random.default_rng(2).standard_normal((2, 1, 28, 28)).astype(np.float32)
    plain = infer(torch_server.url, "factory", "input", data)["output"]
    weighted = infer(torch_server.url, "weights", "input", data)["output"]
    assert not np.allclose(plain, weighted, atol=1e-3)
