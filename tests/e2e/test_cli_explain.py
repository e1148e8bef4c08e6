"""``shipyard explain`` as a user runs it: a subprocess against a real server."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from shipyard.testing import RunningServer, running_server, write_model
from shipyard.testing.processing import image_bytes, mean_bucket_model

SHIPYARD = str(Path(sys.executable).parent / "shipyard")
CONFIG = """
[[preprocess]]
input = "image"
target = "input"
steps = [{op = "decode_image", mode = "L"}, {op = "scale", factor = 0.00392156862745098},
         {op = "layout", order = "NCHW"}]

[[postprocess]]
output = "probabilities"
labels = "labels.txt"
steps = [{op = "softmax"}]
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server with the processed mean-brightness classifier ``digits``."""
    repo = tmp_path_factory.mktemp("cli-explain") / "repo"
    repo.mkdir()
    write_model(repo, "digits", mean_bucket_model(output="probabilities"), config=CONFIG)
    (repo / "digits" / "labels.txt").write_text("\n".join(map(str, range(10))), "utf-8")
    with running_server(repo, grpc=False) as running:
        yield running


def shipyard(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI with a bounded wait."""
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run(
        [SHIPYARD, *args], capture_output=True, text=True, timeout=60, env=env, check=False
    )


def test_explain_prints_the_target_and_writes_the_heatmap(
    server: RunningServer, tmp_path: Path
) -> None:
    """Each image gets a line naming its target and batches, and --out writes one PNG per
    file (the second with -2 in its name)."""
    from PIL import Image

    pixels = np.zeros((28, 28), np.uint8)
    pixels[8:20, 12:24] = 204  # mean just under class 1's centre: hiding it lowers class 1
    square, dark = tmp_path / "square.png", tmp_path / "dark.png"
    square.write_bytes(image_bytes(pixels))
    dark.write_bytes(image_bytes(np.zeros((28, 28), np.uint8)))
    out = tmp_path / "heat.png"
    result = shipyard(
        "explain", server.url, "--model", "digits", str(square), str(dark),
        "--patch", "4", "--stride", "4", "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"{square}: image explained by occlusion for 1" in result.stdout
    assert "49 perturbations in 3 batches" in result.stdout
    for written in (out, tmp_path / "heat-2.png"):
        with Image.open(written) as picture:
            assert picture.size == (224, 224)


def test_explain_reports_a_bad_parameter_in_one_line(server: RunningServer, tmp_path: Path) -> None:
    """A 400 from the server is one line on stderr with the server's reason, exit code 2."""
    image = tmp_path / "x.png"
    image.write_bytes(image_bytes(np.zeros((28, 28), np.uint8)))
    result = shipyard("explain", server.url, "--model", "digits", str(image), "--patch", "40")
    assert result.returncode == 2
    assert "server answered 400" in result.stderr
    assert "larger than the image" in result.stderr
