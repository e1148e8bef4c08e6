"""The ONNX Runtime backend applies model.toml's session options."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from shipyard.backends.onnxruntime import OnnxRuntimeBackend
from shipyard.config import parse_model_config
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
