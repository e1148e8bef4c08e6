"""ONNX sources: check the model, infer its shapes, optionally change its opset, copy it.

The reference for the parity check is ONNX Runtime on the *original* file, so a shape-inference
or opset change that altered the results would be caught.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import onnx

from shipyard.convert.base import Converted, Reference, converter_error, quiet
from shipyard.convert.signature import merge_specs, onnx_signature
from shipyard.errors import ConfigError, ConversionError
from shipyard.types import Array, JSONObject, TensorSpec

__all__ = ["convert_onnx", "ort_runner"]


def ort_runner(model: bytes, outputs: list[str], framework: str) -> Reference:
    """A function running ``model`` in ONNX Runtime (CPU) and returning ``outputs`` in order."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise converter_error(
            "load in ONNX Runtime",
            framework,
            exc,
            "ONNX Runtime cannot run this graph; try another --opset",
        ) from exc

    def run(feed: Mapping[str, Array]) -> list[Array]:
        return list(session.run(outputs, dict(feed)))

    return run


def convert_onnx(
    path: Path, input_overrides: tuple[TensorSpec, ...], opset: int | None
) -> Converted:
    """Load, check and shape-infer the ONNX model at ``path``."""
    try:
        with quiet():
            model = onnx.load(str(path))
    except Exception as exc:
        raise converter_error(
            "load", "onnx", exc, f"{path} is not a readable ONNX model; re-export it"
        ) from exc
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:
        raise converter_error(
            "check", "onnx", exc, "re-export the model with a current exporter"
        ) from exc
    source_opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    details: JSONObject = {"source_opset": source_opset, "opset": source_opset}
    original = model.SerializeToString()
    if opset is not None and opset != source_opset:
        try:
            with quiet():
                model = onnx.version_converter.convert_version(model, opset)
        except Exception as exc:
            raise converter_error(
                "opset conversion", "onnx", exc, f"keep the model's opset {source_opset}"
            ) from exc
        details["opset"] = opset
    try:
        with quiet():
            model = onnx.shape_inference.infer_shapes(model, check_type=True, data_prop=True)
    except Exception as exc:
        raise converter_error(
            "shape inference", "onnx", exc, "the graph's types are inconsistent; re-export it"
        ) from exc
    try:
        inputs, outputs = onnx_signature(model)
        inputs = merge_specs(inputs, input_overrides)
    except ConfigError as exc:
        raise ConversionError(exc.message, step="signature", framework="onnx") from exc
    names = [spec.name for spec in outputs]
    runner = ort_runner(original, names, "onnx")
    return Converted(model, inputs, outputs, runner, details)
