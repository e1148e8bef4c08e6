"""``shipyard predict`` as a user runs it: a subprocess against a real server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from shipyard.testing import RunningServer, running_server, write_model
from shipyard.testing.processing import digit_image, image_bytes, mean_bucket_model

SHIPYARD = str(Path(sys.executable).parent / "shipyard")
CONFIG = """
[[preprocess]]
input = "image"
target = "input"
steps = [{op = "decode_image", mode = "L"}, {op = "resize", size = [28, 28]},
         {op = "scale", factor = 0.00392156862745098}, {op = "layout", order = "NCHW"}]

[[postprocess]]
output = "probabilities"
labels = "labels.txt"
steps = [{op = "softmax"}]
"""
NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server with the processed ``digits`` model (labels are digit names)."""
    repo = tmp_path_factory.mktemp("cli-predict") / "repo"
    repo.mkdir()
    write_model(repo, "digits", mean_bucket_model(output="probabilities"), config=CONFIG)
    (repo / "digits" / "labels.txt").write_text("\n".join(NAMES), encoding="utf-8")
    with running_server(repo, grpc=False) as running:
        yield running


def shipyard(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI with a bounded wait."""
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run(
        [SHIPYARD, *args], capture_output=True, text=True, timeout=60, env=env, check=False
    )


def test_predict_prints_labels_for_each_file(server: RunningServer, tmp_path: Path) -> None:
    """Each image file gets a row with its label, score and the runner-up classes."""
    seven, two = tmp_path / "seven.png", tmp_path / "two.png"
    seven.write_bytes(image_bytes(digit_image(0.75)))
    two.write_bytes(image_bytes(digit_image(0.25)))
    result = shipyard(
        "predict", server.url, "--model", "digits", str(seven), str(two), "--top-k", "2"
    )
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if ".png" in line]
    assert "seven" in rows[0]
    assert "two" in rows[1]
    assert "six" in rows[0] or "eight" in rows[0]  # the runner-up of top-2


def test_predict_reports_a_server_error(server: RunningServer, tmp_path: Path) -> None:
    """A file the server refuses gives its status and error message, exit code 2."""
    text = tmp_path / "note.txt"
    text.write_text("not an image", encoding="utf-8")
    result = shipyard("predict", server.url, "--model", "digits", str(text))
    assert result.returncode == 2
    assert "server answered 400" in result.stderr
    assert "takes images" in result.stderr


def test_predict_missing_file(server: RunningServer, tmp_path: Path) -> None:
    """A file that does not exist is named in a one-line error."""
    result = shipyard("predict", server.url, "--model", "digits", str(tmp_path / "nope.png"))
    assert result.returncode == 2
    assert "cannot read" in result.stderr
    assert "nope.png" in result.stderr


def test_predict_unreachable_server(tmp_path: Path) -> None:
    """A server that is not there gives a clear error, not a traceback."""
    image = tmp_path / "x.png"
    image.write_bytes(image_bytes(digit_image(0.5)))
    with socket.socket() as sock:  # a port that nothing listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = shipyard("predict", f"http://127.0.0.1:{port}", "--model", "digits", str(image))
    assert result.returncode == 2
    assert "cannot reach" in result.stderr
    assert "Traceback" not in result.stderr


def test_predict_takes_the_version_flag_and_its_old_name(
    server: RunningServer, tmp_path: Path
) -> None:
    """--version picks the version's route, as in every command; --model-version still works."""
    image = tmp_path / "seven.png"
    image.write_bytes(image_bytes(digit_image(0.75)))
    for flag in ("--version", "--model-version"):
        result = shipyard("predict", server.url, "--model", "digits", flag, "1", str(image))
        assert result.returncode == 0, result.stderr
        assert "seven" in result.stdout
    missing = shipyard("predict", server.url, "--model", "digits", "--version", "9", str(image))
    assert missing.returncode == 2
    assert "server answered 404" in missing.stderr
    clash = shipyard(
        "predict",
        server.url,
        "--model",
        "digits",
        "--version",
        "1",
        "--model-version",
        "2",
        str(image),
    )
    assert clash.returncode == 2
    assert "disagree" in clash.stderr
