"""Fuzzing the REST decoder: any body, any JSON, any request-shaped JSON with binary blobs, and
any header value give a decoded request or a clean InvalidInputError (400/413), never anything
else (which the transport would answer 500)."""

from __future__ import annotations

import json
import math
import sys
from typing import Any

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from shipyard.errors import ErrorCode, ShipyardError
from shipyard.protocol.rest import MAX_DECIMAL_DIGITS, decode_infer_request, parse_decimal
from shipyard.types import DataType, InferRequest
from tests.fuzz.profile import fuzz_settings

MAX_ELEMENTS = 1 << 12
CLEAN = {ErrorCode.INVALID_ARGUMENT, ErrorCode.PAYLOAD_TOO_LARGE}
DATATYPES = [t.value for t in DataType] + ["", "FP8", "int32", "TYPE_FP32", "BF16\x00", 5, None]


def decode(body: bytes, header_length: int | None = None) -> InferRequest | None:
    """Decode, accepting only a request or a clean client error that says something."""
    try:
        return decode_infer_request(body, header_length, "m", None, MAX_ELEMENTS)
    except ShipyardError as exc:
        error = exc
    assert error.code in CLEAN, f"{error.code}: {error.message}"
    assert error.message
    assert "Traceback" not in error.message
    return None


def assert_consistent(request: InferRequest) -> None:
    """A decoded request's tensors have their declared shapes and datatypes."""
    assert request.inputs
    for tensor in request.inputs:
        assert isinstance(tensor.data, np.ndarray)
        assert math.prod(tensor.shape) == tensor.data.size <= MAX_ELEMENTS
        if tensor.datatype is DataType.BYTES:
            assert all(isinstance(v, bytes) for v in tensor.data.reshape(-1))
        else:
            assert tensor.data.dtype == tensor.datatype.numpy


@fuzz_settings(1000)
@given(st.binary(max_size=300), st.one_of(st.none(), st.integers(-5, 400)))
def test_any_bytes_decode_or_are_refused(body: bytes, header_length: int | None) -> None:
    """Random bytes, with or without a JSON length, are refused cleanly (or happen to decode)."""
    request = decode(body, header_length)
    if request is not None:
        assert_consistent(request)


json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
json_values = st.recursive(
    json_leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=20,
)


@fuzz_settings(1000)
@given(json_values)
def test_any_json_value_decodes_or_is_refused(value: Any) -> None:
    """Any JSON document as a body: refused cleanly unless it is a valid request."""
    request = decode(json.dumps(value).encode())
    if request is not None:
        assert_consistent(request)


dims = st.one_of(
    st.integers(-2, 5),
    st.integers(-(2**70), 2**70),
    st.sampled_from([True, 1.0, "2", None]),
)
shapes = st.one_of(
    st.lists(dims, max_size=5),
    st.lists(st.integers(0, 1), min_size=62, max_size=70),  # around NumPy's 64 dimensions
    json_leaves,
)
datas = st.one_of(
    st.lists(json_leaves, max_size=12),
    st.lists(st.lists(json_leaves, max_size=4), max_size=4),
    st.lists(st.integers(-(2**65), 2**65), max_size=8),
    st.lists(st.floats(width=32, allow_nan=False), max_size=8),
    json_values,
)


@st.composite
def tensors(draw: st.DrawFn, blobs: list[bytes]) -> dict[str, Any]:
    """An input: any name, datatype, shape and data, or binary_data_size and a blob."""
    item: dict[str, Any] = {}
    if draw(st.booleans()) or not blobs:
        item["name"] = draw(st.one_of(st.text(max_size=6), json_leaves))
    if draw(st.integers(0, 9)):
        item["datatype"] = draw(st.sampled_from(DATATYPES))
    if draw(st.integers(0, 9)):
        item["shape"] = draw(shapes)
    if draw(st.booleans()):
        blob = draw(st.binary(max_size=64))
        blobs.append(blob)
        size = draw(st.one_of(st.just(len(blob)), st.integers(-2, 70), json_leaves))
        item["parameters"] = {"binary_data_size": size}
        if draw(st.integers(0, 9)) == 0:
            item["data"] = [1]
    elif draw(st.integers(0, 9)):
        item["data"] = draw(datas)
    if draw(st.integers(0, 4)) == 0:
        item["parameters"] = draw(json_values)
    return item


