"""Tests for shipyard.types: datatypes, tensors and metadata objects."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from shipyard.types import DataType, ModelMetadata, Tensor, TensorSpec

_ITEMSIZES = {
    "BOOL": 1,
    "UINT8": 1,
    "UINT16": 2,
    "UINT32": 4,
    "UINT64": 8,
    "INT8": 1,
    "INT16": 2,
    "INT32": 4,
    "INT64": 8,
    "FP16": 2,
    "FP32": 4,
    "FP64": 8,
    "BYTES": 0,
}


def test_datatype_has_the_thirteen_protocol_names() -> None:
    """DataType lists exactly the 13 Open Inference Protocol datatypes Shipyard serves."""
    assert [d.value for d in DataType] == list(_ITEMSIZES)


@pytest.mark.parametrize("name", list(_ITEMSIZES))
def test_parse_accepts_every_protocol_name(name: str) -> None:
    """DataType.parse returns the member whose value is the given wire name."""
    assert DataType.parse(name).value == name


@pytest.mark.parametrize("name", ["fp32", "FLOAT32", "", "STRING", "BF16", " FP32"])
def test_parse_rejects_unknown_names_listing_valid_ones(name: str) -> None:
    """DataType.parse raises ValueError naming the bad value and the valid names."""
    with pytest.raises(ValueError, match="unknown datatype") as info:
        DataType.parse(name)
    assert repr(name) in str(info.value)
    assert "FP32" in str(info.value)
    assert "BYTES" in str(info.value)


@pytest.mark.parametrize(("name", "size"), list(_ITEMSIZES.items()))
def test_itemsize_matches_the_wire_encoding(name: str, size: int) -> None:
    """itemsize is the bytes per element of the binary encoding (0 for variable BYTES)."""
    assert DataType(name).itemsize == size


@pytest.mark.parametrize("datatype", [d for d in DataType if d is not DataType.BYTES])
def test_numpy_dtype_is_little_endian_and_round_trips(datatype: DataType) -> None:
    """Every fixed-size datatype maps to a little-endian NumPy dtype that maps back to it."""
    dtype = datatype.numpy
    assert dtype.byteorder in ("<", "|", "=")
    assert dtype.itemsize == datatype.itemsize
    assert DataType.from_numpy(dtype) is datatype
    assert DataType.from_numpy(dtype.newbyteorder(">")) is datatype


def test_bytes_maps_to_object_dtype() -> None:
    """BYTES is stored as an object array."""
    assert DataType.BYTES.numpy == np.dtype(object)


@pytest.mark.parametrize("dtype", [np.dtype(object), np.dtype("S3"), np.dtype("U7")])
def test_from_numpy_maps_string_and_object_dtypes_to_bytes(dtype: np.dtype[Any]) -> None:
    """Object, bytes-string and unicode dtypes are all BYTES."""
    assert DataType.from_numpy(dtype) is DataType.BYTES


@pytest.mark.parametrize(
    ("dtype", "expected"),
    [
        (np.dtype(np.intc), DataType.INT32),
        (np.dtype(np.longlong), DataType.INT64),
        (np.dtype(np.double), DataType.FP64),
        (np.dtype(np.half), DataType.FP16),
        (np.dtype(np.bool_), DataType.BOOL),
    ],
)
def test_from_numpy_accepts_platform_aliases(dtype: np.dtype[Any], expected: DataType) -> None:
    """C-named NumPy dtypes resolve to the datatype of the same width and kind."""
    assert DataType.from_numpy(dtype) is expected


@pytest.mark.parametrize("dtype", ["complex64", "datetime64[s]", "V4"])
def test_from_numpy_rejects_dtypes_without_a_protocol_type(dtype: str) -> None:
    """Dtypes the protocol cannot carry raise ValueError naming the dtype."""
    with pytest.raises(ValueError, match="has no Open Inference Protocol datatype"):
        DataType.from_numpy(np.dtype(dtype))


@pytest.mark.parametrize("datatype", list(DataType))
def test_triton_name(datatype: DataType) -> None:
    """triton_name is TYPE_<name>, except BYTES which Triton calls TYPE_STRING."""
    expected = "TYPE_STRING" if datatype is DataType.BYTES else f"TYPE_{datatype.value}"
    assert datatype.triton_name == expected


def test_datatype_is_a_str() -> None:
    """DataType members compare and format as their wire names."""
    assert DataType.FP32 == "FP32"
    assert f"{DataType.INT8}" == "INT8"


def test_tensor_spec_to_dict() -> None:
    """TensorSpec.to_dict is the V2 $metadata_tensor object with -1 kept for variable dims."""
    spec = TensorSpec("x", DataType.FP16, (-1, 3))
    assert spec.to_dict() == {"name": "x", "datatype": "FP16", "shape": [-1, 3]}


def test_tensor_shape_is_a_tuple_of_python_ints() -> None:
    """Tensor.shape reflects the data's shape as plain ints."""
    tensor = Tensor("t", DataType.INT32, np.zeros((2, 0, 5), np.int32))
    assert tensor.shape == (2, 0, 5)
    assert all(type(d) is int for d in tensor.shape)
    assert tensor.parameters == {}


def test_tensor_parameters_are_not_shared_between_instances() -> None:
    """Each Tensor gets its own parameters dict."""
    a = Tensor("a", DataType.BOOL, np.zeros(1, bool))
    b = Tensor("b", DataType.BOOL, np.zeros(1, bool))
    a.parameters["binary_data_size"] = 1
    assert b.parameters == {}


def test_model_metadata_to_dict() -> None:
    """ModelMetadata.to_dict is the V2 $metadata_model_response with lists, not tuples."""
    meta = ModelMetadata(
        name="m",
        versions=("2", "1"),
        platform="onnx_onnxv1",
        inputs=(TensorSpec("in", DataType.FP32, (-1, 4)),),
        outputs=(TensorSpec("out", DataType.BYTES, (-1,)),),
    )
    assert meta.to_dict() == {
        "name": "m",
        "versions": ["2", "1"],
        "platform": "onnx_onnxv1",
        "inputs": [{"name": "in", "datatype": "FP32", "shape": [-1, 4]}],
        "outputs": [{"name": "out", "datatype": "BYTES", "shape": [-1]}],
    }
