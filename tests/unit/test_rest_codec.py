"""Tests for shipyard.protocol.rest: V2 JSON bodies and the binary tensor data extension."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import orjson
import pytest

from shipyard.errors import InvalidInputError
from shipyard.protocol.rest import (
    decode_infer_request,
    decode_json,
    encode_infer_response,
    encode_json,
)
from shipyard.types import DataType, InferRequest, InferResponse, RequestedOutput, Tensor

LIMIT = 1000


def decode(header: Any, *blobs: bytes, limit: int = LIMIT) -> InferRequest:
    """Decode a request made of a JSON header and binary blobs (JSON only when no blobs)."""
    text = orjson.dumps(header)
    if not blobs:
        return decode_infer_request(text, None, "m", None, limit)
    return decode_infer_request(text + b"".join(blobs), len(text), "m", None, limit)


def one_input(**fields: Any) -> dict[str, Any]:
    """A request header with one input named x."""
    return {"inputs": [{"name": "x", **fields}]}


def bad(header: Any, *blobs: bytes, match: str, limit: int = LIMIT) -> InvalidInputError:
    """Assert that decoding fails with an InvalidInputError matching ``match``."""
    with pytest.raises(InvalidInputError, match=match) as info:
        decode(header, *blobs, limit=limit)
    return info.value


def split_body(body: bytes, header_length: int | None) -> tuple[dict[str, Any], bytes]:
    """Split an encoded response into its parsed JSON header and the binary tail."""
    if header_length is None:
        return orjson.loads(body), b""
    return orjson.loads(body[:header_length]), body[header_length:]


# -- decoding: JSON ----------------------------------------------------------------------------


def test_spec_example_request() -> None:
    """The specification's JSON example decodes into typed, shaped tensors."""
    request = decode(
        {
            "id": "42",
            "inputs": [
                {"name": "input0", "shape": [2, 2], "datatype": "UINT32", "data": [1, 2, 3, 4]},
                {"name": "input1", "shape": [3], "datatype": "BOOL", "data": [True, False, True]},
            ],
            "outputs": [{"name": "output0"}],
        }
    )
    assert request.model_name == "m"
    assert request.model_version is None
    assert request.id == "42"
    assert request.parameters == {}
    assert request.outputs == [RequestedOutput("output0", {})]
    first, second = request.inputs
    assert (first.name, first.datatype, first.shape) == ("input0", DataType.UINT32, (2, 2))
    assert first.data.dtype == np.dtype("<u4")
    assert first.data.tolist() == [[1, 2], [3, 4]]
    assert second.data.dtype == np.bool_
    assert second.data.tolist() == [True, False, True]


def test_model_version_and_parameters_pass_through() -> None:
    """The path's version and the request/output parameters reach the InferRequest."""
    header = {
        "parameters": {"timeout": 5, "binary_data_output": True},
        "inputs": [{"name": "x", "shape": [1], "datatype": "INT8", "data": [1]}],
        "outputs": [{"name": "y", "parameters": {"binary_data": False}}],
    }
    request = decode_infer_request(orjson.dumps(header), None, "m", "3", LIMIT)
    assert request.model_version == "3"
    assert request.parameters == {"binary_data_output": True}
    assert request.timeout_us == 5
    assert request.outputs == [RequestedOutput("y", {"binary_data": False})]


def test_outputs_omitted_means_all() -> None:
    """Without an 'outputs' key the request asks for every output (None)."""
    assert decode(one_input(shape=[1], datatype="FP32", data=[1])).outputs is None


def test_empty_outputs_list_means_every_output() -> None:
    """An explicit empty 'outputs' list asks for every output, as Triton and gRPC read it."""
    header = {**one_input(shape=[1], datatype="FP32", data=[1]), "outputs": []}
    assert decode(header).outputs is None


@pytest.mark.parametrize(
    "data",
    [[1, 2, 3, 4, 5, 6], [[1, 2, 3], [4, 5, 6]], [[[1, 2, 3]], [[4, 5, 6]]]],
)
def test_flat_and_nested_data_are_equivalent(data: Any) -> None:
    """Row-major data may be flat or nested; only the element count must match the shape."""
    request = decode(one_input(shape=[2, 3], datatype="INT32", data=data))
    assert request.inputs[0].data.tolist() == [[1, 2, 3], [4, 5, 6]]


