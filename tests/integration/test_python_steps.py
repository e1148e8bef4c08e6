"""Python pre- and post-processing steps around an ONNX model, on a real server.

The model is Triton's add/sub (``simple``). A Python pre step splits the client's PAIR into
INPUT0 and INPUT1; a Python post step reads OUTPUT0, OUTPUT1 and the model input INPUT0 and
returns TOTAL and a BYTES verdict. The client sees PAIR in, TOTAL and VERDICT (and nothing of
the model's own tensors) out.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from shipyard.testing import RunningServer, add_sub_model, running_server, write_model
from tests.integration.transports import (
    TRANSPORTS,
    infer_input,
    make_client,
    model_metadata,
    output_array,
    repository_index,
)

STEPS = """\
import numpy as np


def split(batch):
    pair = batch["PAIR"].astype(np.float32)
    return {"INPUT0": pair[:, 0, :], "INPUT1": pair[:, 1, :]}


def summarize(batch):
    total = (batch["OUTPUT0"] + batch["OUTPUT1"]).sum(axis=1, keepdims=True)  # = 2 * sum(INPUT0)
    verdict = np.array(
        [b"big" if t > 100 else b"small" for t in total[:, 0]], dtype=object
    )
    assert np.allclose(total, 2 * batch["INPUT0"].sum(axis=1, keepdims=True))
    return {"TOTAL": total, "VERDICT": verdict}
"""

CONFIG = """\
max_batch_size = 8

[[preprocess]]
kind = "python"
function = "steps:split"
targets = ["INPUT0", "INPUT1"]
[[preprocess.inputs]]
name = "PAIR"
datatype = "INT32"
shape = [-1, 2, 16]

[[postprocess]]
kind = "python"
function = "steps:summarize"
sources = ["OUTPUT0", "OUTPUT1", "INPUT0"]
[[postprocess.outputs]]
name = "TOTAL"
datatype = "FP32"
shape = [-1, 1]
[[postprocess.outputs]]
name = "VERDICT"
datatype = "BYTES"
shape = [-1]
"""


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``simple`` with its Python steps in the version folder."""
    repo = tmp_path_factory.mktemp("steps")
    path = write_model(repo, "simple", add_sub_model(), config=CONFIG)
    (path.parent / "steps.py").write_text(STEPS)
    return repo


@pytest.fixture(scope="module")
def server(repository: Path) -> Iterator[RunningServer]:
    """A server that runs Python steps."""
    with running_server(repository, allow_python_models=True) as running:
        yield running


def pair(seed: int, rows: int = 1) -> np.ndarray:
    """A PAIR input of ``rows`` rows."""
    return np.random.default_rng(seed).integers(0, 10, size=(rows, 2, 16), dtype=np.int32)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_steps_run_around_the_model(transport: str, server: RunningServer) -> None:
    """TOTAL and VERDICT are what the steps compute from the model's real outputs."""
    x = pair(1, rows=3)
    client = make_client(transport, server)
    try:
        result = client.infer("simple", [infer_input(transport, "PAIR", x)])
    finally:
        client.close()
    total = output_array(transport, result, "TOTAL")
    expected = 2 * x[:, 0, :].sum(axis=1, keepdims=True).astype(np.float32)
    np.testing.assert_array_equal(total, expected)
    verdict = output_array(transport, result, "VERDICT")
    assert verdict is not None
    assert verdict.tolist() == [b"big" if t > 100 else b"small" for t in expected[:, 0]]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_the_client_sees_the_steps_signature(transport: str, server: RunningServer) -> None:
    """Metadata shows PAIR in and TOTAL, VERDICT out; the model's own tensors are hidden."""
    client = make_client(transport, server)
    try:
        meta = model_metadata(transport, client, "simple")
    finally:
        client.close()
    assert meta["inputs"] == [{"name": "PAIR", "datatype": "INT32", "shape": [-1, 2, 16]}]
    assert [o["name"] for o in meta["outputs"]] == ["TOTAL", "VERDICT"]


def test_concurrent_requests_each_get_their_own_answer(server: RunningServer) -> None:
    """Requests batched through the steps and the model are split back correctly."""
    inputs = [pair(seed) for seed in range(12)]

    def one(x: np.ndarray) -> np.ndarray:
        client = make_client("http", server)
        try:
            result = client.infer("simple", [infer_input("http", "PAIR", x)])
        finally:
            client.close()
        total = output_array("http", result, "TOTAL")
        assert total is not None
        return total

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        totals = list(pool.map(one, inputs))
    for x, total in zip(inputs, totals, strict=True):
        np.testing.assert_array_equal(total, 2 * x[:, 0, :].sum(axis=1, keepdims=True))


def test_python_steps_need_the_flag(repository: Path) -> None:
    """Without allow_python_models an ONNX model with Python steps is UNAVAILABLE, and the
    reason names the flag."""
    with running_server(repository) as running:
        client = make_client("http", running)
        (row,) = [r for r in repository_index("http", client) if r["name"] == "simple"]
        client.close()
        assert row["state"] == "UNAVAILABLE"
        assert "Python steps" in row["reason"]
        assert "--allow-python-models" in row["reason"]
        with httpx.Client(base_url=running.url) as http:
            assert http.get("/v2/models/simple/ready").status_code != 200
