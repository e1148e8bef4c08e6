"""The worker's side of the contract, in process: loading user code and checking its outputs."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from shipyard import ModelContext, PythonModel
from shipyard.backends.python_worker import ContractError, check_outputs, load_callable
from shipyard.types import DataType, TensorSpec

SPECS = {
    "y": TensorSpec("y", DataType.FP32, (-1, 2)),
    "label": TensorSpec("label", DataType.BYTES, (-1,)),
    "count": TensorSpec("count", DataType.INT64, (-1, 1)),
}


@pytest.fixture(autouse=True)
def _restore_imports() -> Iterator[None]:
    """Undo what loading user modules does to sys.path and sys.modules (a worker's own)."""
    path, modules = list(sys.path), set(sys.modules)
    yield
    sys.path[:] = path
    for name in set(sys.modules) - modules:
        del sys.modules[name]


def context(folder: Path) -> ModelContext:
    """A context for a model in ``folder``."""
    return ModelContext("m", 1, folder, (), tuple(SPECS.values()), 8, {"k": 3}, 0)


def test_outputs_are_cast_within_their_kind() -> None:
    """float64 from NumPy arithmetic becomes the declared FP32; int32 becomes INT64."""
    out = check_outputs(
        {"y": np.ones((2, 2)), "count": np.ones((2, 1), np.int32)},
        ["y", "count"],
        SPECS,
        rows=2,
    )
    assert out["y"].dtype == np.float32
    assert out["count"].dtype == np.int64


def test_an_output_of_another_kind_is_refused() -> None:
    """Floats for an INT64 output break the contract, naming the output and both types."""
    with pytest.raises(ContractError, match=r"'count' is declared INT64 .* float64"):
        check_outputs({"count": np.ones((2, 1))}, ["count"], SPECS, rows=2)


@pytest.mark.parametrize(
    ("returned", "message"),
    [
        ([np.ones((2, 2))], "must return a dict"),
        ({}, "returned no output 'y'"),
        ({"y": np.ones((2, 3))}, r"shape \[2, 3\], but model.toml declares \[-1, 2\]"),
        ({"y": np.ones((3, 2))}, "dim 0 must be the batch size 2"),
    ],
    ids=["not-a-dict", "missing", "shape", "batch"],
)
def test_contract_violations_name_the_output(returned: object, message: str) -> None:
    """A missing output, a wrong shape or batch size is a ContractError saying which."""
    with pytest.raises(ContractError, match=message):
        check_outputs(returned, ["y"], SPECS, rows=2)


def test_bytes_outputs_take_strings_and_bytes() -> None:
    """A BYTES output may be an object array or a NumPy string array; numbers are refused."""
    out = check_outputs({"label": np.array(["a", "b"])}, ["label"], SPECS, rows=2)
    assert out["label"].shape == (2,)
    with pytest.raises(ContractError, match="declared BYTES"):
        check_outputs({"label": np.ones(2)}, ["label"], SPECS, rows=2)


def test_only_the_wanted_outputs_are_kept() -> None:
    """Outputs the request did not ask for are dropped unchecked."""
    out = check_outputs({"y": np.ones((1, 2)), "extra": "anything"}, ["y"], SPECS, rows=1)
    assert list(out) == ["y"]


def test_a_model_class_is_instantiated_and_loaded(tmp_path: Path) -> None:
    """model:Model names a PythonModel subclass: load(context) runs once, predict per call."""
    (tmp_path / "helper.py").write_text("OFFSET = 10\n")
    (tmp_path / "model.py").write_text(
        "import shipyard\n"
        "from helper import OFFSET\n"
        "class Model(shipyard.PythonModel):\n"
        "    def load(self, context):\n"
        "        self.k = context.settings['k'] + OFFSET\n"
        "    def predict(self, batch):\n"
        "        return {'y': batch['x'] * self.k}\n"
    )
    predict = load_callable("model:Model", context(tmp_path))
    out = predict({"x": np.ones(2)})
    np.testing.assert_array_equal(out["y"], [13.0, 13.0])


def test_a_function_is_called_as_it_is(tmp_path: Path) -> None:
    """module:name may name a plain function of the batch."""
    (tmp_path / "steps_fn.py").write_text("def double(batch):\n    return {'y': batch['x'] * 2}\n")
    predict = load_callable("steps_fn:double", context(tmp_path))
    np.testing.assert_array_equal(predict({"x": np.ones(1)})["y"], [2.0])


@pytest.mark.parametrize(
    ("source", "function", "message"),
    [
        ("X = 1\n", "m_missing:Model", "defines no 'Model'"),
        ("class Model:\n    pass\n", "m_plain:Model", "not a subclass of shipyard.PythonModel"),
        ("value = 3\n", "m_value:value", "neither a function nor a class"),
    ],
)
def test_what_cannot_be_loaded_says_why(
    tmp_path: Path, source: str, function: str, message: str
) -> None:
    """A missing name, a class that is not a PythonModel or a value is a ContractError."""
    (tmp_path / f"{function.split(':')[0]}.py").write_text(source)
    with pytest.raises(ContractError, match=message):
        load_callable(function, context(tmp_path))


def test_a_module_named_like_an_imported_one_is_refused(tmp_path: Path) -> None:
    """json.py in a version folder would be shadowed by the real json: refused, not confused."""
    (tmp_path / "json.py").write_text("def f(batch):\n    return batch\n")
    with pytest.raises(ContractError, match="rename it"):
        load_callable("json:f", context(tmp_path))


def test_python_model_needs_predict() -> None:
    """PythonModel is abstract: a subclass without predict cannot be instantiated."""

    class Incomplete(PythonModel):
        pass

    with pytest.raises(TypeError, match="predict"):
        Incomplete()  # type: ignore[abstract]
