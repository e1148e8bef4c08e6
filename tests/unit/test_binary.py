"""Tests for shipyard.protocol.binary: the raw little-endian tensor layout."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import pytest

from shipyard.errors import InvalidInputError
from shipyard.protocol.binary import array_from_raw, array_to_raw, element_count
from shipyard.types import DataType

# -- element_count -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "count"),
    [([], 1), ([0], 0), ([3], 3), ([2, 3, 4], 24), ((5, 0, 7), 0), ([1, 1, 1, 1], 1)],
)
def test_element_count(shape: Any, count: int) -> None:
    """The count is the product of the dims (1 for a scalar, 0 if any dim is 0)."""
    assert element_count("x", shape, 100) == count


def test_element_count_at_the_limit_is_allowed() -> None:
    """A tensor with exactly max_tensor_elements elements passes."""
    assert element_count("x", [10, 10], 100) == 100


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        (None, "shape must be a list of integers, got None"),
        ("[2]", "shape must be a list of integers"),
        ([2.0], "shape must be a list of integers"),
        ([True, 2], "shape must be a list of integers"),
        (["2"], "shape must be a list of integers"),
        ([[2]], "shape must be a list of integers"),
        ([2, -1], r"shape \[2, -1\] has a negative dimension"),
        ([11, 10], r"has 110 elements, over the server's limit of 100 \(max_tensor_elements\)"),
        ([2**40, 2**40], "over the server's limit"),
    ],
)
def test_element_count_rejects_bad_shapes(shape: Any, message: str) -> None:
    """Non-integer, negative and oversized shapes are InvalidInputErrors naming the input."""
    with pytest.raises(InvalidInputError, match=message) as info:
        element_count("in0", shape, 100)
    assert "input 'in0'" in info.value.message


def test_negative_dim_is_reported_even_when_another_dim_is_zero() -> None:
    """A negative dim is refused even if the product would be zero."""
    with pytest.raises(InvalidInputError, match="negative dimension"):
        element_count("x", [0, -3], 100)


# -- fixed-size datatypes ----------------------------------------------------------------------


def test_known_little_endian_layout() -> None:
    """UINT32 [2, 2] is four 4-byte little-endian words in row-major order (spec example)."""
    raw = struct.pack("<4I", 1, 2, 3, 4)
    array = array_from_raw("x", DataType.UINT32, [2, 2], raw, 4)
    assert array.dtype == np.dtype("<u4")
    assert array.tolist() == [[1, 2], [3, 4]]
    assert array_to_raw(DataType.UINT32, array) == raw


def test_bool_is_one_byte_per_element() -> None:
    """BOOL encodes true as 1 and false as 0, one byte each."""
    array = np.array([True, False, True])
    assert array_to_raw(DataType.BOOL, array) == b"\x01\x00\x01"
    decoded = array_from_raw("b", DataType.BOOL, [3], b"\x01\x00\x01", 3)
    assert decoded.tolist() == [True, False, True]


def test_bool_bytes_other_than_zero_and_one_are_refused() -> None:
    """A BOOL byte that is neither 0 nor 1 is invalid input, not a silently odd bool."""
    with pytest.raises(InvalidInputError, match="BOOL"):
        array_from_raw("b", DataType.BOOL, [2], b"\x01\x02", 2)


def test_fp16_round_trip() -> None:
    """FP16 travels as 2-byte IEEE halves."""
    array = np.array([1.5, -0.0, np.inf, 65504.0], np.float16)
    raw = array_to_raw(DataType.FP16, array)
    assert raw == array.astype("<f2").tobytes()
    assert len(raw) == 8
    np.testing.assert_array_equal(array_from_raw("h", DataType.FP16, [4], raw, 4), array)


def test_big_endian_input_is_written_little_endian() -> None:
    """array_to_raw converts a big-endian array to the wire's little-endian order."""
    array = np.array([1, 256], dtype=">i4")
    assert array_to_raw(DataType.INT32, array) == struct.pack("<2i", 1, 256)


def test_non_contiguous_array_is_written_row_major() -> None:
    """A transposed (Fortran-ordered) view is encoded in logical row-major order."""
    array = np.arange(6, dtype=np.int16).reshape(2, 3).T
    raw = array_to_raw(DataType.INT16, array)
    assert struct.unpack("<6h", raw) == (0, 3, 1, 4, 2, 5)


