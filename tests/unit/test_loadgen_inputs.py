"""Tests for shipyard.loadgen.inputs: the request a benchmark builds from model metadata."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shipyard.errors import LoadGeneratorError
from shipyard.loadgen.inputs import build_inputs, parse_shapes
from shipyard.types import DataType

METADATA = {
    "name": "m",
    "inputs": [
        {"name": "pixels", "datatype": "FP32", "shape": [-1, 1, 28, 28]},
        {"name": "ids", "datatype": "INT64", "shape": [-1, -1]},
        {"name": "text", "datatype": "BYTES", "shape": [2]},
    ],
}


def test_dynamic_dimensions_become_one_with_the_declared_datatypes() -> None:
    """Every input gets random data of its datatype; -1 dimensions are 1."""
    inputs = build_inputs(METADATA)
    assert [(n, d, a.shape) for n, d, a in inputs] == [
        ("pixels", DataType.FP32, (1, 1, 28, 28)),
        ("ids", DataType.INT64, (1, 1)),
        ("text", DataType.BYTES, (2,)),
    ]
    assert inputs[0][2].dtype == np.float32
    assert inputs[1][2].dtype == np.int64


def test_shape_overrides_and_npz_arrays_replace_the_defaults(tmp_path: Path) -> None:
    """--shape sets an input's shape; an .npz array of that name is sent as it is."""
    path = tmp_path / "data.npz"
    np.savez(path, pixels=np.zeros((3, 1, 28, 28), np.float64))
    inputs = build_inputs(METADATA, path, parse_shapes(["ids:2,7"]))
    assert inputs[0][2].shape == (3, 1, 28, 28)
    assert inputs[0][2].dtype == np.float32  # converted to the declared datatype
    assert inputs[1][2].shape == (2, 7)


@pytest.mark.parametrize("spec", ["pixels", "pixels:1,x", ":1,2", "pixels:-1,2"])
def test_bad_shape_overrides_are_refused(spec: str) -> None:
    """A --shape without NAME:DIMS of non-negative integers is a LoadGeneratorError."""
    with pytest.raises(LoadGeneratorError, match="--shape"):
        parse_shapes([spec])


def test_unknown_names_and_unrelated_files_are_refused(tmp_path: Path) -> None:
    """A --shape for no input, or an .npz with no input's name, names the model's inputs."""
    with pytest.raises(LoadGeneratorError, match="inputs: pixels, ids, text"):
        build_inputs(METADATA, shapes={"nope": [1]})
    path = tmp_path / "other.npz"
    np.savez(path, labels=np.zeros(3))
    with pytest.raises(LoadGeneratorError, match="no array is named after an input"):
        build_inputs(METADATA, path)
    with pytest.raises(LoadGeneratorError, match="cannot read"):
        build_inputs(METADATA, tmp_path / "missing.npz")