def test_scalar_data_for_scalar_shape() -> None:
    """A bare number is accepted as the one element of a rank-0 tensor."""
    request = decode(one_input(shape=[], datatype="FP64", data=2.5))
    assert request.inputs[0].data.shape == ()
    assert float(request.inputs[0].data) == 2.5


def test_empty_tensor_from_json() -> None:
    """A zero-element tensor decodes from empty data with its full shape and dtype."""
    array = decode(one_input(shape=[0, 4], datatype="INT16", data=[])).inputs[0].data
    assert array.shape == (0, 4)
    assert array.dtype == np.dtype("<i2")


def test_bytes_from_json_strings() -> None:
    """BYTES data in JSON are strings, stored as UTF-8 bytes in an object array."""
    array = decode(one_input(shape=[2, 1], datatype="BYTES", data=[["héllo"], [""]])).inputs[0]
    assert array.data.dtype == np.dtype(object)
    assert array.data.tolist() == [["héllo".encode()], [b""]]


def test_integers_are_accepted_for_floats() -> None:
    """JSON integers are valid FP32/FP64 data."""
    array = decode(one_input(shape=[2], datatype="FP32", data=[1, 2.5])).inputs[0].data
    assert array.dtype == np.dtype("<f4")
    assert array.tolist() == [1.0, 2.5]


@pytest.mark.parametrize(
    ("datatype", "low", "high"),
    [
        ("INT8", -128, 127),
        ("UINT8", 0, 255),
        ("INT16", -(2**15), 2**15 - 1),
        ("UINT16", 0, 2**16 - 1),
        ("INT32", -(2**31), 2**31 - 1),
        ("UINT32", 0, 2**32 - 1),
        ("INT64", -(2**63), 2**63 - 1),
        ("UINT64", 0, 2**64 - 1),
    ],
)
def test_integer_extremes_are_accepted(datatype: str, low: int, high: int) -> None:
    """The minimum and maximum of each integer type decode exactly."""
    array = decode(one_input(shape=[2], datatype=datatype, data=[low, high])).inputs[0].data
    assert array.dtype == DataType(datatype).numpy
    assert [int(v) for v in array] == [low, high]


@pytest.mark.parametrize(
    ("datatype", "value"),
    [
        ("INT8", 128),
        ("INT8", -129),
        ("UINT8", 256),
        ("UINT8", -1),
        ("INT16", 2**15),
        ("UINT16", 2**16),
        ("INT32", -(2**31) - 1),
        ("UINT32", 2**32),
        ("UINT64", -1),
    ],
)
def test_out_of_range_integers_are_refused(datatype: str, value: int) -> None:
    """An integer that does not fit the datatype is refused, never wrapped around."""
    bad(one_input(shape=[1], datatype=datatype, data=[value]), match="out of range for")


@pytest.mark.parametrize(
    ("datatype", "value"),
    [
        ("INT64", str(2**63)),
        ("INT64", str(-(2**63) - 1)),
        ("INT64", str(2**64)),
        ("INT64", "1" + "0" * 30),
        ("UINT64", str(-(2**63) - 1)),
        ("UINT64", str(2**64)),
        ("UINT64", "1" + "0" * 30),
    ],
)
def test_integers_beyond_64_bits_are_refused(datatype: str, value: str) -> None:
    """Integers past the 64-bit range are refused, never wrapped or rounded."""
    body = f'{{"inputs": [{{"name": "x", "shape": [2], "datatype": "{datatype}", '
    body += f'"data": [1, {value}]}}]}}'
    with pytest.raises(InvalidInputError, match=datatype):
        decode_infer_request(body.encode(), None, "m", None, LIMIT)


def test_mixed_large_and_negative_ints_stay_exact() -> None:
    """UINT64 values past INT64 mixed with small ones are decoded exactly, not via float."""
    data = [1, 2**64 - 1, 2**63 + 1]
    array = decode(one_input(shape=[3], datatype="UINT64", data=data)).inputs[0].data
    assert array.dtype == np.dtype("<u8")
    assert [int(v) for v in array] == data


