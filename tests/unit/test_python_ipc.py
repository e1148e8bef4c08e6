"""The server ↔ worker wire: framing over a socket pair, tensors in shared memory or inline."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from shipyard.backends.python_ipc import Arena, Channel, PeerClosedError, pack, unpack
from shipyard.types import DataType

NUMERIC = [d for d in DataType if d is not DataType.BYTES]


@pytest.fixture
def pair() -> Iterator[tuple[Channel, Channel]]:
    """Two connected channels."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    left, right = Channel(a), Channel(b)
    try:
        yield left, right
    finally:
        left.close()
        right.close()


@pytest.fixture
def arena() -> Iterator[Arena]:
    """A 4 KiB arena."""
    value = Arena.create("test", 4096)
    try:
        yield value
    finally:
        value.close()


def roundtrip(arrays: dict[str, Any], arena: Arena) -> dict[str, Any]:
    """pack then unpack, with the inline bytes concatenated as a payload would be."""
    described, buffers, _ = pack(arrays, arena, 0)
    payload = bytearray(b"".join(bytes(b) for b in buffers))
    return unpack(described, arena, payload, copy=True)


@settings(max_examples=60, deadline=None)
@given(
    datatype=st.sampled_from(NUMERIC),
    shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=6),
    data=st.data(),
)
def test_any_numeric_tensor_survives(datatype: DataType, shape: tuple[int, ...], data: Any) -> None:
    """Every numeric datatype and shape comes back bit-exact, in the arena or inline."""
    array = data.draw(hnp.arrays(datatype.numpy, shape))
    for size in (4096, 0):  # room in shared memory; none (everything inline)
        arena = Arena.create("prop", size)
        try:
            back = roundtrip({"t": array}, arena)["t"]
        finally:
            arena.close()
        assert back.dtype == array.dtype
        assert back.shape == array.shape
        assert back.tobytes() == array.tobytes()


def test_bytes_tensors_survive(arena: Arena) -> None:
    """BYTES (object arrays of bytes, str encoded as UTF-8) come back as bytes."""
    array = np.array([[b"a", b""], ["\u00e9t\u00e9", b"\x00\xff"]], dtype=object)
    back = roundtrip({"s": array}, arena)["s"]
    assert back.shape == (2, 2)
    assert back.tolist() == [[b"a", b""], ["\u00e9t\u00e9".encode(), b"\x00\xff"]]


def test_tensors_that_do_not_fit_go_inline(arena: Arena) -> None:
    """A tensor larger than what is left of the arena travels in the payload."""
    small = np.arange(8, dtype=np.float32)
    large = np.arange(4096, dtype=np.float32)  # 16 KiB > the 4 KiB arena
    described, buffers, top = pack({"small": small, "large": large}, arena, 0)
    assert described[0]["at"] == 0
    assert described[1]["at"] == -1
    assert top == 64  # one aligned slot used
    assert sum(len(bytes(b)) for b in buffers) == large.nbytes
    payload = bytearray(b"".join(bytes(b) for b in buffers))
    back = unpack(described, arena, payload, copy=True)
    np.testing.assert_array_equal(back["large"], large)
    np.testing.assert_array_equal(back["small"], small)


def test_an_array_already_in_the_arena_is_not_copied(arena: Arena) -> None:
    """Returning an input as it is (identity) describes its place instead of copying it."""
    described, _, top = pack({"x": np.arange(4, dtype=np.int64)}, arena, 0)
    view = unpack(described, arena, bytearray(), copy=False)["x"]
    again, buffers, _ = pack({"y": view}, arena, top)
    assert again[0]["at"] == described[0]["at"]
    assert buffers == []


def test_copies_do_not_change_when_the_arena_is_reused(arena: Arena) -> None:
    """copy=True gives arrays that survive the next message overwriting the arena."""
    described, _, _ = pack({"x": np.ones(4, np.float32)}, arena, 0)
    kept = unpack(described, arena, bytearray(), copy=True)["x"]
    pack({"x": np.zeros(4, np.float32)}, arena, 0)
    np.testing.assert_array_equal(kept, np.ones(4, np.float32))


def test_messages_of_any_size_are_framed(pair: tuple[Channel, Channel]) -> None:
    """A header and a multi-megabyte payload arrive whole, in order, over a socket pair."""
    left, right = pair
    big = np.arange(3 * 1024 * 1024, dtype=np.uint8)
    sender = threading.Thread(target=lambda: [left.send({"n": 1}, [big.data]), left.send({"n": 2})])
    sender.start()
    first, payload = right.recv()
    second, empty = right.recv()
    sender.join()
    assert first == {"n": 1}
    assert bytes(payload) == big.tobytes()
    assert second == {"n": 2}
    assert empty == bytearray()


def test_a_closed_peer_is_reported(pair: tuple[Channel, Channel]) -> None:
    """recv() on a socket whose peer closed raises PeerClosedError, never hangs."""
    left, right = pair
    left.close()
    with pytest.raises(PeerClosedError):
        right.recv()


def test_no_arena_means_everything_inline() -> None:
    """An arena of 0 bytes (or without memfd) places nothing."""
    arena = Arena.create("none", 0)
    described, buffers, top = pack({"x": np.ones(3, np.float32)}, arena, 0)
    assert described[0]["at"] == -1
    assert len(buffers) == 1
    assert top == 0
    arena.close()