def test_array_is_cast_to_the_declared_datatype() -> None:
    """An int64 array written as INT8 is cast to one byte per element."""
    assert array_to_raw(DataType.INT8, np.array([1, -1], np.int64)) == b"\x01\xff"


def test_memoryview_input_is_accepted() -> None:
    """array_from_raw decodes from a memoryview slice without copying first."""
    body = memoryview(b"xx" + struct.pack("<2d", 1.25, -2.5))
    array = array_from_raw("d", DataType.FP64, [2], body[2:], 2)
    assert array.tolist() == [1.25, -2.5]


@pytest.mark.parametrize(("size", "expected"), [(15, 16), (17, 16), (0, 16)])
def test_size_mismatch_names_expected_bytes(size: int, expected: int) -> None:
    """A raw size other than count x itemsize is refused with both numbers in the message."""
    with pytest.raises(InvalidInputError) as info:
        array_from_raw("x", DataType.FP32, [2, 2], b"\0" * size, 4)
    assert f"{size} bytes of binary data" in info.value.message
    assert f"needs {expected} (4 x 4)" in info.value.message


def test_empty_tensor() -> None:
    """A zero-element tensor decodes from zero bytes with its shape intact."""
    array = array_from_raw("x", DataType.INT64, [0, 3], b"", 0)
    assert array.shape == (0, 3)
    assert array_to_raw(DataType.INT64, array) == b""


# -- BYTES -------------------------------------------------------------------------------------


def _bytes_raw(*items: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(i)) + i for i in items)


def test_bytes_elements_are_length_prefixed() -> None:
    """Each BYTES element is a 4-byte little-endian length then the bytes."""
    array = np.array([b"ab", b"", b"\xff\x00"], dtype=object)
    raw = array_to_raw(DataType.BYTES, array)
    assert raw == b"\x02\0\0\0ab" + b"\0\0\0\0" + b"\x02\0\0\0\xff\x00"
    decoded = array_from_raw("s", DataType.BYTES, [3], raw, 3)
    assert decoded.dtype == np.dtype(object)
    assert decoded.tolist() == [b"ab", b"", b"\xff\x00"]


def test_bytes_keeps_the_shape() -> None:
    """BYTES data decodes into the requested shape, row-major."""
    raw = _bytes_raw(b"a", b"b", b"c", b"d", b"e", b"f")
    assert array_from_raw("s", DataType.BYTES, [2, 3], raw, 6).tolist() == [
        [b"a", b"b", b"c"],
        [b"d", b"e", b"f"],
    ]


def test_bytes_str_items_are_utf8_encoded() -> None:
    """A str element (as ONNX Runtime returns) is written as its UTF-8 bytes."""
    raw = array_to_raw(DataType.BYTES, np.array(["é"], dtype=object))
    assert raw == b"\x02\0\0\0\xc3\xa9"


@pytest.mark.parametrize(
    ("raw", "count", "message"),
    [
        (b"", 1, "BYTES data ends after 0 of 1 elements"),
        (_bytes_raw(b"a") + b"\x01\0", 2, "ends after 1 of 2 elements"),
        (b"\x05\0\0\0abc", 1, "element 0 claims 5 bytes but only 3 remain"),
        (_bytes_raw(b"a") + b"!", 1, "1 bytes left over after 1 BYTES elements"),
        (b"\xff\xff\xff\xff", 1, "claims 4294967295 bytes but only 0 remain"),
    ],
)
def test_malformed_bytes(raw: bytes, count: int, message: str) -> None:
    """Truncated elements, lying lengths and trailing bytes are InvalidInputErrors."""
    with pytest.raises(InvalidInputError, match=message):
        array_from_raw("s", DataType.BYTES, [count], raw, count)


def test_read_only_decoded_arrays_are_still_usable() -> None:
    """Decoded arrays can be concatenated and re-encoded (what the batcher does)."""
    raw = struct.pack("<2f", 1.0, 2.0)
    a = array_from_raw("x", DataType.FP32, [1, 2], raw, 2)
    joined: np.ndarray[Any, Any] = np.concatenate([a, a])
    assert array_to_raw(DataType.FP32, joined) == raw * 2