def test_float_overflow_for_fp32() -> None:
    """A float beyond FP32's range is refused instead of becoming infinity."""
    bad(one_input(shape=[2], datatype="FP32", data=[1.0, -1e39]), match="out of range for FP32")


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_fp32_extremes_as_json_write_them_are_in_range(sign: float) -> None:
    """FP32's largest value, written as JSON does (3.4028235e+38, just above it), is valid."""
    largest = float(np.finfo(np.float32).max)
    written = float(f"{np.float32(largest):.8g}")
    assert written > largest  # the text a JSON writer makes, as parsed back
    array = decode(one_input(shape=[1], datatype="FP32", data=[sign * written])).inputs[0].data
    assert array.dtype == np.float32
    assert array.tolist() == [sign * largest]


def test_large_float_is_fine_for_fp64() -> None:
    """The same value is valid FP64 data."""
    array = decode(one_input(shape=[1], datatype="FP64", data=[1e39])).inputs[0].data
    assert array.tolist() == [1e39]


@pytest.mark.parametrize(
    ("datatype", "data", "message"),
    [
        ("FP32", ["1.0"], "datatype FP32 expects numbers"),
        ("FP32", [True], "datatype FP32 expects numbers"),
        ("INT32", [1.5], "datatype INT32 expects integers"),
        ("INT32", [1.0], "datatype INT32 expects integers"),
        ("INT32", [True, False], "datatype INT32 expects integers"),
        ("INT32", ["1"], "datatype INT32 expects integers"),
        ("INT32", [None], "datatype INT32 expects integers"),
        ("INT32", [{"a": 1}], "datatype INT32 expects integers"),
        ("BOOL", [1, 0], "datatype BOOL expects true/false values"),
        ("BOOL", ["true"], "datatype BOOL expects true/false values"),
        ("BYTES", [1], "BYTES data in JSON must be strings; element 0 is int"),
        ("BYTES", ["a", None], "element 1 is NoneType"),
    ],
)
def test_wrongly_typed_data_is_refused(datatype: str, data: Any, message: str) -> None:
    """Data must be strictly of the datatype's JSON kind; nothing is silently coerced."""
    bad(one_input(shape=[len(data)], datatype=datatype, data=data), match=message)


def test_ragged_nested_data_is_refused() -> None:
    """Nested lists of unequal length are refused as ragged."""
    bad(one_input(shape=[3], datatype="INT32", data=[[1, 2], [3]]), match="ragged or not numeric")


@pytest.mark.parametrize(
    ("datatype", "shape", "data", "expected", "got"),
    [
        ("FP32", [2, 2], [1, 2, 3], 4, 3),
        ("INT8", [3], [[1, 2], [3, 4]], 3, 4),
        ("BYTES", [1], ["a", "b"], 1, 2),
        ("BOOL", [0], [True], 0, 1),
    ],
)
def test_element_count_mismatch(
    datatype: str, shape: list[int], data: Any, expected: int, got: int
) -> None:
    """The data's element count must equal the product of the shape."""
    bad(
        one_input(shape=shape, datatype=datatype, data=data),
        match=rf"needs {expected} elements but data has {got}",
    )


def test_fp16_cannot_be_sent_as_json() -> None:
    """FP16 in JSON is refused with a pointer to the binary extension."""
    bad(one_input(shape=[1], datatype="FP16", data=[1.0]), match="binary_data_size")


@pytest.mark.parametrize("datatype", ["FLOAT32", "fp32", "BF16", "STRING", ""])
def test_unknown_datatype(datatype: str) -> None:
    """A datatype name outside the protocol's list is refused, listing the valid ones."""
    error = bad(one_input(shape=[1], datatype=datatype, data=[1]), match="unknown datatype")
    assert "'x'" in error.message
    assert "FP32" in error.message


@pytest.mark.parametrize("datatype", [None, 5, ["FP32"]])
def test_datatype_must_be_a_string(datatype: Any) -> None:
    """A missing or non-string datatype is refused."""
    bad(one_input(shape=[1], datatype=datatype, data=[1]), match="'datatype' must be a string")


