"""Python steps in the pipeline: checked against the model's signature, refused offline."""

from __future__ import annotations

import asyncio
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shipyard.config import parse_model_config
from shipyard.errors import ConfigError
from shipyard.processing import build_pipeline
from shipyard.types import DataType, TensorSpec

INPUTS = (TensorSpec("a", DataType.FP32, (-1, 4)), TensorSpec("b", DataType.FP32, (-1, 4)))
OUTPUTS = (TensorSpec("y", DataType.FP32, (-1, 4)), TensorSpec("z", DataType.FP32, (-1, 4)))

PRE = """
[[preprocess]]
kind = "python"
function = "steps:pre"
targets = {targets}
[[preprocess.inputs]]
name = "{name}"
datatype = "INT32"
shape = [-1, 4]
"""
POST = """
[[postprocess]]
kind = "python"
function = "steps:post"
sources = {sources}
[[postprocess.outputs]]
name = "{name}"
datatype = "FP32"
shape = [-1, 1]
"""


class Echo:
    """A StepRunner that answers every wanted output with ones (records its calls)."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, Any], list[str]]] = []

    async def submit(
        self, inputs: dict[str, Any], outputs: Sequence[str], timeout_us: int = 0
    ) -> dict[str, Any]:
        """Record the call; return ones of each input's batch size."""
        self.calls.append((inputs, list(outputs)))
        rows = next(iter(inputs.values())).shape[0]
        return {name: np.ones((rows, 4), np.float32) for name in outputs}


def config(text: str) -> Any:
    """A ModelConfig from model.toml text."""
    return parse_model_config("m", tomllib.loads(text))


def test_signature_with_python_steps(tmp_path: Path) -> None:
    """The pre step's input replaces the inputs it feeds; the post step's output replaces
    the outputs it reads; the others pass through."""
    cfg = config(
        PRE.format(targets='["a"]', name="raw") + POST.format(sources='["y", "a"]', name="s")
    )
    pipeline = build_pipeline(cfg, tmp_path, INPUTS, OUTPUTS, [Echo()], [Echo()])
    assert pipeline is not None
    assert [s.name for s in pipeline.inputs] == ["b", "raw"]
    assert [s.name for s in pipeline.outputs] == ["z", "s"]
    assert pipeline.model_outputs(["s"]) == ["y"]
    assert pipeline.model_outputs(["z", "s"]) == ["z", "y"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (PRE.format(targets='["nope"]', name="raw"), "target 'nope' is not a model input"),
        (PRE.format(targets='["a"]', name="b"), "input name 'b' is also a model input"),
        (POST.format(sources='["nope"]', name="s"), "source 'nope' is neither a model output"),
        (POST.format(sources='["y"]', name="z"), "two outputs are named 'z'"),
        (
            PRE.format(targets='["a"]', name="r1") + PRE.format(targets='["a"]', name="r2"),
            "model input 'a' is already fed",
        ),
    ],
)
def test_wiring_mistakes_are_config_errors(tmp_path: Path, text: str, message: str) -> None:
    """A step that feeds or reads what the model does not have, or clashes, names itself."""
    cfg = config(text)
    with pytest.raises(ConfigError, match=message):
        build_pipeline(
            cfg,
            tmp_path,
            INPUTS,
            OUTPUTS,
            [Echo() for _ in cfg.python_preprocess],
            [Echo() for _ in cfg.python_postprocess],
        )


def test_offline_tools_refuse_python_steps(tmp_path: Path) -> None:
    """Without runners (optimize, convert: no repository code runs) the pipeline is refused,
    naming the steps and the flag."""
    cfg = config(PRE.format(targets='["a"]', name="raw"))
    with pytest.raises(ConfigError, match=r"preprocess\[0\] \(steps:pre\).*--allow-python-models"):
        build_pipeline(cfg, tmp_path, INPUTS, OUTPUTS)


def test_post_step_gets_model_outputs_and_inputs(tmp_path: Path) -> None:
    """A post step reading a model input receives the processed model input."""
    runner = Echo()
    cfg = config(POST.format(sources='["y", "a"]', name="s"))
    pipeline = build_pipeline(cfg, tmp_path, INPUTS, OUTPUTS, [], [runner])
    assert pipeline is not None
    a = np.full((2, 4), 3, np.float32)
    y = np.full((2, 4), 5, np.float32)
    out = asyncio.run(pipeline.postprocess({"y": y}, {"a": a, "b": a}, ["s"]))
    ((inputs, wanted),) = runner.calls
    assert wanted == ["s"]
    np.testing.assert_array_equal(inputs["a"], a)
    np.testing.assert_array_equal(inputs["y"], y)
    assert out["s"].shape == (2, 4)
