"""The OpenVINO backend: precision made explicit, results equal to ONNX Runtime's, IR found."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from shipyard.backends.base import load_backend, resolve_backend
from shipyard.backends.onnxruntime import OnnxRuntimeBackend
from shipyard.backends.openvino import OpenVinoBackend
from shipyard.config import ModelConfig, parse_model_config
from shipyard.errors import ConfigError, InvalidInputError, ModelLoadError
from shipyard.hardware import this_cpu
from shipyard.testing.models import add_sub_model, cnn_model, identity_model, write_model
from shipyard.types import DataType

#: ONNX Runtime and OpenVINO both in f32: the same math, summed in another order.
F32_TOLERANCE = 1e-5
_BF16_ISA = ("AMX-BF16", "AVX-512 BF16")


def _cnn(tmp_path: Path) -> Path:
    return write_model(tmp_path, "cnn", cnn_model())


def _config(table: dict[str, object] | None = None) -> ModelConfig:
    return parse_model_config("m", {"backend": "openvino", **(table or {})})


def _digits(batch: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).random((batch, 1, 28, 28), dtype=np.float32)


def test_default_precision_is_f32_and_matches_onnxruntime(tmp_path: Path) -> None:
    """Without a precision in model.toml the CNN computes in f32 (OpenVINO's CPU default is
    bf16 on AMX/AVX-512-BF16 CPUs) and its outputs equal ONNX Runtime's within 1e-5."""
    path = _cnn(tmp_path)
    backend = OpenVinoBackend(path, _config())
    reference = OnnxRuntimeBackend(path, ModelConfig("m"))
    assert backend.precision == "f32"
    assert backend.platform == "openvino"
    for batch in (1, 3, 16):
        x = _digits(batch)
        got = backend.run({"input": x}, ["probabilities"])[0]
        want = reference.run({"input": x}, ["probabilities"])[0]
        assert got.shape == (batch, 10)
        np.testing.assert_allclose(got, want, atol=F32_TOLERANCE, rtol=0)
    strided = _digits(8)[::2]  # a view with strides: OpenVINO needs it made contiguous
    np.testing.assert_allclose(
        backend.run({"input": strided}, ["probabilities"])[0],
        reference.run({"input": strided}, ["probabilities"])[0],
        atol=F32_TOLERANCE,
        rtol=0,
    )


def test_bf16_is_used_only_when_asked(tmp_path: Path) -> None:
    """``inference_precision = "bf16"`` reaches OpenVINO; on a CPU with a bf16 ISA the results
    then drift past the f32 tolerance, which is why f32 is the default."""
    path = _cnn(tmp_path)
    bf16 = OpenVinoBackend(path, _config({"openvino": {"inference_precision": "bf16"}}))
    f32 = OpenVinoBackend(path, _config())
    x = _digits(16)
    drift = np.abs(
        bf16.run({"input": x}, ["probabilities"])[0] - f32.run({"input": x}, ["probabilities"])[0]
    ).max()
    if any(feature in this_cpu().features for feature in _BF16_ISA):
        assert bf16.precision == "bf16"
        assert drift > F32_TOLERANCE
    else:  # no bf16 ISA: the plugin may keep f32; results then stay within the tolerance
        assert bf16.precision in ("bf16", "f32")


@pytest.mark.parametrize("datatype", [d for d in DataType if d is not DataType.BYTES])
def test_dtype_models_match_onnxruntime(tmp_path: Path, datatype: DataType) -> None:
    """Every numeric datatype (and BOOL) passes through identity, and add/sub where ONNX
    defines it, with the same results as ONNX Runtime."""
    models = {"identity": identity_model(datatype)}
    if datatype is not DataType.BOOL:
        models["add_sub"] = add_sub_model(datatype)
    rng = np.random.default_rng(7)
    for name, model in models.items():
        path = write_model(tmp_path, name, model)
        backend = OpenVinoBackend(path, _config())
        reference = OnnxRuntimeBackend(path, ModelConfig(name))
        assert [s.datatype for s in backend.inputs] == [datatype] * len(backend.inputs)
        width = 4 if name == "identity" else 16
        # 0 <= INPUT1 <= INPUT0 < 50: no overflow in any datatype (OpenVINO saturates
        # integers where ONNX Runtime wraps them; docs/model-config.md says so).
        low = {"INPUT0": 25, "INPUT1": 0}
        feed = {
            spec.name: (
                rng.integers(0, 2, (3, width))
                if datatype is DataType.BOOL
                else rng.integers(low[spec.name], low[spec.name] + 25, (3, width))
            ).astype(datatype.numpy)
            for spec in backend.inputs
        }
        names = [spec.name for spec in backend.outputs]
        for got, want in zip(backend.run(feed, names), reference.run(feed, names), strict=True):
            assert got.dtype == want.dtype
            np.testing.assert_array_equal(got, want)


def test_int64_outside_int32_is_refused_not_wrapped(tmp_path: Path) -> None:
    """OpenVINO's CPU plugin computes INT64 in 32 bits: a value past the int32 range is a 400
    naming the input and the way out, not a silently wrapped answer."""
    path = write_model(tmp_path, "ids", identity_model(DataType.INT64))
    backend = OpenVinoBackend(path, _config())
    ok = np.full((1, 4), 2**31 - 1, dtype=np.int64)
    np.testing.assert_array_equal(backend.run({"INPUT0": ok}, ["OUTPUT0"])[0], ok)
    with pytest.raises(InvalidInputError, match=r"'INPUT0'.*int32 range.*onnxruntime"):
        backend.run({"INPUT0": np.full((1, 4), 2**40, dtype=np.int64)}, ["OUTPUT0"])


