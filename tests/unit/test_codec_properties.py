"""Property tests: any tensor of any datatype and shape survives the REST codec unchanged."""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from shipyard.errors import InvalidInputError
from shipyard.protocol.binary import array_from_raw, array_to_raw
from shipyard.protocol.rest import decode_infer_request, encode_infer_response
from shipyard.types import DataType, InferRequest, InferResponse, RequestedOutput, Tensor

LIMIT = 10_000
PROFILE = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
Array = npt.NDArray[Any]

shapes = st.lists(st.integers(0, 4), min_size=0, max_size=3).map(tuple)


def _bytes_array(shape: tuple[int, ...], items: list[bytes]) -> Array:
    out = np.empty(len(items), dtype=object)
    for i, item in enumerate(items):
        out[i] = item
    return out.reshape(shape)


@st.composite
def tensors(draw: st.DrawFn, json_safe: bool) -> tuple[DataType, Array]:
    """A datatype and an array of it; ``json_safe`` keeps to what JSON can carry exactly."""
    choices = [d for d in DataType if not (json_safe and d is DataType.FP16)]
    datatype = draw(st.sampled_from(choices))
    shape = draw(shapes)
    count = math.prod(shape)
    if datatype is DataType.BYTES:
        element = st.text(max_size=6).map(str.encode) if json_safe else st.binary(max_size=6)
        return datatype, _bytes_array(
            shape, draw(st.lists(element, min_size=count, max_size=count))
        )
    elements = None
    if json_safe and datatype in (DataType.FP32, DataType.FP64):
        elements = st.floats(
            allow_nan=False, allow_infinity=False, width=32 if datatype is DataType.FP32 else 64
        )
    array = draw(hnp.arrays(datatype.numpy, shape, elements=elements))
    return datatype, array


def assert_same(datatype: DataType, expected: Array, actual: Array) -> None:
    """Same shape, the datatype's dtype, and bit-identical values (NaN and -0.0 included)."""
    assert actual.shape == expected.shape
    assert actual.dtype == datatype.numpy
    if datatype is DataType.BYTES:
        assert actual.tolist() == expected.tolist()
    else:
        assert actual.tobytes() == expected.tobytes()


def raw_of(datatype: DataType, array: Array) -> bytes:
    """The binary extension's encoding, written independently of shipyard's encoder."""
    if datatype is DataType.BYTES:
        return b"".join(struct.pack("<I", len(v)) + v for v in array.reshape(-1))
    return array.astype(datatype.numpy.newbyteorder("<")).tobytes()


def json_request(datatype: DataType, array: Array, nested: bool) -> bytes:
    """A pure JSON /infer body carrying ``array`` as nested or flat data."""
    values = array.tolist() if nested else array.reshape(-1).tolist()
    if datatype is DataType.BYTES:
        flat = [v.decode() for v in array.reshape(-1)]
        values = np.array(flat, dtype=object).reshape(array.shape).tolist() if nested else flat
    item = {"name": "t", "datatype": datatype.value, "shape": list(array.shape), "data": values}
    return orjson.dumps({"inputs": [item]})


def binary_request(datatype: DataType, array: Array) -> tuple[bytes, int]:
    """A JSON header plus one binary blob carrying ``array``."""
    raw = raw_of(datatype, array)
    item = {
        "name": "t",
        "datatype": datatype.value,
        "shape": list(array.shape),
        "parameters": {"binary_data_size": len(raw)},
    }
    header = orjson.dumps({"inputs": [item]})
    return header + raw, len(header)


def response_as_request(body: bytes, header_length: int | None) -> tuple[bytes, int | None]:
    """Turn an encoded response into a request body: its outputs become the inputs."""
    end = len(body) if header_length is None else header_length
    header = orjson.loads(body[:end])
    new_header = orjson.dumps({"inputs": header["outputs"]})
    if header_length is None:
        return new_header, None
    return new_header + body[header_length:], len(new_header)


