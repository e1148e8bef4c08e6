"""The wire between the server and a Python worker process.

Messages are framed on a Unix stream socket: a 12-byte prefix (JSON header length, payload
length), a JSON header, then the payload. Tensors travel in shared memory (an :class:`Arena`,
a ``memfd`` both processes map) where they fit, and in the payload otherwise; a receiver reads
either as a NumPy array without a copy. Written once, used by both sides:
:mod:`~shipyard.backends.python` (the server) and :mod:`~shipyard.backends.python_worker`.

A tensor is described by ``{"name", "dtype", "shape", "nbytes", "at"}``: ``dtype`` is NumPy's
``dtype.str`` (``"<f4"``) or ``"bytes"`` for BYTES (the binary extension's length-prefixed
layout), ``at`` the offset in the arena, or -1 for the next bytes of the payload.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import socket
import struct
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from shipyard.protocol.binary import array_from_raw, array_to_raw
from shipyard.types import DataType

__all__ = ["Arena", "Channel", "PeerClosedError", "pack", "unpack"]

_PREFIX = struct.Struct("<IQ")
#: Arena offsets are multiples of this (cache lines; any dtype is aligned).
ALIGN = 64
Buffer = bytes | bytearray | memoryview
Array = npt.NDArray[Any]


class PeerClosedError(ConnectionError):
    """The other process closed its end of the socket (it exited or was killed)."""


class Channel:
    """Framed messages over a connected Unix stream socket; blocking, one caller at a time."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def send(self, header: Mapping[str, Any], buffers: Sequence[Buffer] = ()) -> None:
        """Send ``header`` and the concatenation of ``buffers`` as one message."""
        head = orjson.dumps(header)
        views = [memoryview(b).cast("B") for b in buffers if len(b)]
        total = sum(v.nbytes for v in views)
        parts = [memoryview(_PREFIX.pack(len(head), total) + head), *views]
        while parts:
            try:
                sent = self.sock.sendmsg(parts)
            except (BrokenPipeError, ConnectionResetError) as exc:
                raise PeerClosedError("the worker closed the connection") from exc
            while sent:
                first = parts[0]
                if sent >= first.nbytes:
                    sent -= first.nbytes
                    parts.pop(0)
                else:
                    parts[0] = first[sent:]
                    sent = 0

    def recv(self) -> tuple[dict[str, Any], bytearray]:
        """Receive one message: its header and its payload (a fresh buffer)."""
        prefix = bytearray(_PREFIX.size)
        self._fill(memoryview(prefix))
        head_size, payload_size = _PREFIX.unpack(prefix)
        head = bytearray(head_size)
        self._fill(memoryview(head))
        payload = bytearray(payload_size)
        self._fill(memoryview(payload))
        header: dict[str, Any] = orjson.loads(head)
        return header, payload

    def _fill(self, view: memoryview) -> None:
        while view.nbytes:
            try:
                got = self.sock.recv_into(view)
            except ConnectionResetError as exc:
                raise PeerClosedError("the worker closed the connection") from exc
            if got == 0:
                raise PeerClosedError("the worker closed the connection")
            view = view[got:]

    def close(self) -> None:
        """Close the socket (the peer's next read sees the end)."""
        self.sock.close()