def test_a_shape_openvino_would_misread_is_refused(tmp_path: Path) -> None:
    """A static dimension that does not match is refused before OpenVINO reads past the data."""
    backend = OpenVinoBackend(_cnn(tmp_path), _config())
    with pytest.raises(InvalidInputError, match=r"shape \[2, 1, 27, 28\].*\[-1, 1, 28, 28\]"):
        backend.run({"input": _digits(2)[:, :, :27].copy()}, ["probabilities"])


def test_string_models_are_refused_at_load(tmp_path: Path) -> None:
    """A BYTES (string) model fails to load with the backend that can serve it named."""
    path = write_model(tmp_path, "text", identity_model(DataType.BYTES))
    with pytest.raises(ModelLoadError, match=r"string.*onnxruntime"):
        OpenVinoBackend(path, _config())


def test_threads_follow_model_toml(tmp_path: Path) -> None:
    """An explicit intra_op_threads reaches the compiled model; "auto" keeps the cheap CNN on
    one thread, as with ONNX Runtime."""
    path = _cnn(tmp_path)
    two = OpenVinoBackend(path, _config({"openvino": {"intra_op_threads": 2}}))
    assert two.threads.threads == 2
    assert two._compiled.get_property("INFERENCE_NUM_THREADS") == 2
    auto = OpenVinoBackend(path, _config())
    assert auto.threads.threads == 1
    assert auto.threads.cost_ms is not None
    assert auto._compiled.get_property("INFERENCE_NUM_THREADS") == 1


def test_openvino_ir_is_detected_and_served(tmp_path: Path) -> None:
    """A version folder with model.xml + model.bin and no model.onnx is served by OpenVINO
    without any backend in model.toml, with the ONNX model's results."""
    import openvino

    onnx_path = _cnn(tmp_path)
    ir_dir = tmp_path / "ir" / "1"
    ir_dir.mkdir(parents=True)
    openvino.save_model(
        openvino.convert_model(str(onnx_path)), str(ir_dir / "model.xml"), compress_to_fp16=False
    )
    assert (ir_dir / "model.bin").is_file()
    config = ModelConfig("ir")
    assert resolve_backend(ir_dir, config) == "openvino"
    assert resolve_backend(onnx_path.parent, config) == "onnxruntime"
    backend = load_backend(ir_dir, config)
    assert isinstance(backend, OpenVinoBackend)
    x = _digits(4)
    np.testing.assert_allclose(
        backend.run({"input": x}, ["probabilities"])[0],
        OnnxRuntimeBackend(onnx_path, config).run({"input": x}, ["probabilities"])[0],
        atol=F32_TOLERANCE,
        rtol=0,
    )


def test_backend_openvino_reads_an_onnx_file_too(tmp_path: Path) -> None:
    """``backend = "openvino"`` on a folder with only model.onnx loads that file."""
    backend = load_backend(_cnn(tmp_path).parent, _config())
    assert isinstance(backend, OpenVinoBackend)


def test_a_missing_openvino_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the openvino package the load fails with the extra to install."""
    monkeypatch.setitem(sys.modules, "openvino", None)  # what `import` sees when it is absent
    with pytest.raises(ModelLoadError, match=r"shipyard\[openvino\]"):
        OpenVinoBackend(_cnn(tmp_path), _config())


def test_an_unreadable_file_is_a_load_error(tmp_path: Path) -> None:
    """A corrupt model file fails to load with OpenVINO named, not a traceback."""
    folder = tmp_path / "bad" / "1"
    folder.mkdir(parents=True)
    (folder / "model.onnx").write_bytes(b"not a model")
    with pytest.raises(ModelLoadError, match=r"OpenVINO cannot read model\.onnx"):
        OpenVinoBackend(folder / "model.onnx", _config())


@pytest.mark.parametrize(
    ("table", "match"),
    [
        ({"inference_precision": "int8"}, "inference_precision must be one of f32, bf16, f16"),
        ({"intra_op_threads": "many"}, 'openvino.intra_op_threads must be "auto"'),
        ({"device": ""}, "openvino.device must be a device name"),
        ({"stream": 1}, "stream"),
    ],
)
def test_bad_openvino_settings_are_named(table: dict[str, object], match: str) -> None:
    """Each bad ``[openvino]`` key fails the model.toml with the key named."""
    with pytest.raises(ConfigError, match=match):
        parse_model_config("m", {"openvino": table})


def test_openvino_settings_are_read() -> None:
    """``[openvino]`` keys reach the config; unset ones keep their defaults (f32, auto, CPU)."""
    config = parse_model_config(
        "m", {"backend": "openvino", "openvino": {"inference_precision": "bf16"}}
    )
    assert config.backend == "openvino"
    assert config.openvino.inference_precision == "bf16"
    assert config.openvino.intra_op_threads == "auto"
    assert config.openvino.device == "CPU"