def test_missing_datatype() -> None:
    """An input without a datatype is refused."""
    bad(one_input(shape=[1], data=[1]), match="'datatype' must be a string")


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        (None, "shape must be a list of integers"),
        ([-1, 2], "negative dimension"),
        ([1.5], "shape must be a list of integers"),
        ([2.0], "shape must be a list of integers"),
        (["2"], "shape must be a list of integers"),
        (3, "shape must be a list of integers"),
        ([1001], "over the server's limit of 1000"),
        ([100, 100], "10000 elements, over the server's limit"),
    ],
)
def test_bad_shapes(shape: Any, message: str) -> None:
    """Negative, non-integer, missing and oversized shapes are refused before any allocation."""
    bad(one_input(shape=shape, datatype="FP32", data=[1]), match=message)


def test_missing_shape() -> None:
    """An input without a shape is refused."""
    bad(one_input(datatype="FP32", data=[1]), match="shape must be a list of integers")


def test_oversized_shape_is_refused_before_the_data_is_read() -> None:
    """A shape over max_tensor_elements is refused even when data is absent or tiny."""
    bad(one_input(shape=[10**12], datatype="BOOL", data=[]), match="over the server's limit")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{", "inference request is not valid JSON"),
        (b"", "not valid JSON"),
        (b"\xff", "not valid JSON"),
        (b"[1]", "must be a JSON object"),
        (b'"x"', "must be a JSON object"),
        (b"{}", "needs a non-empty 'inputs' list"),
        (b'{"inputs": []}', "needs a non-empty 'inputs' list"),
        (b'{"inputs": {"name": "x"}}', "needs a non-empty 'inputs' list"),
        (b'{"inputs": [1]}', "each input needs a 'name' string"),
        (b'{"inputs": [{"shape": [1]}]}', "each input needs a 'name' string"),
        (b'{"inputs": [{"name": 1}]}', "each input needs a 'name' string"),
    ],
)
def test_malformed_request_bodies(body: bytes, message: str) -> None:
    """Bad JSON and bodies without a proper inputs list are InvalidInputErrors."""
    with pytest.raises(InvalidInputError, match=message) as info:
        decode_infer_request(body, None, "m", None, LIMIT)
    assert "model 'm'" in info.value.message or "not valid JSON" in info.value.message


def test_no_data_and_no_binary_size() -> None:
    """An input with neither 'data' nor binary_data_size is refused."""
    bad(one_input(shape=[1], datatype="FP32"), match="no 'data' and no binary_data_size")


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ({"id": 42}, "'id' must be a string"),
        ({"parameters": [1]}, "'parameters' must be a JSON object"),
        ({"outputs": {"name": "y"}}, "'outputs' must be a list"),
        ({"outputs": ["y"]}, "each requested output needs a 'name' string"),
        ({"outputs": [{"parameters": {}}]}, "each requested output needs a 'name' string"),
        ({"outputs": [{"name": "y", "parameters": 1}]}, "'parameters' must be a JSON object"),
    ],
)
def test_malformed_request_fields(header: dict[str, Any], message: str) -> None:
    """id, parameters and outputs must have the protocol's types."""
    bad({**one_input(shape=[1], datatype="FP32", data=[1]), **header}, match=message)


def test_input_parameters_must_be_an_object() -> None:
    """An input's parameters must be a JSON object."""
    bad(one_input(shape=[1], datatype="FP32", data=[1], parameters=[]), match="'parameters'")


# -- decoding: binary extension ----------------------------------------------------------------


def test_spec_example_binary_request() -> None:
    """The specification's binary example: UINT32 [2,2] and BOOL [3] after the JSON header."""
    header = {
        "model_name": "mymodel",
        "inputs": [
            {
                "name": "input0",
                "shape": [2, 2],
                "datatype": "UINT32",
                "parameters": {"binary_data_size": 16},
            },
            {
                "name": "input1",
                "shape": [3],
                "datatype": "BOOL",
                "parameters": {"binary_data_size": 3},
            },
        ],
        "outputs": [{"name": "output0", "parameters": {"binary_data": True}}],
    }
    request = decode(header, struct.pack("<4I", 1, 2, 3, 4), b"\x01\x00\x01")
    assert request.inputs[0].data.tolist() == [[1, 2], [3, 4]]
    assert request.inputs[1].data.tolist() == [True, False, True]
    assert request.outputs == [RequestedOutput("output0", {"binary_data": True})]