class Arena:
    """Shared memory both processes map; the sender places tensors, the receiver views them."""

    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.size = size
        self._map = mmap.mmap(fd, size) if size else None
        self._bytes: Array = (
            np.frombuffer(self._map, dtype=np.uint8) if self._map is not None else np.empty(0)
        )
        self._base = int(self._bytes.ctypes.data) if size else 0

    @classmethod
    def create(cls, name: str, size: int) -> Arena:
        """A new arena of ``size`` bytes (0, or where ``memfd`` is missing: an empty one)."""
        if size <= 0 or not hasattr(os, "memfd_create"):
            return cls(-1, 0)
        fd = os.memfd_create(name, os.MFD_CLOEXEC)
        try:
            os.ftruncate(fd, size)
            return cls(fd, size)
        except BaseException:
            os.close(fd)
            raise

    def view(self, offset: int, nbytes: int) -> Array:
        """The bytes at ``offset`` (an array of uint8, no copy)."""
        return self._bytes[offset : offset + nbytes]

    def offset_of(self, array: Array) -> int | None:
        """Where ``array``'s bytes already lie in the arena, if they do (no copy needed)."""
        if not self.size or not array.flags.c_contiguous or array.dtype.hasobject:
            return None
        start = int(array.ctypes.data) - self._base
        if start >= 0 and start + array.nbytes <= self.size:
            return start
        return None

    def close(self) -> None:
        """Unmap and close; views still held elsewhere keep the memory until they go."""
        self._bytes = np.empty(0)
        if self._map is not None:
            # A caller may still hold a view: the mapping then goes when the view does.
            with contextlib.suppress(BufferError):
                self._map.close()
            self._map = None
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _raw(array: Array) -> tuple[str, Array | bytes]:
    """``(dtype text, the bytes to send)`` of one tensor."""
    if array.dtype.hasobject or array.dtype.kind in ("S", "U"):
        return "bytes", array_to_raw(DataType.BYTES, array)
    if not array.flags.c_contiguous:
        array = np.ascontiguousarray(array)
    return array.dtype.str, array


def _bytes_of(array: Array) -> memoryview:
    """The bytes of a C-contiguous array, without a copy."""
    return array.reshape(-1).view(np.uint8).data


def pack(
    arrays: Mapping[str, Array], arena: Arena, start: int
) -> tuple[list[dict[str, Any]], list[Buffer], int]:
    """Describe ``arrays``, placing each in the arena from ``start`` when it fits.

    Returns the descriptions, the payload buffers (tensors that did not fit, in order) and
    the arena offset after the last tensor placed.
    """
    described: list[dict[str, Any]] = []
    buffers: list[Buffer] = []
    top = start
    for name, array in arrays.items():
        dtype, data = _raw(array)
        nbytes = len(data) if isinstance(data, bytes) else data.nbytes
        entry: dict[str, Any] = {
            "name": name,
            "dtype": dtype,
            "shape": list(array.shape),
            "nbytes": nbytes,
            "at": -1,
        }
        already = arena.offset_of(data) if not isinstance(data, bytes) else None
        if already is not None:
            entry["at"] = already
        elif arena.size and top + nbytes <= arena.size:
            target = arena.view(top, nbytes)
            if isinstance(data, bytes):
                target[:] = np.frombuffer(data, dtype=np.uint8)
            else:
                target[:] = data.reshape(-1).view(np.uint8)
            entry["at"] = top
            top += -(-nbytes // ALIGN) * ALIGN
        else:
            buffers.append(
                data if isinstance(data, bytes) else data.reshape(-1).view(np.uint8).data
            )
        described.append(entry)
    return described, buffers, top


def unpack(
    described: Sequence[Mapping[str, Any]], arena: Arena, payload: bytearray, copy: bool
) -> dict[str, Array]:
    """The arrays ``described``: views on the arena and the payload, or copies (``copy``)."""
    arrays: dict[str, Array] = {}
    position = 0
    whole = memoryview(payload)
    for entry in described:
        nbytes = int(entry["nbytes"])
        if entry["at"] >= 0:
            raw: Array | memoryview = arena.view(int(entry["at"]), nbytes)
        else:
            raw = whole[position : position + nbytes]
            position += nbytes
        shape = [int(d) for d in entry["shape"]]
        if entry["dtype"] == "bytes":
            count = int(np.prod(shape)) if shape else 1
            data = raw.tobytes() if isinstance(raw, np.ndarray) else raw
            arrays[entry["name"]] = array_from_raw(
                entry["name"], DataType.BYTES, shape, data, count
            )
            continue
        dtype = np.dtype(entry["dtype"])
        if isinstance(raw, np.ndarray):  # in the arena: reused by the next message
            array = raw.view(dtype).reshape(shape)
            if copy:
                array = array.copy()
        else:  # in this message's own payload: a view is safe to keep
            array = np.frombuffer(raw, dtype=dtype).reshape(shape)
        arrays[entry["name"]] = array
    return arrays
