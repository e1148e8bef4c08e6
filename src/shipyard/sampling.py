"""Concrete example shapes and random tensors drawn from a model's signature.

One place for what parity checks (``convert``), accuracy guards and benchmarks (``optimize``)
and the load generator (``loadgen``) all need when no real data is given.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from shipyard.types import Array, DataType, TensorSpec

__all__ = ["example_shape", "random_tensor"]


def example_shape(spec: TensorSpec, batch: int, other: int = 8) -> tuple[int, ...]:
    """A concrete shape for ``spec``: dim 0 of -1 becomes ``batch``, other -1 dims ``other``."""
    return tuple((batch if i == 0 else other) if d == -1 else d for i, d in enumerate(spec.shape))


def random_tensor(
    datatype: DataType, shape: Sequence[int], rng: np.random.Generator, normal: bool = False
) -> Array:
    """Random data of a numeric or BOOL ``datatype``: floats uniform in [0, 1) (standard normal
    with ``normal``), booleans, or small integers (0..9, valid as ids and indices).

    BYTES has no meaningful random content: callers decide what to do with it.
    """
    if datatype is DataType.BYTES:
        raise ValueError("random_tensor cannot draw BYTES data")
    dtype = datatype.numpy
    if dtype.kind == "f":
        values = rng.standard_normal(shape) if normal else rng.random(shape)
        return values.astype(dtype)
    if dtype.kind == "b":
        return rng.integers(0, 2, shape).astype(dtype)
    return rng.integers(0, 10, shape).astype(dtype)