def test_binary_and_json_inputs_mix() -> None:
    """Binary inputs take their blobs in input order; JSON inputs consume none."""
    header = {
        "inputs": [
            {"name": "a", "shape": [2], "datatype": "INT16", "parameters": {"binary_data_size": 4}},
            {"name": "b", "shape": [1], "datatype": "FP32", "data": [7]},
            {"name": "c", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 6}},
        ]
    }
    request = decode(header, struct.pack("<2h", -1, 2), b"\x02\0\0\0hi")
    a, b, c = (t.data.tolist() for t in request.inputs)
    assert (a, b, c) == ([-1, 2], [7.0], [b"hi"])


def test_fp16_as_binary() -> None:
    """FP16 is accepted through the binary extension."""
    values = np.array([0.5, -2.0, 65504.0], np.float16)
    header = one_input(shape=[3], datatype="FP16", parameters={"binary_data_size": 6})
    array = decode(header, values.tobytes()).inputs[0].data
    assert array.dtype == np.float16
    np.testing.assert_array_equal(array, values)


def test_binary_zero_size_tensor() -> None:
    """A zero-element binary input with binary_data_size 0 decodes to an empty tensor."""
    header = one_input(shape=[0, 2], datatype="FP32", parameters={"binary_data_size": 0})
    body = orjson.dumps(header)
    request = decode_infer_request(body, len(body), "m", None, LIMIT)
    assert request.inputs[0].data.shape == (0, 2)


@pytest.mark.parametrize("length", [-1, 10**6])
def test_header_length_outside_the_body(length: int) -> None:
    """An Inference-Header-Content-Length past the body (or negative) is refused."""
    body = orjson.dumps(one_input(shape=[1], datatype="FP32", data=[1]))
    with pytest.raises(InvalidInputError, match="Inference-Header-Content-Length is"):
        decode_infer_request(body, length, "m", None, LIMIT)


def test_header_length_cutting_the_json_short() -> None:
    """A header length that ends inside the JSON makes the JSON invalid."""
    body = orjson.dumps(one_input(shape=[1], datatype="FP32", data=[1]))
    with pytest.raises(InvalidInputError, match="not valid JSON"):
        decode_infer_request(body, len(body) - 1, "m", None, LIMIT)


@pytest.mark.parametrize(("size", "blob"), [(7, b"\0" * 7), (9, b"\0" * 9), (4, b"\0" * 4)])
def test_binary_size_must_match_shape_times_itemsize(size: int, blob: bytes) -> None:
    """binary_data_size must equal element count x itemsize (8 for FP32 [2])."""
    header = one_input(shape=[2], datatype="FP32", parameters={"binary_data_size": size})
    bad(header, blob, match=rf"{size} bytes of binary data, but shape \[2\] of FP32 needs 8")


def test_binary_size_running_past_the_body() -> None:
    """A binary_data_size larger than what follows the header is refused."""
    header = one_input(shape=[2], datatype="FP32", parameters={"binary_data_size": 8})
    bad(header, b"\0" * 4, match="binary_data_size 8 runs past the end of the body")


def test_binary_size_without_header_length() -> None:
    """binary_data_size with a pure JSON body (no header length) has no bytes to read."""
    header = one_input(shape=[1], datatype="FP32", parameters={"binary_data_size": 4})
    with pytest.raises(InvalidInputError, match="runs past the end of the body"):
        decode_infer_request(orjson.dumps(header), None, "m", None, LIMIT)


def test_trailing_bytes_after_the_last_blob() -> None:
    """Bytes after the last claimed blob mean the sizes are wrong: refused."""
    header = one_input(shape=[1], datatype="FP32", parameters={"binary_data_size": 4})
    bad(header, b"\0" * 4, b"!!", match="2 bytes of binary data follow the JSON header")


def test_trailing_bytes_with_json_data_only() -> None:
    """Binary bytes after a JSON-only request are refused, not ignored."""
    bad(one_input(shape=[1], datatype="FP32", data=[1]), b"xyz", match="3 bytes of binary data")


def test_data_and_binary_size_together() -> None:
    """An input may not carry both 'data' and binary_data_size."""
    header = one_input(shape=[1], datatype="FP32", data=[1], parameters={"binary_data_size": 4})
    bad(header, b"\0" * 4, match="has both 'data' and binary_data_size")


