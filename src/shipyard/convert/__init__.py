"""Model conversion: a trained model in, a verified ONNX or TFLite version of it out.

:func:`convert` detects the source's framework, converts it, runs the parity check (source
model vs converted model on the same inputs) and, when parity holds (or ``allow_mismatch``),
publishes ``REPO/NAME/<next version>/model.onnx`` (or ``model.tflite``) with ``report.json``
beside it and the signature in ``REPO/NAME/model.toml``. Frameworks are imported only when a
source needs them. See ``docs/convert.md``.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from shipyard.config import load_model_config
from shipyard.convert.base import Converted, Reference
from shipyard.convert.detect import FRAMEWORKS, Framework, Source, detect_source
from shipyard.convert.onnx_source import ort_runner
from shipyard.convert.signature import parse_input_specs
from shipyard.convert.tflite_target import Quantize, TfliteModel, unavailable
from shipyard.convert.torch_source import Exporter
from shipyard.convert.validate import INT8_TOLERANCES, Tolerances, check_parity
from shipyard.errors import ConfigError, ConversionError, ParityError
from shipyard.repository.layout import CONFIG_FILENAME, check_model_name
from shipyard.repository.publish import publish
from shipyard.types import TensorSpec

__all__ = ["FRAMEWORKS", "ConversionResult", "Framework", "Quantize", "Tolerances", "convert"]

Target = Literal["onnx", "tflite"]


@dataclass(frozen=True, slots=True)
class ConversionResult:
    """A published conversion: its version, folder and report (as stored in report.json)."""

    version: int
    path: Path
    report: dict[str, Any]


@dataclass(frozen=True, slots=True)
class _Artifact:
    """A converted model file with what the parity check and publishing need."""

    filename: str
    data: bytes
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    reference: Reference
    runner: Reference
    details: dict[str, Any]


def _resolve(
    source: str, framework: Framework | None, input_texts: Sequence[str]
) -> tuple[Source, tuple[TensorSpec, ...]]:
    resolved = detect_source(source, framework)
    try:
        overrides = parse_input_specs(input_texts)
    except ConfigError as exc:
        raise ConversionError(exc.message, step="signature", framework=resolved.framework) from exc
    return resolved, overrides


def _convert_tflite(
    resolved: Source,
    overrides: tuple[TensorSpec, ...],
    quantize: Quantize,
    sample: Path | None,
    custom_objects: Path | None,
) -> TfliteModel:
    if resolved.framework == "keras":
        from shipyard.convert.keras_source import keras_to_tflite

        return keras_to_tflite(resolved.path, overrides, quantize, sample, custom_objects)
    if resolved.framework == "tensorflow":
        from shipyard.convert.tensorflow_source import tensorflow_to_tflite

        return tensorflow_to_tflite(resolved.path, overrides, quantize, sample)
    raise unavailable(resolved.framework)


def _convert_source(
    resolved: Source,
    overrides: tuple[TensorSpec, ...],
    opset: int | None,
    trust_pickle: bool,
    weights: Path | None,
    exporter: Exporter | None,
    custom_objects: Path | None,
) -> Converted:
    if resolved.framework == "keras":
        from shipyard.convert.keras_source import convert_keras

        return convert_keras(resolved.path, overrides, opset, custom_objects)
    if resolved.framework == "tensorflow":
        from shipyard.convert.tensorflow_source import convert_tensorflow

        return convert_tensorflow(resolved.path, overrides, opset)
    if resolved.framework == "onnx":
        from shipyard.convert.onnx_source import convert_onnx

        return convert_onnx(resolved.path, overrides, opset)
    if resolved.framework == "sklearn":
        from shipyard.convert.sklearn_source import convert_sklearn

        return convert_sklearn(resolved.path, overrides, opset, trust_pickle)
    from shipyard.convert.torch_source import convert_torch

    return convert_torch(resolved, overrides, opset, weights, exporter)


def _artifact(
    resolved: Source,
    to: Target,
    overrides: tuple[TensorSpec, ...],
    quantize: Quantize,
    sample: Path | None,
    opset: int | None,
    trust_pickle: bool,
    weights: Path | None,
    exporter: Exporter | None,
    custom_objects: Path | None,
) -> _Artifact:
    if to == "tflite":
        lite = _convert_tflite(resolved, overrides, quantize, sample, custom_objects)
        return _Artifact(
            "model.tflite",
            lite.data,
            lite.inputs,
            lite.outputs,
            lite.reference,
            lite.runner,
            lite.details,
        )
    converted = _convert_source(
        resolved, overrides, opset, trust_pickle, weights, exporter, custom_objects
    )
    data = converted.model.SerializeToString()
    runner = ort_runner(data, [spec.name for spec in converted.outputs], resolved.framework)
    return _Artifact(
        "model.onnx",
        data,
        converted.inputs,
        converted.outputs,
        converted.reference,
        runner,
        converted.details,
    )


def _check_backend(repo: Path, name: str, to: Target, framework: str) -> None:
    """Refuse early when model.toml names a backend that cannot serve the target format."""
    path = repo / name / CONFIG_FILENAME
    try:
        backend = load_model_config(name, path).backend
    except ConfigError as exc:
        raise ConversionError(
            exc.message, step="publish", framework=framework, hint="fix or remove model.toml"
        ) from exc
    wanted = "tflite" if to == "tflite" else "onnxruntime"
    if backend not in ("auto", wanted):
        raise ConversionError(
            f"{path} sets backend = {backend!r}, which cannot serve a {to} model",
            step="publish",
            framework=framework,
            hint=f'set backend = "{wanted}" or remove the key (auto-detection)',
        )


def convert(
    source: str,
    name: str,
    repo: Path,
    *,
    framework: Framework | None = None,
    to: Target = "onnx",
    quantize: Quantize = "float32",
    inputs: Sequence[str] = (),
    sample: Path | None = None,
    opset: int | None = None,
    trust_pickle: bool = False,
    weights: Path | None = None,
    exporter: Exporter | None = None,
    tolerances: Tolerances | None = None,
    allow_mismatch: bool = False,
    progress: Callable[[str], None] | None = None,
    custom_objects: Path | None = None,
) -> ConversionResult:
    """Convert SOURCE, check parity, publish ``repo/name/<v>/``; raise ConversionError.

    ``inputs`` are ``NAME:DATATYPE:DIMS`` strings. ``custom_objects`` (Keras only) is a
    Python file, run before the model loads, that defines its custom classes.
    ``quantize="int8"`` (TFLite only) needs ``sample`` as calibration data; its default
    tolerances are :data:`INT8_TOLERANCES`. A failed parity check raises
    :class:`ParityError` (its ``report`` attribute holds the report) and publishes nothing,
    unless ``allow_mismatch``.
    """
    step = progress or (lambda _message: None)
    if tolerances is None:
        tolerances = INT8_TOLERANCES if quantize == "int8" else Tolerances()
    check_model_name(name)
    if quantize == "int8" and to != "tflite":
        raise ConversionError(
            "--quantize int8 applies to --to tflite only",
            step="quantize",
            hint="add --to tflite (for ONNX models, use shipyard optimize)",
        )
    if quantize == "int8" and sample is None:
        raise ConversionError(
            "int8 quantization needs representative inputs to calibrate on",
            step="quantize",
            hint="pass --sample FILE.npz with a few hundred real inputs",
        )
    if weights is not None and not weights.is_file():
        raise ConversionError(f"{weights} does not exist", step="load weights", hint="check it")
    if sample is not None and not sample.is_file():
        raise ConversionError(f"{sample} does not exist", step="parity inputs", hint="check it")
    step("loading and converting the model")
    resolved, overrides = _resolve(source, framework, inputs)
    fw: Framework = resolved.framework
    _check_backend(repo, name, to, fw)
    if custom_objects is not None and resolved.framework != "keras":
        raise ConversionError(
            "--custom-objects applies to Keras models only",
            step="load",
            framework=resolved.framework,
            hint="drop --custom-objects",
        )
    art = _artifact(
        resolved,
        to,
        overrides,
        quantize,
        sample,
        opset,
        trust_pickle,
        weights,
        exporter,
        custom_objects,
    )
    step("checking parity")
    parity = check_parity(
        fw, art.reference, art.runner, art.inputs, art.outputs, tolerances, sample
    )
    from shipyard import __version__

    report: dict[str, Any] = {
        "shipyard_version": __version__,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "source": source,
        "framework": fw,
        "target": to,
        "conversion": art.details,
        "inputs": [spec.to_dict() for spec in art.inputs],
        "outputs": [spec.to_dict() for spec in art.outputs],
        "parity": parity,
    }
    if not parity["passed"] and not allow_mismatch:
        failed = [row["name"] for row in parity["outputs"] if not row["passed"]]
        raise ParityError(
            f"output(s) {', '.join(failed)} differ beyond atol={tolerances.atol},"
            f" rtol={tolerances.rtol}; nothing was published",
            framework=fw,
            report=report,
        )
    step("publishing")
    report["published_despite_mismatch"] = not parity["passed"]
    try:
        version, path = publish(
            repo, name, {art.filename: art.data}, art.inputs, art.outputs, report
        )
    except ConfigError as exc:
        raise ConversionError(exc.message, step="publish", framework=fw) from exc
    return ConversionResult(version, path, {**report, "model": name, "version": version})
