"""Ensembles on a real server: Python → ONNX → Python wired by tensor names.

``encode`` (Python) turns text into 16 numbers, ``simple`` (ONNX, Triton's add/sub) adds and
subtracts an offset, ``pool`` (Python) averages the sum. The ensemble ``pipeline`` chains
them; its answer must equal running the three models by hand.
"""

from __future__ import annotations

import concurrent.futures
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

from shipyard.testing import (
    RunningServer,
    add_sub_model,
    running_server,
    wait_until_blocking,
    write_model,
    write_python_model,
)
from tests.integration.transports import (
    TRANSPORTS,
    expected_status,
    infer_input,
    make_client,
    model_metadata,
    model_stats,
    output_array,
    repository_index,
)

ENCODE = """\
import numpy as np
import shipyard


class Model(shipyard.PythonModel):
    def predict(self, batch):
        rows = []
        for text in batch["TEXT"]:
            codes = list(text[:16]) + [0] * (16 - len(text[:16]))
            rows.append(codes)
        return {"CODES": np.array(rows, dtype=np.float32) / 100}
"""

POOL = """\
import shipyard


class Model(shipyard.PythonModel):
    def predict(self, batch):
        return {"MEAN": batch["VEC"].mean(axis=1, keepdims=True)}
"""


def signature(
    inputs: list[tuple[str, str, list[int]]], outputs: list[tuple[str, str, list[int]]]
) -> str:
    """model.toml text declaring ``inputs`` and ``outputs`` (name, datatype, shape)."""
    text = "max_batch_size = 8\n"
    for kind, specs in (("inputs", inputs), ("outputs", outputs)):
        for name, datatype, shape in specs:
            text += f'\n[[{kind}]]\nname = "{name}"\ndatatype = "{datatype}"\nshape = {shape}\n'
    return text


PIPELINE = """\
backend = "ensemble"

[[step]]
model = "encode"
input_map = { TEXT = "text" }
output_map = { CODES = "codes" }

[[step]]
model = "simple"
input_map = { INPUT0 = "codes", INPUT1 = "offset" }
output_map = { OUTPUT0 = "sum", OUTPUT1 = "difference" }

[[step]]
model = "pool"
input_map = { VEC = "sum" }
output_map = { MEAN = "mean" }
"""


def write_ensemble(repo: Path, name: str, config: str) -> None:
    """An ensemble folder: model.toml and the empty version folder 1/."""
    (repo / name / "1").mkdir(parents=True)
    (repo / name / "model.toml").write_text(config)


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The three step models and the ensemble (named to sort before its steps)."""
    repo = tmp_path_factory.mktemp("ensemble")
    write_python_model(
        repo, "encode", ENCODE, signature([("TEXT", "BYTES", [-1])], [("CODES", "FP32", [-1, 16])])
    )
    write_model(repo, "simple", add_sub_model())
    write_python_model(
        repo, "pool", POOL, signature([("VEC", "FP32", [-1, 16])], [("MEAN", "FP32", [-1, 1])])
    )
    write_ensemble(repo, "a_pipeline", PIPELINE)
    return repo


@pytest.fixture(scope="module")
def server(repository: Path) -> Iterator[RunningServer]:
    """A server running the ensemble and its steps."""
    with running_server(repository, allow_python_models=True) as running:
        yield running


TEXTS = np.array([b"hello", b"an ensemble of models", b""], dtype=object)
OFFSET = np.arange(48, dtype=np.float32).reshape(3, 16) / 10


def infer(transport: str, server: RunningServer, model: str, **arrays: np.ndarray) -> Any:
    """One request to ``model`` with ``arrays`` as inputs."""
    client = make_client(transport, server)
    try:
        return client.infer(model, [infer_input(transport, n, a) for n, a in arrays.items()])
    finally:
        client.close()


def by_hand(transport: str, server: RunningServer) -> dict[str, np.ndarray]:
    """The ensemble's outputs computed by calling each step model through the server."""
    codes = output_array(transport, infer(transport, server, "encode", TEXT=TEXTS), "CODES")
    assert codes is not None
    summed = infer(transport, server, "simple", INPUT0=codes, INPUT1=OFFSET)
    total = output_array(transport, summed, "OUTPUT0")
    difference = output_array(transport, summed, "OUTPUT1")
    assert total is not None
    assert difference is not None
    mean = output_array(transport, infer(transport, server, "pool", VEC=total), "MEAN")
    assert mean is not None
    return {"mean": mean, "difference": difference}


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_ensemble_equals_its_steps_run_by_hand(transport: str, server: RunningServer) -> None:
    """One ensemble request returns what the three step models return when chained by hand,
    and what NumPy computes."""
    result = infer(transport, server, "a_pipeline", text=TEXTS, offset=OFFSET)
    expected = by_hand(transport, server)
    for name, value in expected.items():
        np.testing.assert_array_equal(output_array(transport, result, name), value)
    codes = np.array(
        [list(t[:16]) + [0] * (16 - len(t[:16])) for t in TEXTS], dtype=np.float32
    ) / np.float32(100)
    np.testing.assert_allclose(expected["mean"], (codes + OFFSET).mean(1, keepdims=True), rtol=1e-6)
    np.testing.assert_allclose(expected["difference"], codes - OFFSET, rtol=1e-6)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_ensemble_metadata_is_inferred_from_the_wiring(
    transport: str, server: RunningServer
) -> None:
    """Inputs are the tensors no step produces, outputs those no step consumes."""
    client = make_client(transport, server)
    try:
        meta = model_metadata(transport, client, "a_pipeline")
    finally:
        client.close()
    assert meta["platform"] == "ensemble"
    assert meta["inputs"] == [
        {"name": "text", "datatype": "BYTES", "shape": [-1]},
        {"name": "offset", "datatype": "FP32", "shape": [-1, 16]},
    ]
    assert [o["name"] for o in meta["outputs"]] == ["difference", "mean"]