@pytest.mark.parametrize("size", [-4, 4.0, "4", True, None])
def test_binary_size_must_be_a_non_negative_integer(size: Any) -> None:
    """binary_data_size must be a non-negative integer (not a float, string or bool)."""
    header = one_input(shape=[1], datatype="FP32", parameters={"binary_data_size": size})
    if size is None:  # an explicit null means "not binary": then data is missing
        bad(header, b"\0" * 4, match="no 'data' and no binary_data_size")
    else:
        bad(header, b"\0" * 4, match="binary_data_size must be a non-negative integer")


def test_malformed_binary_bytes() -> None:
    """A BYTES blob whose length prefix lies is refused."""
    header = one_input(shape=[1], datatype="BYTES", parameters={"binary_data_size": 6})
    bad(header, b"\x09\0\0\0hi", match="claims 9 bytes but only 2 remain")


# -- encoding ----------------------------------------------------------------------------------


def _response(*outputs: Tensor, id: str | None = None) -> InferResponse:
    return InferResponse(model_name="m", model_version="1", outputs=list(outputs), id=id)


def _request(outputs: list[RequestedOutput] | None = None, **parameters: Any) -> InferRequest:
    return InferRequest("m", [], outputs=outputs, parameters=parameters)


def test_encode_json_response() -> None:
    """Without binary requests the response is pure JSON with flat data and no header length."""
    response = _response(
        Tensor("out", DataType.FP32, np.array([[1.0, 1.5], [2.0, 2.5]], np.float32)),
        Tensor("flags", DataType.BOOL, np.array([True, False])),
        Tensor("ids", DataType.UINT64, np.array([2**64 - 1], np.uint64)),
        id="42",
    )
    body, header_length = encode_infer_response(response, _request())
    assert header_length is None
    assert orjson.loads(body) == {
        "model_name": "m",
        "model_version": "1",
        "id": "42",
        "outputs": [
            {"name": "out", "datatype": "FP32", "shape": [2, 2], "data": [1.0, 1.5, 2.0, 2.5]},
            {"name": "flags", "datatype": "BOOL", "shape": [2], "data": [True, False]},
            {"name": "ids", "datatype": "UINT64", "shape": [1], "data": [2**64 - 1]},
        ],
    }


def test_encode_omits_id_when_absent() -> None:
    """A response to a request without an id has no 'id' key."""
    body, _ = encode_infer_response(_response(), _request())
    assert "id" not in orjson.loads(body)


def test_encode_response_parameters() -> None:
    """Response parameters are included when present."""
    response = _response()
    response.parameters = {"sequence_id": 3}
    body, _ = encode_infer_response(response, _request())
    assert orjson.loads(body)["parameters"] == {"sequence_id": 3}


def test_encode_bytes_as_json_strings() -> None:
    """BYTES outputs are UTF-8 strings in JSON (bytes and str elements both)."""
    data = np.array([[b"caf\xc3\xa9", "x"]], dtype=object)
    body, _ = encode_infer_response(_response(Tensor("s", DataType.BYTES, data)), _request())
    output = orjson.loads(body)["outputs"][0]
    assert output["data"] == ["café", "x"]
    assert output["shape"] == [1, 2]


def test_encode_non_utf8_bytes_in_json_is_refused() -> None:
    """Bytes that are not text cannot go in JSON; the error says to ask for binary."""
    data = np.array([b"\xff"], dtype=object)
    with pytest.raises(InvalidInputError, match='"binary_data": true'):
        encode_infer_response(_response(Tensor("s", DataType.BYTES, data)), _request())


def test_encode_non_contiguous_output_is_row_major() -> None:
    """A transposed output is written in logical row-major order."""
    data = np.arange(6, dtype=np.int32).reshape(2, 3).T
    body, _ = encode_infer_response(_response(Tensor("t", DataType.INT32, data)), _request())
    output = orjson.loads(body)["outputs"][0]
    assert output["shape"] == [3, 2]
    assert output["data"] == [0, 3, 1, 4, 2, 5]


def test_fp16_is_always_binary() -> None:
    """FP16 outputs go binary even when the client asked for nothing binary."""
    values = np.array([1.0, 0.5], np.float16)
    body, length = encode_infer_response(_response(Tensor("h", DataType.FP16, values)), _request())
    header, tail = split_body(body, length)
    assert header["outputs"][0] == {
        "name": "h",
        "datatype": "FP16",
        "shape": [2],
        "parameters": {"binary_data_size": 4},
    }
    assert tail == values.tobytes()