def decoded(body: bytes, header_length: int | None) -> Tensor:
    """Decode a one-input request body and return the tensor."""
    (tensor,) = decode_infer_request(body, header_length, "m", None, LIMIT).inputs
    return tensor


@PROFILE
@given(tensors(json_safe=True), st.booleans())
def test_json_request_round_trip(case: tuple[DataType, Array], nested: bool) -> None:
    """Any JSON-representable tensor sent as nested or flat JSON data decodes unchanged."""
    datatype, array = case
    tensor = decoded(json_request(datatype, array, nested), None)
    assert tensor.datatype is datatype
    assert_same(datatype, array, tensor.data)


@PROFILE
@given(tensors(json_safe=False))
def test_binary_request_round_trip(case: tuple[DataType, Array]) -> None:
    """Any tensor of any datatype sent through the binary extension decodes bit for bit."""
    datatype, array = case
    tensor = decoded(*binary_request(datatype, array))
    assert_same(datatype, array, tensor.data)


@PROFILE
@given(tensors(json_safe=False))
def test_raw_encoding_round_trip(case: tuple[DataType, Array]) -> None:
    """array_to_raw matches the independent encoding and array_from_raw inverts it."""
    datatype, array = case
    raw = array_to_raw(datatype, array)
    assert raw == raw_of(datatype, array)
    decoded_array = array_from_raw("t", datatype, list(array.shape), raw, array.size)
    assert_same(datatype, array, decoded_array)


@PROFILE
@given(tensors(json_safe=True))
def test_json_response_round_trip(case: tuple[DataType, Array]) -> None:
    """A response encoded as JSON (FP16 excepted) decodes back to the same tensor."""
    datatype, array = case
    response = InferResponse("m", "1", [Tensor("t", datatype, array)])
    body, header_length = encode_infer_response(response, InferRequest("m", []))
    assert header_length is None
    tensor = decoded(*response_as_request(body, header_length))
    assert_same(datatype, array, tensor.data)


@PROFILE
@given(tensors(json_safe=False), st.booleans())
def test_binary_response_round_trip(case: tuple[DataType, Array], per_output: bool) -> None:
    """A response encoded as binary (request-wide or per output) decodes back bit for bit."""
    datatype, array = case
    if per_output:
        request = InferRequest("m", [], outputs=[RequestedOutput("t", {"binary_data": True})])
    else:
        request = InferRequest("m", [], parameters={"binary_data_output": True})
    response = InferResponse("m", "1", [Tensor("t", datatype, array)])
    body, header_length = encode_infer_response(response, request)
    assert header_length is not None
    tensor = decoded(*response_as_request(body, header_length))
    assert_same(datatype, array, tensor.data)


@PROFILE
@given(tensors(json_safe=False), st.binary(min_size=1, max_size=9))
def test_trailing_bytes_are_always_refused(case: tuple[DataType, Array], extra: bytes) -> None:
    """Whatever the tensor, bytes after the declared blobs make the request invalid."""
    datatype, array = case
    body, header_length = binary_request(datatype, array)
    with pytest.raises(InvalidInputError):
        decoded(body + extra, header_length)


@PROFILE
@given(tensors(json_safe=False), st.integers(1, 9), st.booleans())
def test_wrong_binary_size_is_always_refused(
    case: tuple[DataType, Array], delta: int, grow: bool
) -> None:
    """A binary_data_size that disagrees with the data is refused for every datatype."""
    datatype, array = case
    raw = raw_of(datatype, array)
    assume(grow or len(raw) >= delta)
    blob = raw + b"\0" * delta if grow else raw[: len(raw) - delta]
    item = {
        "name": "t",
        "datatype": datatype.value,
        "shape": list(array.shape),
        "parameters": {"binary_data_size": len(blob)},
    }
    header = orjson.dumps({"inputs": [item]})
    with pytest.raises(InvalidInputError):
        decoded(header + blob, len(header))
