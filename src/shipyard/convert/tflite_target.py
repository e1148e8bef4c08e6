"""TensorFlow Lite output (``--to tflite``): the TFLite converter, checked in LiteRT.

Keras and TensorFlow sources reach the TFLite converter as a SavedModel signature
(``TFLiteConverter.from_saved_model``). ``float32`` (the default) keeps the model's float
weights; ``int8`` quantizes weights and activations to int8, calibrated on the ``--sample``
arrays (one representative example per row), and keeps float32 inputs and outputs, so the
served signature does not change. The converted model runs for the parity check in the same
LiteRT backend that serves it (:class:`shipyard.backends.tflite.TfliteBackend`).

PyTorch sources cannot be converted: the maintained converter (``litert-torch``, formerly
``ai-edge-torch``) requires an older torch (0.9.x: torch < 2.13) or pins typing-extensions
below 4.13 (0.10), so it cannot be installed beside ``shipyard[torch]``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from shipyard.convert.base import Arrays, Reference, converter_error, quiet, require
from shipyard.convert.detect import LABELS
from shipyard.errors import ConversionError, ModelLoadError
from shipyard.types import Array, JSONObject, TensorSpec

__all__ = [
    "NamedReference",
    "Quantize",
    "TfliteModel",
    "litert_model",
    "saved_model_to_tflite",
    "unavailable",
]

Quantize = Literal["float32", "int8"]
#: Runs the source model on named inputs; returns its outputs by name.
NamedReference = Callable[[Mapping[str, Array]], dict[str, Array]]


@dataclass(slots=True)
class TfliteModel:
    """A converted ``.tflite`` flatbuffer with its LiteRT signature and runners."""

    data: bytes
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    #: The source model, outputs in the order of ``outputs``.
    reference: Reference
    #: The converted model in LiteRT, outputs in the order of ``outputs``.
    runner: Reference
    details: JSONObject = field(default_factory=dict)


def unavailable(framework: str) -> ConversionError:
    """The error for ``--to tflite`` from a framework without a usable TFLite converter."""
    if framework == "torch":
        return ConversionError(
            "PyTorch to TFLite is not available: its maintained converter (litert-torch,"
            " formerly ai-edge-torch) does not install beside torch 2.13",
            step="convert to tflite",
            framework="torch",
            hint="convert to ONNX (--to onnx), or export the model from Keras or TensorFlow",
        )
    return ConversionError(
        f"--to tflite is not available for {LABELS.get(framework, framework)} sources",
        step="convert to tflite",
        framework=framework,
        hint="convert to ONNX (--to onnx)",
    )


def _calibration(sample: Arrays) -> Iterator[dict[str, Array]]:
    rows = min(len(a) for a in sample.values())
    for i in range(rows):
        yield {name: array[i : i + 1] for name, array in sample.items()}


def saved_model_to_tflite(
    saved_model: Path,
    signature: str,
    framework: str,
    quantize: Quantize,
    calibration: Arrays | None,
) -> tuple[bytes, JSONObject]:
    """Convert one signature of a SavedModel; return the flatbuffer and report details."""
    extra = "tensorflow" if framework == "tensorflow" else "keras,tensorflow"
    with quiet():
        tf = require("tensorflow", extra, framework)
    converter = tf.lite.TFLiteConverter.from_saved_model(
        str(saved_model), signature_keys=[signature]
    )
    if quantize == "int8":
        if not calibration:
            raise ConversionError(
                "int8 quantization needs representative inputs",
                step="quantize",
                framework=framework,
                hint="pass --sample FILE.npz (a few hundred real inputs)",
            )
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: _calibration(calibration)
    try:
        with quiet() as printed:
            data = converter.convert()
    except Exception as exc:
        raise converter_error(
            "TFLite converter",
            framework,
            exc,
            "the model uses an operation without a TFLite builtin; change it, or convert to"
            " ONNX (--to onnx)",
            printed.getvalue(),
        ) from exc
    details: JSONObject = {
        "converter": f"TFLiteConverter (TensorFlow {tf.__version__})",
        "quantize": quantize,
        "signature": signature,
    }
    if quantize == "int8" and calibration:
        details["calibration_rows"] = min(len(a) for a in calibration.values())
    return bytes(data), details


def litert_model(
    data: bytes, framework: str, reference: NamedReference, details: JSONObject
) -> TfliteModel:
    """Load ``data`` in LiteRT; pair it with the source's by-name reference for parity."""
    require("ai_edge_litert", "tflite", framework)
    from shipyard.backends.tflite import TfliteBackend
    from shipyard.config import ModelConfig

    try:
        with quiet():
            backend = TfliteBackend(data, ModelConfig(name="parity"))
    except ModelLoadError as exc:
        raise ConversionError(
            exc.message, step="load in LiteRT", framework=framework, hint="re-convert the model"
        ) from exc
    names = [spec.name for spec in backend.outputs]

    def run_source(feed: Mapping[str, Array]) -> list[Array]:
        found = reference(feed)
        missing = [n for n in names if n not in found]
        if missing:
            raise ConversionError(
                f"the source model has no output(s) {', '.join(missing)} (it has"
                f" {', '.join(found)})",
                step="parity check",
                framework=framework,
            )
        return [found[n] for n in names]

    def run_converted(feed: Mapping[str, Array]) -> list[Array]:
        return backend.run(feed, names)

    return TfliteModel(
        data, backend.inputs, backend.outputs, run_source, run_converted, {**details}
    )
