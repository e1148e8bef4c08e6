"""Raw tensor bytes as the binary extension (HTTP) and ``raw_*_contents`` (gRPC) carry them.

Little-endian, row-major, no padding; BOOL is one byte; a BYTES element is a 4-byte
little-endian length followed by its bytes.
"""

from __future__ import annotations

import struct

import numpy as np

from shipyard.errors import InvalidInputError, brief
from shipyard.types import Array, DataType

__all__ = ["MAX_DIMS", "array_from_raw", "array_to_raw", "element_count"]

_LENGTH = struct.Struct("<I")
#: The most dimensions a tensor may have (NumPy's own limit); more is a 400.
MAX_DIMS = 64


def element_count(name: str, shape: object, limit: int) -> int:
    """Validate a wire shape (non-negative integers) and return its element count."""
    if not isinstance(shape, list | tuple) or not all(
        isinstance(d, int) and not isinstance(d, bool) for d in shape
    ):
        raise InvalidInputError(
            f"input {name!r}: shape must be a list of integers, got {brief(shape)}"
        )
    if len(shape) > MAX_DIMS:
        raise InvalidInputError(
            f"input {name!r}: shape has {len(shape)} dimensions; at most {MAX_DIMS} are supported"
        )
    count = 1
    others = 1  # the product of the dimensions that are not 0
    for dim in shape:
        if dim < 0:
            raise InvalidInputError(f"input {name!r}: shape {list(shape)} has a negative dimension")
        count *= dim
        others *= dim or 1
    if count == 0 and others > limit:
        # Empty, but NumPy still refuses a shape whose other dimensions overflow.
        raise InvalidInputError(
            f"input {name!r}: shape {list(shape)} is empty but its other dimensions exceed the "
            f"server's limit of {limit} elements (max_tensor_elements)"
        )
    if count > limit:
        raise InvalidInputError(
            f"input {name!r}: shape {list(shape)} has {count} elements, over the server's "
            f"limit of {limit} (max_tensor_elements)"
        )
    return count


def array_from_raw(
    name: str, datatype: DataType, shape: list[int], raw: bytes | memoryview, count: int
) -> Array:
    """Decode ``raw`` into an array of ``shape``; raise InvalidInputError on a size mismatch."""
    if datatype is DataType.BYTES:
        return _bytes_from_raw(name, shape, raw, count)
    expected = count * datatype.itemsize
    if len(raw) != expected:
        raise InvalidInputError(
            f"input {name!r}: {len(raw)} bytes of binary data, but shape {shape} of "
            f"{datatype.value} needs {expected} ({count} x {datatype.itemsize})"
        )
    if datatype is DataType.BOOL and count and np.frombuffer(raw, dtype=np.uint8).max() > 1:
        raise InvalidInputError(f"input {name!r}: BOOL bytes must be 0 (false) or 1 (true)")
    return np.frombuffer(raw, dtype=datatype.numpy).reshape(shape)


def _bytes_from_raw(name: str, shape: list[int], raw: bytes | memoryview, count: int) -> Array:
    out = np.empty(count, dtype=object)
    view = memoryview(raw)
    offset, end = 0, len(view)
    for i in range(count):
        if offset + 4 > end:
            raise InvalidInputError(
                f"input {name!r}: BYTES data ends after {i} of {count} elements"
            )
        (length,) = _LENGTH.unpack_from(view, offset)
        offset += 4
        if offset + length > end:
            raise InvalidInputError(
                f"input {name!r}: BYTES element {i} claims {length} bytes but only "
                f"{end - offset} remain"
            )
        out[i] = bytes(view[offset : offset + length])
        offset += length
    if offset != end:
        raise InvalidInputError(
            f"input {name!r}: {end - offset} bytes left over after {count} BYTES elements"
        )
    return out.reshape(shape)


def array_to_raw(datatype: DataType, array: Array) -> bytes:
    """Encode ``array`` in the wire's raw layout."""
    if datatype is DataType.BYTES:
        parts = []
        for item in array.reshape(-1):
            data = item if isinstance(item, bytes) else str(item).encode("utf-8")
            parts.append(_LENGTH.pack(len(data)))
            parts.append(data)
        return b"".join(parts)
    target = datatype.numpy
    if array.dtype != target:
        array = array.astype(target)
    return np.ascontiguousarray(array).tobytes()
