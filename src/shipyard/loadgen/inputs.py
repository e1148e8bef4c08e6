"""The tensors a benchmark sends, built from the model's metadata.

Every input of the metadata gets an array: from ``--input FILE.npz`` when the file has an array
of that name (its shape is sent as is, right or wrong), else random data of the input's
datatype and shape with each dynamic dimension (``-1``) set to 1, or to a ``--shape NAME:DIMS``
override.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from shipyard.errors import LoadGeneratorError
from shipyard.sampling import random_tensor
from shipyard.types import Array, DataType

__all__ = ["Input", "build_inputs", "parse_shapes"]

#: One input: its name, datatype and the array sent.
Input = tuple[str, DataType, Array]


def parse_shapes(specs: Sequence[str]) -> dict[str, list[int]]:
    """``["x:1,28,28", ...]`` as ``{"x": [1, 28, 28]}``."""
    shapes: dict[str, list[int]] = {}
    for spec in specs:
        name, _, dims = spec.rpartition(":")
        try:
            shape = [int(d) for d in dims.split(",")] if dims else []
        except ValueError:
            shape = [-1]
        if not name or any(d < 0 for d in shape):
            raise LoadGeneratorError(
                f"--shape {spec!r}: expected NAME:DIMS with non-negative sizes, e.g. input:1,28,28"
            )
        shapes[name] = shape
    return shapes


def _random(datatype: DataType, shape: Sequence[int], rng: np.random.Generator) -> Array:
    if datatype is DataType.BYTES:
        return np.full(shape, b"shipyard", dtype=object)
    return random_tensor(datatype, shape, rng)


def _load_npz(path: Path) -> dict[str, Array]:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise LoadGeneratorError(f"--input {path}: cannot read it as .npz ({exc})") from exc


def build_inputs(
    metadata: Mapping[str, Any],
    arrays_file: Path | None = None,
    shapes: Mapping[str, list[int]] | None = None,
    seed: int = 0,
) -> list[Input]:
    """One array per input of ``metadata`` (the V2 model metadata dictionary)."""
    specs = metadata.get("inputs")
    if not isinstance(specs, list) or not specs:
        raise LoadGeneratorError("the model's metadata lists no inputs")
    names = [str(spec.get("name")) for spec in specs]
    shapes = dict(shapes or {})
    unknown = sorted(set(shapes) - set(names))
    if unknown:
        raise LoadGeneratorError(
            f"--shape names {', '.join(unknown)}, not an input (inputs: {', '.join(names)})"
        )
    given = _load_npz(arrays_file) if arrays_file is not None else {}
    if arrays_file is not None and not set(names) & set(given):
        raise LoadGeneratorError(
            f"--input {arrays_file}: no array is named after an input (inputs: "
            f"{', '.join(names)}; arrays: {', '.join(given) or 'none'})"
        )
    rng = np.random.default_rng(seed)
    inputs: list[Input] = []
    for spec, name in zip(specs, names, strict=True):
        try:
            datatype = DataType.parse(str(spec.get("datatype")))
        except ValueError as exc:
            raise LoadGeneratorError(f"input {name!r}: {exc}") from exc
        if name in given:
            array = given[name]
            if datatype is not DataType.BYTES:
                try:
                    array = array.astype(datatype.numpy)
                except (TypeError, ValueError) as exc:
                    raise LoadGeneratorError(
                        f"--input array {name!r} ({array.dtype}) is not {datatype.value}"
                    ) from exc
            inputs.append((name, datatype, array))
            continue
        if name in shapes:
            shape = shapes[name]
        else:
            shape = [1 if int(d) < 0 else int(d) for d in spec.get("shape", [])]
        inputs.append((name, datatype, _random(datatype, shape, rng)))
    return inputs
