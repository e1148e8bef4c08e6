"""Small ONNX models built with ``onnx.helper``, for tests, examples and benchmarks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from shipyard.types import DataType

__all__ = [
    "ONNX_TYPES",
    "add_sub_model",
    "cnn_model",
    "identity_model",
    "slow_model",
    "spin_model",
    "write_model",
    "write_python_model",
]

#: The ONNX element type of each datatype.
ONNX_TYPES = {
    DataType.BOOL: TensorProto.BOOL,
    DataType.UINT8: TensorProto.UINT8,
    DataType.UINT16: TensorProto.UINT16,
    DataType.UINT32: TensorProto.UINT32,
    DataType.UINT64: TensorProto.UINT64,
    DataType.INT8: TensorProto.INT8,
    DataType.INT16: TensorProto.INT16,
    DataType.INT32: TensorProto.INT32,
    DataType.INT64: TensorProto.INT64,
    DataType.FP16: TensorProto.FLOAT16,
    DataType.FP32: TensorProto.FLOAT,
    DataType.FP64: TensorProto.DOUBLE,
    DataType.BYTES: TensorProto.STRING,
}

Dims = list[int | str | None]


def _model(graph: onnx.GraphProto, opset: int = 17) -> onnx.ModelProto:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def identity_model(
    datatype: DataType = DataType.FP32, shape: Dims | None = None
) -> onnx.ModelProto:
    """``OUTPUT0 = INPUT0`` for any datatype (strings included); dim 0 dynamic by default."""
    dims: Dims = shape if shape is not None else ["batch", 4]
    elem = ONNX_TYPES[datatype]
    graph = helper.make_graph(
        [helper.make_node("Identity", ["INPUT0"], ["OUTPUT0"])],
        "identity",
        [helper.make_tensor_value_info("INPUT0", elem, dims)],
        [helper.make_tensor_value_info("OUTPUT0", elem, dims)],
    )
    return _model(graph)


def add_sub_model(datatype: DataType = DataType.FP32, shape: Dims | None = None) -> onnx.ModelProto:
    """Triton's "simple" model: ``OUTPUT0 = INPUT0 + INPUT1``, ``OUTPUT1 = INPUT0 - INPUT1``."""
    dims: Dims = shape if shape is not None else ["batch", 16]
    elem = ONNX_TYPES[datatype]
    graph = helper.make_graph(
        [
            helper.make_node("Add", ["INPUT0", "INPUT1"], ["OUTPUT0"]),
            helper.make_node("Sub", ["INPUT0", "INPUT1"], ["OUTPUT1"]),
        ],
        "add_sub",
        [helper.make_tensor_value_info(n, elem, dims) for n in ("INPUT0", "INPUT1")],
        [helper.make_tensor_value_info(n, elem, dims) for n in ("OUTPUT0", "OUTPUT1")],
    )
    return _model(graph)


