"""Model signatures for conversion: ``--input NAME:DATATYPE:DIMS`` and ONNX graph signatures.

``--input input:FP32:-1,1,28,28`` declares an input called ``input``, of V2 datatype ``FP32``,
with a dynamic first dimension (``-1``). Frameworks that cannot tell their input shapes
(PyTorch modules, TorchScript) need one ``--input`` per model input, in argument order.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import onnx

from shipyard.errors import ConfigError
from shipyard.types import DataType, TensorSpec

__all__ = [
    "INPUT_FORMAT",
    "merge_specs",
    "onnx_signature",
    "parse_input_spec",
    "parse_input_specs",
]

INPUT_FORMAT = "NAME:DATATYPE:DIMS, e.g. input:FP32:-1,1,28,28"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")

#: ONNX element types that map to a V2 datatype.
_FROM_ONNX: dict[int, DataType] = {
    onnx.TensorProto.BOOL: DataType.BOOL,
    onnx.TensorProto.UINT8: DataType.UINT8,
    onnx.TensorProto.UINT16: DataType.UINT16,
    onnx.TensorProto.UINT32: DataType.UINT32,
    onnx.TensorProto.UINT64: DataType.UINT64,
    onnx.TensorProto.INT8: DataType.INT8,
    onnx.TensorProto.INT16: DataType.INT16,
    onnx.TensorProto.INT32: DataType.INT32,
    onnx.TensorProto.INT64: DataType.INT64,
    onnx.TensorProto.FLOAT16: DataType.FP16,
    onnx.TensorProto.FLOAT: DataType.FP32,
    onnx.TensorProto.DOUBLE: DataType.FP64,
    onnx.TensorProto.STRING: DataType.BYTES,
}


def parse_input_spec(text: str) -> TensorSpec:
    """Parse ``NAME:DATATYPE:DIMS`` into a TensorSpec; raise ConfigError saying what is wrong."""
    parts = text.split(":")
    if len(parts) != 3:
        raise ConfigError(f"--input {text!r}: expected {INPUT_FORMAT}")
    name, datatype_text, dims_text = (p.strip() for p in parts)
    if not _NAME.fullmatch(name):
        raise ConfigError(
            f"--input {text!r}: invalid name {name!r} (letters, digits, '_', '.', '-';"
            " not starting with a digit)"
        )
    try:
        datatype = DataType.parse(datatype_text.upper())
    except ValueError as exc:
        raise ConfigError(f"--input {text!r}: {exc}") from None
    if not dims_text:
        return TensorSpec(name, datatype, ())  # a scalar
    dims: list[int] = []
    for item in dims_text.split(","):
        try:
            dim = int(item.strip())
        except ValueError:
            raise ConfigError(
                f"--input {text!r}: dimension {item.strip()!r} is not an integer"
                " (use -1 for a dynamic one)"
            ) from None
        if dim < -1 or dim == 0:
            raise ConfigError(
                f"--input {text!r}: dimension {dim} must be positive, or -1 for a dynamic one"
            )
        dims.append(dim)
    return TensorSpec(name, datatype, tuple(dims))


def parse_input_specs(texts: Iterable[str]) -> tuple[TensorSpec, ...]:
    """Parse every ``--input``; names must be unique."""
    specs = tuple(parse_input_spec(t) for t in texts)
    names = [s.name for s in specs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"--input given twice for {', '.join(duplicates)}")
    return specs


def _spec(value: onnx.ValueInfoProto) -> TensorSpec:
    kind = value.type.WhichOneof("value")
    if kind != "tensor_type":
        raise ConfigError(
            f"ONNX graph tensor {value.name!r} is a {kind}, not a tensor; Shipyard serves tensors"
            " only (for scikit-learn classifiers, Shipyard turns ZipMap off)"
        )
    tensor = value.type.tensor_type
    datatype = _FROM_ONNX.get(tensor.elem_type)
    if datatype is None:
        raise ConfigError(
            f"ONNX graph tensor {value.name!r}: element type "
            f"{onnx.TensorProto.DataType.Name(tensor.elem_type)} has no V2 datatype"
        )
    if not tensor.HasField("shape"):
        return TensorSpec(value.name, datatype, ())
    shape = tuple(
        d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else -1 for d in tensor.shape.dim
    )
    return TensorSpec(value.name, datatype, shape)


def onnx_signature(model: onnx.ModelProto) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """The (inputs, outputs) of an ONNX graph; initializers listed as inputs are skipped."""
    initializers = {init.name for init in model.graph.initializer}
    inputs = tuple(_spec(v) for v in model.graph.input if v.name not in initializers)
    outputs = tuple(_spec(v) for v in model.graph.output)
    return inputs, outputs


def merge_specs(
    found: Sequence[TensorSpec], overrides: Sequence[TensorSpec]
) -> tuple[TensorSpec, ...]:
    """Replace entries of ``found`` by the ``--input`` of the same name; unknown names fail."""
    by_name = {spec.name: spec for spec in found}
    for spec in overrides:
        if spec.name not in by_name:
            raise ConfigError(
                f"--input {spec.name!r}: the model has no such input"
                f" (it has {', '.join(by_name) or 'none'})"
            )
        by_name[spec.name] = spec
    return tuple(by_name[spec.name] for spec in found)
