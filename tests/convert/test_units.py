"""The building blocks: --input parsing, model.toml rewriting, version numbering."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from shipyard.convert.signature import parse_input_spec, parse_input_specs
from shipyard.convert.validate import Tolerances, check_parity
from shipyard.errors import ConfigError
from shipyard.repository.publish import next_version, publish, update_model_toml
from shipyard.types import DataType, TensorSpec

SPEC = TensorSpec("x", DataType.FP32, (-1, 3))


def test_parse_input_spec() -> None:
    """NAME:DATATYPE:DIMS parses into a TensorSpec with -1 kept."""
    assert parse_input_spec("input:fp32:-1,1,28,28") == TensorSpec(
        "input", DataType.FP32, (-1, 1, 28, 28)
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("input:FP32", "expected NAME:DATATYPE:DIMS"),
        ("input:FLOAT:1,2", "unknown datatype"),
        ("input:FP32:1,x", "not an integer"),
        ("input:FP32:0,2", "must be positive"),
        ("9in:FP32:1", "invalid name"),
    ],
)
def test_parse_input_spec_errors(text: str, message: str) -> None:
    """Malformed --input values say what is wrong."""
    with pytest.raises(ConfigError, match=message):
        parse_input_spec(text)


def test_duplicate_inputs_refused() -> None:
    """The same input name twice is an error."""
    with pytest.raises(ConfigError, match="given twice"):
        parse_input_specs(["a:FP32:1", "a:FP32:2"])


def test_update_model_toml_replaces_only_the_signature() -> None:
    """Old [[inputs]]/[[outputs]] go, other keys and tables (and comments) stay."""
    old = (
        '# mine\nmax_batch_size = 8\n\n[[inputs]]\nname = "old"\ndatatype = "FP32"\n'
        "shape = [1]\n\n[onnxruntime]\nintra_op_threads = 2\n"
    )
    text = update_model_toml(old, "m", [SPEC], [TensorSpec("y", DataType.INT64, (-1,))])
    table = tomllib.loads(text)
    assert "# mine" in text
    assert table["max_batch_size"] == 8
    assert table["onnxruntime"] == {"intra_op_threads": 2}
    assert table["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}]
    assert table["outputs"] == [{"name": "y", "datatype": "INT64", "shape": [-1]}]


def test_publish_numbers_versions_and_leaves_no_temporaries(tmp_path: Path) -> None:
    """Versions count up from the highest present; no .tmp folder is left behind."""
    (tmp_path / "m" / "7").mkdir(parents=True)
    assert next_version(tmp_path / "m") == 8
    version, path = publish(tmp_path, "m", {"model.onnx": b"x"}, [SPEC], [SPEC], {})
    assert (version, path) == (8, tmp_path / "m" / "8")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["7", "8", "model.toml"]


def test_publish_refuses_a_broken_model_toml(tmp_path: Path) -> None:
    """An existing model.toml that is not valid TOML stops publishing; no version appears."""
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "model.toml").write_text("this is = = not toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        publish(tmp_path, "m", {"model.onnx": b"x"}, [SPEC], [SPEC], {})
    assert next_version(tmp_path / "m") == 1


def test_parity_report_fields() -> None:
    """Errors, mismatches and top-1 agreement are computed against the tolerances."""
    out = TensorSpec("p", DataType.FP32, (-1, 3))

    def source(feed: Mapping[str, Any]) -> list[Any]:
        return [feed["x"] * 1.0]

    def shifted(feed: Mapping[str, Any]) -> list[Any]:
        return [feed["x"] + 0.01]

    report = check_parity("onnx", source, shifted, [SPEC], [out], Tolerances(atol=1e-3, rtol=0))
    row = report["outputs"][0]
    assert report["passed"] is False
    assert row["passed"] is False
    assert row["max_abs_error"] == pytest.approx(0.01, rel=1e-3)
    assert row["mismatched"] == row["elements"] == 24
    assert row["top1_agreement"] == 1.0
    loose = check_parity("onnx", source, shifted, [SPEC], [out], Tolerances(atol=0.02, rtol=0))
    assert loose["passed"] is True