def test_ensemble_requests_batch_in_the_steps(server: RunningServer) -> None:
    """Concurrent ensemble requests each get their own answer; the ensemble counts them."""
    client = make_client("http", server)
    before = model_stats("http", client, "a_pipeline")[0]
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        results = list(
            pool.map(
                lambda i: infer(
                    "http",
                    server,
                    "a_pipeline",
                    text=TEXTS[i % 3 : i % 3 + 1],
                    offset=OFFSET[:1] * i,
                ),
                range(6),
            )
        )
    for i, result in enumerate(results):
        mean = output_array("http", result, "mean")
        codes = np.array([list(TEXTS[i % 3][:16]) + [0] * (16 - len(TEXTS[i % 3][:16]))])
        expected = (codes.astype(np.float32) / 100 + OFFSET[:1] * i).mean(1, keepdims=True)
        np.testing.assert_allclose(mean, expected, rtol=1e-6)
    after = model_stats("http", client, "a_pipeline")[0]
    client.close()
    assert after["inference_count"] - before["inference_count"] == 6
    assert after["success"] - before["success"] == 6


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_bad_input_to_an_ensemble_is_refused(transport: str, server: RunningServer) -> None:
    """The ensemble validates its own inputs: a missing one is a 400 naming it."""
    with pytest.raises(InferenceServerException) as caught:
        infer(transport, server, "a_pipeline", text=TEXTS)
    assert caught.value.status() == expected_status(transport, "invalid")
    assert "offset" in str(caught.value)


def test_unloading_a_step_makes_the_ensemble_unavailable(server: RunningServer) -> None:
    """Without its ONNX step the ensemble is not ready (503 naming the step); loading the
    step again brings it back."""
    with httpx.Client(base_url=server.url, timeout=60) as client:
        assert client.post("/v2/repository/models/simple/unload").status_code == 200
        try:
            assert client.get("/v2/models/a_pipeline/ready").status_code != 200
            body = {
                "inputs": [
                    {"name": "text", "shape": [1], "datatype": "BYTES", "data": ["x"]},
                    {"name": "offset", "shape": [1, 16], "datatype": "FP32", "data": [0] * 16},
                ]
            }
            answer = client.post("/v2/models/a_pipeline/infer", json=body)
            assert answer.status_code == 503
            assert "'simple'" in answer.json()["error"]
        finally:
            assert client.post("/v2/repository/models/simple/load").status_code == 200
        wait_until_blocking(
            lambda: client.get("/v2/models/a_pipeline/ready").status_code == 200,
            "the ensemble is ready again",
        )
        assert client.post("/v2/models/a_pipeline/infer", json=body).status_code == 200


BROKEN = {
    "unknown_step": (
        'backend = "ensemble"\n[[step]]\nmodel = "nowhere"\n'
        'input_map = {x = "in"}\noutput_map = {y = "out"}\n',
        "'nowhere'",
    ),
    "bad_input_name": (
        'backend = "ensemble"\n[[step]]\nmodel = "pool"\n'
        'input_map = {WRONG = "in"}\noutput_map = {MEAN = "out"}\n',
        "input_map names 'WRONG', which is not an input",
    ),
    "unfed_input": (
        'backend = "ensemble"\n[[step]]\nmodel = "simple"\n'
        'input_map = {INPUT0 = "in"}\noutput_map = {OUTPUT0 = "out"}\n',
        "leaves input(s) INPUT1 unfed",
    ),
    "datatype_mismatch": (
        'backend = "ensemble"\n'
        '[[step]]\nmodel = "pool"\ninput_map = {VEC = "v"}\noutput_map = {MEAN = "m"}\n'
        '[[step]]\nmodel = "encode"\ninput_map = {TEXT = "m"}\noutput_map = {CODES = "c"}\n',
        "produces FP32 but it feeds an input of BYTES",
    ),
    "cycle_a": (
        'backend = "ensemble"\n[[step]]\nmodel = "cycle_b"\n'
        'input_map = {x = "in"}\noutput_map = {y = "out"}\n',
        "ensemble cycle",
    ),
    "cycle_b": (
        'backend = "ensemble"\n[[step]]\nmodel = "cycle_a"\n'
        'input_map = {x = "in"}\noutput_map = {y = "out"}\n',
        "ensemble cycle",
    ),
}


def test_broken_ensembles_are_unavailable_with_a_reason(repository: Path, tmp_path: Path) -> None:
    """Each wiring mistake leaves that ensemble UNAVAILABLE with a reason naming it, while
    the good ensemble and the step models serve."""
    repo = tmp_path / "repo"
    shutil.copytree(repository, repo)
    for name, (config, _) in BROKEN.items():
        write_ensemble(repo, name, config)
    with running_server(repo, allow_python_models=True) as running:
        client = make_client("http", running)
        rows = {r["name"]: r for r in repository_index("http", client)}
        client.close()
        for name, (_, reason) in BROKEN.items():
            assert rows[name]["state"] == "UNAVAILABLE", name
            assert reason in rows[name]["reason"], (name, rows[name]["reason"])
        assert rows["a_pipeline"]["state"] == "READY"
        result = infer("http", running, "a_pipeline", text=TEXTS, offset=OFFSET)
        assert output_array("http", result, "mean") is not None
