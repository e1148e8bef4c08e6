"""``shipyard serve`` with Python models, as a user runs it: the flag, the banner, shutdown."""

from __future__ import annotations

import re
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shipyard.testing import (
    identity_model,
    wait_until_blocking,
    write_model,
    write_python_model,
)
from tests.e2e.test_cli import Serve

SOURCE = """\
import shipyard


class Model(shipyard.PythonModel):
    def predict(self, batch):
        return {"OUTPUT0": batch["INPUT0"] + 1}
"""

CONFIG = """\
[python]
workers = 2

[[inputs]]
name = "INPUT0"
datatype = "FP32"
shape = [-1, 4]

[[outputs]]
name = "OUTPUT0"
datatype = "FP32"
shape = [-1, 4]
"""

BODY = {"inputs": [{"name": "INPUT0", "shape": [1, 4], "datatype": "FP32", "data": [1] * 4}]}


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    """A Python model ``plus_one`` beside an ONNX identity ``onnx``."""
    repo = tmp_path / "repo"
    write_python_model(repo, "plus_one", SOURCE, CONFIG)
    write_model(repo, "onnx", identity_model())
    return repo


@pytest.fixture
def serve() -> Iterator[Any]:
    """Start ``shipyard serve``; every process started is stopped at the end."""
    started: list[Serve] = []

    def _start(repository: Path, *args: str) -> Serve:
        process = Serve(repository, *args)
        started.append(process)
        return process

    yield _start
    for process in started:
        process.stop()


def children(pid: int) -> set[int]:
    """The direct child processes of ``pid`` (its Python workers)."""
    found = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found.update(int(p) for p in text)
    return found


def test_flag_runs_python_models_and_the_banner_says_so(repository: Path, serve: Any) -> None:
    """With --allow-python-models the banner says Python models run and the model serves;
    SIGTERM stops the server and its worker processes, exit status 0."""
    server = serve(repository, "--allow-python-models")
    url = server.wait_for_url()
    stdout, _ = server.output()
    assert "Python models allowed (--allow-python-models)" in stdout
    answer = httpx.post(f"{url}/v2/models/plus_one/infer", json=BODY, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.json()["outputs"][0]["data"] == [2.0] * 4
    workers = children(server.process.pid)
    assert len(workers) == 2
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=30) == 0
    # Each worker exits by itself once the server closes (or loses) its socket.
    wait_until_blocking(lambda: not any(alive(pid) for pid in workers), "the workers exit", 30)


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie waiting to be reaped is not)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "zombie" not in status


def test_without_the_flag_the_table_names_it(repository: Path, serve: Any) -> None:
    """Without the flag the model table shows the Python model UNAVAILABLE naming the flag,
    the banner says nothing of Python models, and the ONNX model serves."""
    server = serve(repository)
    # Not ready (a model is unavailable): wait for the banner's last line instead.
    wait_until_blocking(
        lambda: any("Press Ctrl-C" in line for line in server.stdout), "the banner", 60
    )
    stdout, _ = server.output()
    url = re.search(r"HTTP\s+(http://127\.0\.0\.1:\d+)", stdout)
    assert url is not None, stdout
    line = next(line for line in stdout.splitlines() if "plus_one" in line)
    assert "UNAVAILABLE" in line
    assert "--allow-python-models" in stdout.split("plus_one", 1)[1]
    assert "Python models allowed" not in stdout
    assert httpx.get(f"{url.group(1)}/v2/models/onnx/ready", timeout=5).status_code == 200
    assert httpx.get(f"{url.group(1)}/v2/health/ready", timeout=5).status_code == 503


def test_environment_variable_allows_python_models(
    repository: Path, serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SHIPYARD_ALLOW_PYTHON_MODELS=1 is the flag, for containers."""
    monkeypatch.setenv("SHIPYARD_ALLOW_PYTHON_MODELS", "1")
    server = serve(repository)
    url = server.wait_for_url()
    answer = httpx.post(f"{url}/v2/models/plus_one/infer", json=BODY, timeout=10)
    assert answer.status_code == 200, answer.text