@st.composite
def requests(draw: st.DrawFn) -> tuple[bytes, int | None]:
    """A request-shaped body: inputs, outputs, id and parameters of any kind, blobs after."""
    blobs: list[bytes] = []
    header: dict[str, Any] = {"inputs": draw(st.lists(tensors(blobs), max_size=3))}
    if draw(st.integers(0, 3)) == 0:
        header["inputs"] = draw(json_values)
    if draw(st.booleans()):
        header["outputs"] = draw(
            st.one_of(
                st.lists(
                    st.fixed_dictionaries(
                        {"name": st.one_of(st.text(max_size=6), json_leaves)},
                        optional={"parameters": json_values},
                    ),
                    max_size=3,
                ),
                json_values,
            )
        )
    if draw(st.booleans()):
        header["id"] = draw(json_leaves)
    if draw(st.booleans()):
        header["parameters"] = draw(
            st.one_of(
                st.dictionaries(
                    st.sampled_from(["timeout", "binary_data_output", "priority", "x"]),
                    json_leaves,
                    max_size=3,
                ),
                json_values,
            )
        )
    text = json.dumps(header).encode()
    extra = draw(st.binary(max_size=8)) if draw(st.integers(0, 9)) == 0 else b""
    body = text + b"".join(blobs) + extra
    length = None if not blobs and draw(st.booleans()) else len(text)
    if draw(st.integers(0, 9)) == 0:
        length = draw(st.integers(-3, len(body) + 3))
    return body, length


@fuzz_settings(1000)
@given(requests())
def test_any_request_shaped_body_decodes_or_is_refused(case: tuple[bytes, int | None]) -> None:
    """Requests with wrong names, datatypes, shapes, data, sizes and blobs: refused cleanly,
    or decoded into tensors that match what they declare."""
    request = decode(*case)
    if request is not None:
        assert_consistent(request)


@fuzz_settings(500)
@given(st.one_of(st.text(max_size=30), st.text("0123456789", min_size=15, max_size=5000)))
# Found by this test in CI (2026-12-04): escapes made the message's repr of 30 characters 200 long.
@example("0" * 13 + "\x1f" * 6 + "\x08" * 2 + "\U00010d3a\U00011af9" + "\U00018cd6" * 6)
@example("\U00018cd6" * 40)
def test_any_header_number_parses_or_is_refused(text: str) -> None:
    """A Content-Length, Inference-Header-Content-Length or top_k of any text: the integer it
    spells, or a clean error (never int()'s own, whatever the length)."""
    try:
        value = parse_decimal(text, "Inference-Header-Content-Length")
    except ShipyardError as exc:
        error = exc
    else:
        assert value == int(text)
        return
    assert error.code is ErrorCode.INVALID_ARGUMENT
    assert len(error.message) < 200
    ascii_digits = text.isascii() and text.isdigit()
    assert not ascii_digits or len(text.lstrip("0")) > MAX_DECIMAL_DIGITS


@pytest.mark.parametrize(
    "field", ["data", "shape", "name", "datatype", "parameters", "timeout", "outputs"]
)
@pytest.mark.parametrize("datatype", ["BYTES", "FP32", "INT64", "UINT64", "BOOL"])
@fuzz_settings(15)
@given(
    st.one_of(st.integers(1, 1021), st.integers(980, 1021)),  # most often near the limit
    st.sampled_from(["1", '"a"', "true", "null", "1.5", "18446744073709551616"]),
)
def test_values_nested_up_to_jsons_limit(field: str, datatype: str, depth: int, leaf: str) -> None:
    """A value nested up to JSON's depth limit anywhere in a request: decoded or refused
    cleanly, never a RecursionError (deep BYTES data and the repr of deep shapes were)."""
    value = "[" * depth + leaf + "]" * depth
    tensor = {"name": "x", "datatype": datatype, "shape": [1], "data": [1]}
    header: dict[str, Any] = {"inputs": [tensor]}
    marker = "\x01nested"
    if field in ("timeout", "outputs"):
        header["parameters" if field == "timeout" else "outputs"] = (
            {"timeout": marker} if field == "timeout" else [{"name": marker}]
        )
    else:
        tensor[field] = marker
    body = json.dumps(header).replace(json.dumps(marker), value).encode()
    # Hypothesis raises the recursion limit while it runs a test; the server has Python's
    # default, so decode under that.
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(1000)
    try:
        request = decode(body)
    finally:
        sys.setrecursionlimit(limit)
    if request is not None:
        assert_consistent(request)