def cnn_model(seed: int = 0) -> onnx.ModelProto:
    """The MNIST CNN's shape (Conv32-Conv64-Conv64-Dense64-Dense10) with random weights.

    Input ``input`` FP32 [-1, 1, 28, 28], output ``probabilities`` FP32 [-1, 10] (softmax).
    """
    rng = np.random.default_rng(seed)

    def weight(name: str, *shape: int) -> onnx.TensorProto:
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
        data = rng.normal(0, (2.0 / fan_in) ** 0.5, size=shape).astype(np.float32)
        return numpy_helper.from_array(data, name)

    def bias(name: str, size: int) -> onnx.TensorProto:
        return numpy_helper.from_array(np.zeros(size, np.float32), name)

    inits = [
        weight("c1w", 32, 1, 3, 3),
        bias("c1b", 32),
        weight("c2w", 64, 32, 3, 3),
        bias("c2b", 64),
        weight("c3w", 64, 64, 3, 3),
        bias("c3b", 64),
        weight("d1w", 576, 64),
        bias("d1b", 64),
        weight("d2w", 64, 10),
        bias("d2b", 10),
        numpy_helper.from_array(np.array([-1, 576], np.int64), "flat_shape"),
    ]
    # d1w/d2w are [in, out] for MatMul; the "fan_in" above uses shape[1:] which is fine for
    # an untrained model: only the shapes and the cost matter.
    nodes = [
        helper.make_node("Conv", ["input", "c1w", "c1b"], ["c1"], kernel_shape=[3, 3]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "c2w", "c2b"], ["c2"], kernel_shape=[3, 3]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("MaxPool", ["r2"], ["p2"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p2", "c3w", "c3b"], ["c3"], kernel_shape=[3, 3]),
        helper.make_node("Relu", ["c3"], ["r3"]),
        helper.make_node("Transpose", ["r3"], ["t3"], perm=[0, 2, 3, 1]),
        helper.make_node("Reshape", ["t3", "flat_shape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "d1w"], ["d1"]),
        helper.make_node("Add", ["d1", "d1b"], ["d1a"]),
        helper.make_node("Relu", ["d1a"], ["h"]),
        helper.make_node("MatMul", ["h", "d2w"], ["d2"]),
        helper.make_node("Add", ["d2", "d2b"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "mnist_cnn",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, 28, 28])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 10])],
        initializer=inits,
    )
    return _model(graph)


def slow_model(iterations: int, size: int = 256) -> onnx.ModelProto:
    """A model that computes for a while: ``iterations`` chained ``size``x``size`` MatMuls.

    Input ``INPUT0`` FP32 [-1, 4], output ``OUTPUT0`` = the input (plus 0 x the work, so
    the work cannot be optimized away). No batching on the shape: dim 0 stays dynamic.
    """
    matrix = np.full((size, size), 1.0 / size, np.float32)
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("MatMul", ["acc_in", "W"], ["acc_out"]),
        ],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("acc_in", TensorProto.FLOAT, [size, size]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, [size, size]),
        ],
    )
    graph = helper.make_graph(
        [
            helper.make_node("Loop", ["trip", "cond", "W"], ["acc"], body=body),
            helper.make_node("ReduceSum", ["acc"], ["total"], keepdims=0),
            helper.make_node("Mul", ["total", "zero"], ["nothing"]),
            helper.make_node("Add", ["INPUT0", "nothing"], ["OUTPUT0"]),
        ],
        "slow",
        [helper.make_tensor_value_info("INPUT0", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("OUTPUT0", TensorProto.FLOAT, ["batch", 4])],
        initializer=[
            numpy_helper.from_array(np.array(iterations, np.int64), "trip"),
            numpy_helper.from_array(np.array(True), "cond"),
            numpy_helper.from_array(matrix, "W"),
            numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
        ],
    )
    return _model(graph)


def spin_model(size: int = 64) -> onnx.ModelProto:
    """A model that runs as long as its input asks: ``ITERATIONS`` chained MatMuls.

    Inputs ``INPUT0`` FP32 [-1, 4] and ``ITERATIONS`` INT64 [-1, 1] (the largest value is the
    loop's trip count); output ``OUTPUT0`` = ``INPUT0``. ``ITERATIONS = 0`` answers at once,
    ``10**15`` runs for days: a request that blocks its instance until ONNX Runtime is told to
    stop, whatever the CPU (for ``execution_timeout_s`` tests).
    """
    matrix = np.full((size, size), 1.0 / size, np.float32)
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("MatMul", ["acc_in", "W"], ["acc_out"]),
        ],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("acc_in", TensorProto.FLOAT, [size, size]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, [size, size]),
        ],
    )
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMax", ["ITERATIONS"], ["trip"], keepdims=0),
            helper.make_node("Loop", ["trip", "cond", "W"], ["acc"], body=body),
            helper.make_node("ReduceSum", ["acc"], ["total"], keepdims=0),
            helper.make_node("Mul", ["total", "zero"], ["nothing"]),
            helper.make_node("Add", ["INPUT0", "nothing"], ["OUTPUT0"]),
        ],
        "spin",
        [
            helper.make_tensor_value_info("INPUT0", TensorProto.FLOAT, ["batch", 4]),
            helper.make_tensor_value_info("ITERATIONS", TensorProto.INT64, ["batch", 1]),
        ],
        [helper.make_tensor_value_info("OUTPUT0", TensorProto.FLOAT, ["batch", 4])],
        initializer=[
            numpy_helper.from_array(np.array(True), "cond"),
            numpy_helper.from_array(matrix, "W"),
            numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
        ],
    )
    return _model(graph)


def write_python_model(
    repository: Path,
    name: str,
    source: str,
    config: str,
    version: int = 1,
    files: dict[str, str] | None = None,
) -> Path:
    """Write ``source`` as ``repository/name/version/model.py`` and ``config`` as model.toml.

    ``files`` are more files of the version folder by name (modules, tables). Returns the
    version folder.
    """
    folder = repository / name / str(version)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.py").write_text(source, encoding="utf-8")
    for filename, text in (files or {}).items():
        (folder / filename).write_text(text, encoding="utf-8")
    (repository / name / "model.toml").write_text(config, encoding="utf-8")
    return folder


def write_model(
    repository: Path,
    name: str,
    model: onnx.ModelProto | bytes,
    version: int = 1,
    config: str | None = None,
) -> Path:
    """Write ``model`` as ``repository/name/version/model.onnx`` (and ``model.toml``)."""
    folder = repository / name / str(version)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.onnx"
    path.write_bytes(model if isinstance(model, bytes) else model.SerializeToString())
    if config is not None:
        (repository / name / "model.toml").write_text(config, encoding="utf-8")
    return path
