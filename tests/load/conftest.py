"""Fixtures of the tests under load: a model of known cost, calibrated on this machine."""

from __future__ import annotations

import time

import numpy as np
import onnx
import pytest

from shipyard.testing import slow_model

#: A slow model's settings: one instance on one thread, no batching, a short queue.
ONE_AT_A_TIME = """\
max_batch_size = 0
[dynamic_batching]
max_queue_size = {queue}
[onnxruntime]
intra_op_threads = 1
"""

#: One request for a slow model (INPUT0 FP32 [1, 4]).
ROW = {"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [1, 4], "data": [1.0] * 4}]}


def calibrated(seconds: float) -> onnx.ModelProto:
    """A slow model computing for about ``seconds`` per execution on this machine."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    probe = 50
    session = ort.InferenceSession(
        slow_model(probe).SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    row = np.zeros((1, 4), np.float32)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        session.run(None, {"INPUT0": row})
        best = min(best, time.perf_counter() - start)
    return slow_model(max(1, round(probe * seconds / best)))


@pytest.fixture(scope="session")
def model_20ms() -> onnx.ModelProto:
    """A slow model of about 20 ms per execution."""
    return calibrated(0.02)
