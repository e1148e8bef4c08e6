"""Bad inputs give one clear line, a non-zero exit, no traceback and nothing published."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipyard.convert.base import require
from shipyard.errors import ConversionError
from shipyard.testing import cnn_model
from tests.convert.conftest import run_cli


def _assert_clean_failure(output: str, repo: Path, name: str = "m") -> None:
    assert "Traceback" not in output
    assert len([line for line in output.splitlines() if line.startswith("error:")]) == 1
    assert not (repo / name).exists()


def test_missing_file(repo: Path) -> None:
    """A source that does not exist is named in the error."""
    result = run_cli("nowhere/model.onnx", "--name", "m", "--repo", repo)
    assert result.exit_code == 2
    assert "nowhere/model.onnx does not exist" in result.output
    _assert_clean_failure(result.output, repo)


@pytest.mark.parametrize(("filename", "framework"), [("bad.onnx", "onnx"), ("bad.pt", "torch")])
def test_corrupt_file(tmp_path: Path, repo: Path, filename: str, framework: str) -> None:
    """A corrupt file fails at the load step, naming the framework."""
    path = tmp_path / filename
    path.write_bytes(b"this is not a model\n")
    result = run_cli(path, "--name", "m", "--repo", repo, "--input", "x:FP32:-1,4")
    assert result.exit_code == 2
    assert f"load failed ({framework})" in result.output
    _assert_clean_failure(result.output, repo)


def test_file_of_another_framework(tmp_path: Path, repo: Path) -> None:
    """An ONNX file given with --framework torch is refused, not misread."""
    path = tmp_path / "model.onnx"
    path.write_bytes(cnn_model().SerializeToString())
    result = run_cli(path, "--name", "m", "--repo", repo, "--framework", "torch")
    assert result.exit_code == 2
    assert "looks like an ONNX model, not a PyTorch one" in result.output
    _assert_clean_failure(result.output, repo)


def test_unsupported_op_fails_export(cnn_module: Path, repo: Path) -> None:
    """An operator with no ONNX translation fails at export with a hint; --verbose adds detail."""
    args = (
        f"{cnn_module}:make_unsupported",
        "--name",
        "m",
        "--repo",
        repo,
        "--input",
        "x:FP32:-1,4,4",
    )
    result = run_cli(*args)
    assert result.exit_code == 2
    assert "export (dynamo exporter) failed (torch)" in result.output
    assert "likely fix" in result.output
    _assert_clean_failure(result.output, repo)
    verbose = run_cli(*args, "--verbose")
    assert verbose.exit_code == 2
    assert len(verbose.output.splitlines()) > len(result.output.splitlines())


def test_wrong_input_shape(cnn_module: Path, repo: Path) -> None:
    """A --input shape the model rejects fails before anything is published."""
    result = run_cli(
        f"{cnn_module}:make", "--name", "m", "--repo", repo, "--input", "input:FP32:-1,3,28,28"
    )
    assert result.exit_code == 2
    assert "run source model failed (torch)" in result.output
    _assert_clean_failure(result.output, repo)


def test_torch_source_needs_input_signature(cnn_module: Path, repo: Path) -> None:
    """A module factory without --input asks for one, showing the format."""
    result = run_cli(f"{cnn_module}:make", "--name", "m", "--repo", repo)
    assert result.exit_code == 2
    assert "NAME:DATATYPE:DIMS" in result.output
    _assert_clean_failure(result.output, repo)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--framework", "keras"], "is a PyTorch module factory, not a Keras model"),
        (["--framework", "tensorflow"], "is a PyTorch module factory, not a TensorFlow model"),
        (["--to", "tflite"], "PyTorch to TFLite is not available"),
        (["--quantize", "int8"], "--quantize int8 applies to --to tflite only"),
    ],
)
def test_refused_framework_or_target(
    cnn_module: Path, repo: Path, extra: list[str], message: str
) -> None:
    """A wrong --framework, PyTorch to TFLite and int8 for ONNX fail in one line, exit 2."""
    result = run_cli(
        f"{cnn_module}:make", "--name", "m", "--repo", repo, "--input", "x:FP32:-1,1,28,28", *extra
    )
    assert result.exit_code == 2
    assert message in result.output
    _assert_clean_failure(result.output, repo)


def test_onnx_to_tflite_is_refused(tmp_path: Path, repo: Path) -> None:
    """--to tflite from an ONNX source says it is not available and suggests ONNX."""
    path = tmp_path / "m.onnx"
    path.write_bytes(cnn_model().SerializeToString())
    result = run_cli(path, "--name", "m", "--repo", repo, "--to", "tflite")
    assert result.exit_code == 2
    assert "--to tflite is not available for ONNX sources" in result.output
    _assert_clean_failure(result.output, repo)


def test_missing_extra_names_the_pip_install() -> None:
    """A framework that is not installed gives the pip install line to run."""
    with pytest.raises(ConversionError) as info:
        require("shipyard_no_such_module", "torch", "torch")
    assert "pip install 'shipyard[torch]'" in str(info.value)
