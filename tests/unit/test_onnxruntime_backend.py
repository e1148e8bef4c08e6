"""The ONNX Runtime backend: model.toml's session options, and which run errors are whose."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from shipyard.backends.onnxruntime import OnnxRuntimeBackend
from shipyard.config import parse_model_config
from shipyard.errors import InternalError, InvalidInputError
from shipyard.testing.models import add_sub_model, write_model


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("sequential", ort.ExecutionMode.ORT_SEQUENTIAL),
        ("parallel", ort.ExecutionMode.ORT_PARALLEL),
    ],
)
def test_execution_mode_and_threads_reach_the_session(
    tmp_path: Path, mode: str, expected: ort.ExecutionMode
) -> None:
    """execution_mode and inter_op_threads are set on the session; results do not change."""
    path = write_model(tmp_path, "m", add_sub_model())
    table = {"onnxruntime": {"execution_mode": mode, "inter_op_threads": 2}}
    backend = OnnxRuntimeBackend(path, parse_model_config("m", table))
    options = backend._session.get_session_options()
    assert options.execution_mode == expected
    assert options.inter_op_num_threads == 2
    a = np.arange(16, dtype=np.float32).reshape(1, 16)
    total, difference = backend.run({"INPUT0": a, "INPUT1": a}, ["OUTPUT0", "OUTPUT1"])
    np.testing.assert_array_equal(total, 2 * a)
    np.testing.assert_array_equal(difference, 0 * a)


def reshape_to_three(node_name: str) -> onnx.ModelProto:
    """``y = Reshape(x, [3])`` for an x of any length: the model fails unless x has 3 elements."""
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["y"], name=node_name)],
        "reshape",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])],
        initializer=[helper.make_tensor("shape", TensorProto.INT64, [1], [3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_a_model_failure_is_internal_even_when_its_message_says_invalid(tmp_path: Path) -> None:
    """A model's own runtime error is a 500 (InternalError), though its text contains "Invalid"."""
    path = write_model(tmp_path, "m", reshape_to_three("InvalidateCacheReshape"))
    backend = OnnxRuntimeBackend(path, parse_model_config("m", {}))
    np.testing.assert_array_equal(backend.run({"x": np.ones(3, np.float32)}, ["y"])[0], 1.0)
    with pytest.raises(InternalError, match="ONNX Runtime failed") as info:
        backend.run({"x": np.ones(4, np.float32)}, ["y"])
    assert "InvalidateCacheReshape" in info.value.message  # the text the old check matched
    assert not isinstance(info.value, InvalidInputError)


@pytest.mark.parametrize(
    ("feed", "match"),
    [
        (np.ones(3, np.float64), "Unexpected input data type"),
        (np.ones((3, 1), np.float32), "Invalid rank"),
    ],
    ids=["datatype", "rank"],
)
def test_onnx_runtime_refusing_the_feed_is_bad_input(
    tmp_path: Path, feed: npt.NDArray[np.float64], match: str
) -> None:
    """ONNX Runtime's InvalidArgument (the feed does not fit the model) is a 400."""
    path = write_model(tmp_path, "m", reshape_to_three("r"))
    backend = OnnxRuntimeBackend(path, parse_model_config("m", {}))
    with pytest.raises(InvalidInputError, match=f"the model rejected the input: .*{match}"):
        backend.run({"x": feed}, ["y"])
