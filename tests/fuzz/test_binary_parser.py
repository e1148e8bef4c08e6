"""Fuzzing the binary tensor parser: any raw bytes for any datatype and shape, and any
length-prefixed BYTES sequence, give an array or a clean InvalidInputError; what decodes
encodes back to the same bytes."""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from shipyard.errors import ErrorCode, ShipyardError
from shipyard.protocol.binary import MAX_DIMS, array_from_raw, array_to_raw, element_count
from shipyard.types import Array, DataType
from tests.fuzz.profile import fuzz_settings

LIMIT = 1 << 12


def parse(datatype: DataType, shape: list[int], raw: bytes) -> Array | None:
    """Parse, accepting only an array or INVALID_ARGUMENT."""
    try:
        count = element_count("x", shape, LIMIT)
        return array_from_raw("x", datatype, shape, raw, count)
    except ShipyardError as exc:
        error = exc
    assert error.code is ErrorCode.INVALID_ARGUMENT, error.message
    assert error.message.startswith("input 'x'")
    return None


shapes = st.one_of(
    st.lists(st.integers(-1, 4), max_size=4),
    st.lists(st.integers(0, 2**40), max_size=3),
    st.lists(st.integers(1, 1), min_size=MAX_DIMS - 1, max_size=MAX_DIMS + 3),
)


@fuzz_settings(1000)
@given(st.sampled_from(list(DataType)), shapes, st.binary(max_size=80))
def test_any_raw_bytes_parse_or_are_refused(
    datatype: DataType, shape: list[int], raw: bytes
) -> None:
    """Random bytes for a random datatype and shape: an array of that shape whose encoding is
    the same bytes, or a clean error."""
    array = parse(datatype, shape, raw)
    if array is None:
        return
    assert list(array.shape) == shape
    assert array_to_raw(datatype, array) == raw


@st.composite
def byte_sequences(draw: st.DrawFn) -> tuple[list[int], bytes]:
    """A BYTES blob built from elements, then perhaps corrupted, and the shape it claims."""
    items = draw(st.lists(st.binary(max_size=6), max_size=6))
    raw = b"".join(struct.pack("<I", len(item)) + item for item in items)
    corruption = draw(st.integers(0, 4))
    if corruption == 1 and raw:
        raw = raw[: draw(st.integers(0, len(raw) - 1))]  # cut short
    elif corruption == 2:
        raw += draw(st.binary(min_size=1, max_size=6))  # trailing garbage
    elif corruption == 3:
        raw = struct.pack("<I", draw(st.integers(0, 2**32 - 1))) + raw  # a bogus length first
    claimed = len(items) + draw(st.sampled_from([0, 0, 0, -1, 1]))
    return [claimed], raw


@fuzz_settings(1000)
@given(byte_sequences())
def test_any_bytes_elements_parse_or_are_refused(case: tuple[list[int], bytes]) -> None:
    """Length-prefixed BYTES, cut short, padded or mislabelled: exact elements or a clean error."""
    shape, raw = case
    array = parse(DataType.BYTES, shape, raw)
    if array is not None:
        assert array_to_raw(DataType.BYTES, array) == raw


@fuzz_settings(500)
@given(
    st.one_of(
        st.lists(st.one_of(st.integers(-(2**70), 2**70), st.booleans(), st.floats()), max_size=8),
        st.lists(st.integers(0, 3), max_size=80),
        st.integers(),
        st.text(max_size=4),
        st.none(),
    )
)
def test_any_shape_counts_or_is_refused(shape: Any) -> None:
    """element_count of anything: the product of a valid shape, or a clean error."""
    try:
        count = element_count("x", shape, LIMIT)
    except ShipyardError as exc:
        error = exc
    else:
        assert len(shape) <= MAX_DIMS
        assert count == math.prod(shape) <= LIMIT
        assert np.empty(shape, dtype=np.uint8).size == count  # NumPy takes every such shape
        return
    assert error.code is ErrorCode.INVALID_ARGUMENT
