"""Model conversion: a trained model in, a verified ONNX version of it in the repository out.

:func:`convert` detects the source's framework, converts it, runs the parity check (source
model vs converted model on the same inputs) and, when parity holds (or ``allow_mismatch``),
publishes ``REPO/NAME/<next version>/model.onnx`` with ``report.json`` beside it and the
signature in ``REPO/NAME/model.toml``. Frameworks are imported only when a source needs them.
See ``docs/convert.md``.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from shipyard.convert.base import Converted
from shipyard.convert.detect import FRAMEWORKS, Framework, detect_source
from shipyard.convert.onnx_source import ort_runner
from shipyard.convert.signature import parse_input_specs
from shipyard.convert.torch_source import Exporter
from shipyard.convert.validate import Tolerances, check_parity
from shipyard.errors import ConfigError, ConversionError, ParityError, UnsupportedError
from shipyard.repository.layout import check_model_name
from shipyard.repository.publish import publish

__all__ = ["FRAMEWORKS", "ConversionResult", "Framework", "Tolerances", "convert"]

Target = Literal["onnx", "tflite"]
_NOT_YET = (
    "is not implemented yet (planned: see issue 4); convert to ONNX from torch, sklearn or onnx"
)


@dataclass(frozen=True, slots=True)
class ConversionResult:
    """A published conversion: its version, folder and report (as stored in report.json)."""

    version: int
    path: Path
    report: dict[str, Any]


def _convert_source(
    source: str,
    framework: Framework | None,
    input_texts: Sequence[str],
    opset: int | None,
    trust_pickle: bool,
    weights: Path | None,
    exporter: Exporter | None,
) -> tuple[Framework, Converted]:
    if framework in ("keras", "tensorflow"):
        raise UnsupportedError(f"converting {framework} models {_NOT_YET}")
    resolved = detect_source(source, framework)
    if resolved.framework in ("keras", "tensorflow"):
        raise UnsupportedError(f"converting {resolved.framework} models {_NOT_YET}")
    try:
        overrides = parse_input_specs(input_texts)
    except ConfigError as exc:
        raise ConversionError(exc.message, step="signature", framework=resolved.framework) from exc
    if resolved.framework == "onnx":
        from shipyard.convert.onnx_source import convert_onnx

        return "onnx", convert_onnx(resolved.path, overrides, opset)
    if resolved.framework == "sklearn":
        from shipyard.convert.sklearn_source import convert_sklearn

        return "sklearn", convert_sklearn(resolved.path, overrides, opset, trust_pickle)
    from shipyard.convert.torch_source import convert_torch

    return "torch", convert_torch(resolved, overrides, opset, weights, exporter)


def convert(
    source: str,
    name: str,
    repo: Path,
    *,
    framework: Framework | None = None,
    to: Target = "onnx",
    inputs: Sequence[str] = (),
    sample: Path | None = None,
    opset: int | None = None,
    trust_pickle: bool = False,
    weights: Path | None = None,
    exporter: Exporter | None = None,
    tolerances: Tolerances | None = None,
    allow_mismatch: bool = False,
    progress: Callable[[str], None] | None = None,
) -> ConversionResult:
    """Convert SOURCE, check parity, publish ``repo/name/<v>/``; raise ConversionError.

    ``inputs`` are ``NAME:DATATYPE:DIMS`` strings. A failed parity check raises
    :class:`ParityError` (its ``report`` attribute holds the report) and publishes nothing,
    unless ``allow_mismatch``.
    """
    step = progress or (lambda _message: None)
    tolerances = tolerances or Tolerances()
    check_model_name(name)
    if to == "tflite":
        raise UnsupportedError(f"--to tflite {_NOT_YET}")
    if weights is not None and not weights.is_file():
        raise ConversionError(f"{weights} does not exist", step="load weights", hint="check it")
    if sample is not None and not sample.is_file():
        raise ConversionError(f"{sample} does not exist", step="parity inputs", hint="check it")
    step("loading and exporting the model")
    fw, converted = _convert_source(
        source, framework, inputs, opset, trust_pickle, weights, exporter
    )
    data = converted.model.SerializeToString()
    runner = ort_runner(data, [spec.name for spec in converted.outputs], fw)
    step("checking parity")
    parity = check_parity(
        fw, converted.reference, runner, converted.inputs, converted.outputs, tolerances, sample
    )
    from shipyard import __version__

    report: dict[str, Any] = {
        "shipyard_version": __version__,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "source": source,
        "framework": fw,
        "target": "onnx",
        "conversion": converted.details,
        "inputs": [spec.to_dict() for spec in converted.inputs],
        "outputs": [spec.to_dict() for spec in converted.outputs],
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
            repo, name, {"model.onnx": data}, converted.inputs, converted.outputs, report
        )
    except ConfigError as exc:
        raise ConversionError(exc.message, step="publish", framework=fw) from exc
    return ConversionResult(version, path, {**report, "model": name, "version": version})
