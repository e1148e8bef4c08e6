"""``shipyard optimize`` for models served by OpenVINO: the guards run the engine that serves,
and bf16 is a variant made, guarded and published like int8."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shipyard.backends.onnxruntime import OnnxRuntimeBackend
from shipyard.backends.openvino import OpenVinoBackend
from shipyard.config import ModelConfig, parse_model_config
from shipyard.hardware import this_cpu
from shipyard.optimize import optimize
from shipyard.optimize.benchmark import benchmark_rounds
from shipyard.optimize.versions import load_served
from shipyard.testing import cnn_model, write_model
from tests.optimize.conftest import FAST

OPENVINO = 'backend = "openvino"\n'
_BF16_ISA = ("AMX-BF16", "AVX-512 BF16")


def test_the_guards_load_the_engine_that_serves(tmp_path: Path) -> None:
    """A model whose model.toml says backend = "openvino" is guarded and timed on OpenVINO;
    others on ONNX Runtime."""
    path = write_model(tmp_path, "cnn", cnn_model())
    served = load_served(path, parse_model_config("cnn", {"backend": "openvino"}), "model")
    assert isinstance(served, OpenVinoBackend)
    assert isinstance(load_served(path, ModelConfig("cnn"), "model"), OnnxRuntimeBackend)


def test_bf16_is_published_as_stamped_ir_that_serves_in_bf16(
    tmp_path: Path, images: np.ndarray
) -> None:
    """``--quantize bf16`` publishes OpenVINO IR with bf16 recorded in it; served without a
    precision in model.toml it computes in bf16 where the CPU has a bf16 ISA (its outputs then
    differ from f32), and a precision in model.toml still wins."""
    repo = tmp_path / "repo"
    write_model(repo, "cnn", cnn_model(), config=OPENVINO)
    validation = tmp_path / "validation.npz"
    np.savez(validation, input=images)
    # The guard on cosine (bf16 keeps ~3 digits: cosine >= 0.999 holds, top-1 can flip on
    # ambiguous blobs: this CPU's guard rejected bf16 at a 0.01 top-1 budget).
    result = optimize(repo, "cnn", method="bf16", validation=validation, force=True,
                      metric="cosine", max_drop=0.001, benchmark=FAST)  # fmt: skip
    assert result.published, result.report["decision"]
    folder = repo / "cnn" / "2"
    assert sorted(p.name for p in folder.iterdir()) == ["model.bin", "model.xml", "report.json"]
    report = result.report
    assert report["optimization"]["inference_precision"] == "bf16"
    assert report["speed_engines"] == {"before": "openvino", "after": "openvino"}
    assert report["accuracy"]["passed"]
    served = OpenVinoBackend(folder / "model.xml", parse_model_config("cnn", {}))
    assert served.stamped == "bf16"
    f32 = OpenVinoBackend(repo / "cnn" / "1" / "model.onnx", parse_model_config("cnn", {}))
    assert f32.precision == "f32"
    drift = np.abs(
        served.run({"input": images[:16]}, ["probabilities"])[0]
        - f32.run({"input": images[:16]}, ["probabilities"])[0]
    ).max()
    if any(feature in this_cpu().features for feature in _BF16_ISA):
        assert served.precision == "bf16"
        assert drift > 1e-5
        assert report["accuracy"]["drop"] > 0  # the guard compared real bf16 outputs
    else:
        assert served.precision in ("bf16", "f32")
    pinned = parse_model_config("cnn", {"openvino": {"inference_precision": "f32"}})
    assert OpenVinoBackend(folder / "model.xml", pinned).precision == "f32"


def test_benchmark_times_ir_on_openvino(tmp_path: Path) -> None:
    """The speed guard's timer loads IR with OpenVINO and ONNX files with the model's engine."""
    import openvino

    onnx_path = write_model(tmp_path, "cnn", cnn_model())
    xml = tmp_path / "model.xml"
    openvino.save_model(openvino.convert_model(str(onnx_path)), str(xml), compress_to_fp16=False)
    timed = benchmark_rounds({"onnx": onnx_path, "ir": xml}, ModelConfig("cnn"), FAST, None,
                             lambda _text: None)  # fmt: skip
    assert set(timed) == {"onnx", "ir"}
    assert all(m.latency.p50_ms > 0 for rounds in timed.values() for m in rounds)


def test_bf16_without_openvino_is_a_conversion_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the openvino package, --quantize bf16 fails in one line with the extra named."""
    import sys

    from shipyard.errors import ConversionError

    repo = tmp_path / "repo"
    write_model(repo, "cnn", cnn_model())
    monkeypatch.setitem(sys.modules, "openvino", None)
    with pytest.raises(ConversionError, match=r"shipyard\[openvino\]"):
        optimize(repo, "cnn", method="bf16", force=True, benchmark=FAST)
