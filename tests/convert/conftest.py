"""Fixtures for conversion tests: tiny real models, a CLI runner and an HTTP inference helper."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
import pytest
from click.testing import CliRunner, Result

from shipyard.cli import main

CNN_MODULE = textwrap.dedent(
    """
    import torch
    from torch import nn


    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3)
            self.fc = nn.Linear(4 * 13 * 13, 10)

        def forward(self, x):
            x = torch.max_pool2d(torch.relu(self.conv(x)), 2)
            return torch.softmax(self.fc(x.flatten(1)), -1)


    class Eig(nn.Module):
        def forward(self, x):
            return torch.linalg.eigvals(x @ x.transpose(-1, -2)).real


    def make():
        torch.manual_seed(0)
        return Net()


    def make_unsupported():
        return Eig()
    """
)


def run_cli(*args: str | Path) -> Result:
    """Run ``shipyard convert ARGS`` in-process and return click's result."""
    return CliRunner().invoke(main, ["convert", *map(str, args)], catch_exceptions=False)


def infer(url: str, model: str, name: str, data: npt.NDArray[Any]) -> dict[str, Any]:
    """POST one FP32 input to a served model; return ``{output name: array}``."""
    body = {
        "inputs": [
            {
                "name": name,
                "datatype": "FP32",
                "shape": list(data.shape),
                "data": data.ravel().tolist(),
            }
        ]
    }
    response = httpx.post(f"{url}/v2/models/{model}/infer", json=body, timeout=30)
    assert response.status_code == 200, response.text
    return {
        out["name"]: np.asarray(out["data"]).reshape(out["shape"])
        for out in response.json()["outputs"]
    }


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """An empty model repository."""
    path = tmp_path / "repo"
    path.mkdir()
    return path


@pytest.fixture
def cnn_module(tmp_path: Path) -> Path:
    """A module file with ``make()`` (a tiny MNIST-shaped CNN) and ``make_unsupported()``."""
    path = tmp_path / "net.py"
    path.write_text(CNN_MODULE, encoding="utf-8")
    return path