def test_fp16_is_binary_even_when_binary_data_is_false() -> None:
    """An explicit binary_data=false cannot force FP16 into JSON."""
    request = _request([RequestedOutput("h", {"binary_data": False})])
    response = _response(Tensor("h", DataType.FP16, np.zeros(1, np.float16)))
    _, length = encode_infer_response(response, request)
    assert length is not None


def test_binary_data_output_makes_every_output_binary() -> None:
    """binary_data_output=true puts all outputs after the header, in output order."""
    a = np.array([1, 2], np.int32)
    s = np.array([b"hi"], dtype=object)
    body, length = encode_infer_response(
        _response(Tensor("a", DataType.INT32, a), Tensor("s", DataType.BYTES, s)),
        _request(binary_data_output=True),
    )
    header, tail = split_body(body, length)
    assert [o["parameters"]["binary_data_size"] for o in header["outputs"]] == [8, 6]
    assert all("data" not in o for o in header["outputs"])
    assert tail == a.tobytes() + b"\x02\0\0\0hi"


def test_binary_data_per_output_overrides_binary_data_output() -> None:
    """An output's binary_data wins over the request-wide binary_data_output."""
    request = _request(
        [RequestedOutput("a", {"binary_data": False}), RequestedOutput("b")],
        binary_data_output=True,
    )
    response = _response(
        Tensor("a", DataType.INT8, np.array([1], np.int8)),
        Tensor("b", DataType.INT8, np.array([2], np.int8)),
    )
    body, length = encode_infer_response(response, request)
    header, tail = split_body(body, length)
    assert header["outputs"][0]["data"] == [1]
    assert header["outputs"][1]["parameters"] == {"binary_data_size": 1}
    assert tail == b"\x02"


def test_binary_data_true_for_one_output() -> None:
    """binary_data=true on one output makes only that output binary."""
    request = _request([RequestedOutput("b", {"binary_data": True})])
    response = _response(
        Tensor("a", DataType.FP64, np.array([0.25])),
        Tensor("b", DataType.FP64, np.array([0.5])),
    )
    body, length = encode_infer_response(response, request)
    header, tail = split_body(body, length)
    assert length == len(encode_json(header))
    assert header["outputs"][0]["data"] == [0.25]
    assert "data" not in header["outputs"][1]
    assert tail == struct.pack("<d", 0.5)


def test_binary_output_keeps_existing_parameters() -> None:
    """A tensor's own parameters are kept next to binary_data_size."""
    tensor = Tensor("a", DataType.UINT8, np.array([7], np.uint8), {"note": "x"})
    body, length = encode_infer_response(_response(tensor), _request(binary_data_output=True))
    header, _ = split_body(body, length)
    assert header["outputs"][0]["parameters"] == {"note": "x", "binary_data_size": 1}
    assert tensor.parameters == {"note": "x"}  # the response tensor itself is not modified


def test_encode_json_serializes_numpy() -> None:
    """encode_json handles NumPy arrays."""
    assert orjson.loads(encode_json({"a": np.array([1, 2], np.int64)})) == {"a": [1, 2]}


def test_decode_json_names_what_was_bad() -> None:
    """decode_json raises InvalidInputError naming the thing being parsed."""
    assert decode_json(b'{"a": 1}') == {"a": 1}
    with pytest.raises(InvalidInputError, match="load body is not valid JSON"):
        decode_json(b"{", "load body")


@pytest.mark.parametrize("timeout", [-1, 1.5, "100", True, None])
def test_bad_timeout_parameter(timeout: Any) -> None:
    """The timeout parameter must be a non-negative integer of microseconds."""
    header = {**one_input(shape=[1], datatype="INT8", data=[1]), "parameters": {"timeout": timeout}}
    error = bad(header, match="parameter 'timeout' must be a non-negative integer")
    assert "'m'" in error.message


@pytest.mark.parametrize("timeout", [0, 10_000_000])
def test_good_timeout_parameter(timeout: int) -> None:
    """A zero or generous timeout becomes the request's timeout_us, out of its parameters."""
    header = {**one_input(shape=[1], datatype="INT8", data=[1]), "parameters": {"timeout": timeout}}
    request = decode(header)
    assert request.timeout_us == timeout
    assert request.parameters == {}
