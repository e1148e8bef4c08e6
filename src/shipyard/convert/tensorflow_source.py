"""TensorFlow SavedModel sources (a folder with ``saved_model.pb``), through tf2onnx.

The signature ``serving_default`` (or the model's only signature) is the model: its input
names, dtypes and shapes (``None`` → -1) are the served signature and its output keys the
output names. ONNX export goes through ``tf2onnx.convert.from_function`` on a ``tf.function``
that calls the signature (``from_keras`` is not used: it is broken with Keras 3); ``--to
tflite`` through ``TFLiteConverter.from_saved_model``. The parity reference is the signature
itself, run by TensorFlow.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from shipyard.convert.base import Arrays, Converted, converter_error, quiet, require
from shipyard.convert.signature import merge_specs, onnx_signature
from shipyard.convert.tflite_target import (
    Quantize,
    TfliteModel,
    litert_model,
    saved_model_to_tflite,
)
from shipyard.convert.validate import load_sample
from shipyard.errors import ConfigError, ConversionError
from shipyard.types import Array, DataType, TensorSpec

__all__ = ["convert_tensorflow", "tensorflow_to_tflite"]

_SIGNATURE = "serving_default"


def _error(message: str, step: str, hint: str = "") -> ConversionError:
    return ConversionError(message, step=step, framework="tensorflow", hint=hint)


def _spec(name: str, spec: Any) -> TensorSpec:
    dtype = np.dtype(object) if spec.dtype.name == "string" else np.dtype(spec.dtype.as_numpy_dtype)
    try:
        datatype = DataType.from_numpy(dtype)
    except ValueError as exc:
        raise _error(f"tensor {name!r}: {exc}", "signature") from exc
    dims = spec.shape.as_list() if spec.shape.rank is not None else []
    return TensorSpec(name, datatype, tuple(-1 if d is None else int(d) for d in dims))


class _SavedModel:
    """A loaded SavedModel signature: its specs and a by-name reference."""

    def __init__(self, path: Path, overrides: tuple[TensorSpec, ...]) -> None:
        with quiet():
            self.tf = require("tensorflow", "tensorflow", "tensorflow")
        try:
            with quiet():
                loaded = self.tf.saved_model.load(str(path))
        except Exception as exc:
            raise converter_error(
                "load",
                "tensorflow",
                exc,
                f"{path} must be a SavedModel folder written by tf.saved_model.save()",
            ) from exc
        signatures = dict(loaded.signatures)
        if _SIGNATURE in signatures:
            self.key = _SIGNATURE
        elif len(signatures) == 1:
            self.key = next(iter(signatures))
        else:
            raise _error(
                f"{path} has {len(signatures)} signatures and none is {_SIGNATURE!r}"
                + (f" ({', '.join(signatures)})" if signatures else ""),
                "signature",
                "save with tf.saved_model.save(module, path, signatures=...) and one"
                f" {_SIGNATURE!r} signature",
            )
        self.loaded = loaded  # keeps the signature's variables alive
        self.function = signatures[self.key]
        args, kwargs = self.function.structured_input_signature
        if args:
            raise _error("the signature takes positional inputs", "signature")
        found = tuple(_spec(name, spec) for name, spec in kwargs.items())
        try:
            self.inputs = merge_specs(found, overrides)
        except ConfigError as exc:
            raise _error(exc.message, "signature") from exc
        outputs = self.function.structured_outputs
        if not isinstance(outputs, Mapping):
            raise _error("the signature's outputs are not named", "signature")
        self.output_names = [str(n) for n in outputs]
        self.input_specs = kwargs

    def run(self, feed: Mapping[str, Array]) -> dict[str, Array]:
        """Call the signature on named inputs; return its outputs by name."""
        tf = self.tf
        args = {spec.name: tf.constant(feed[spec.name]) for spec in self.inputs}
        result = self.function(**args)
        return {name: np.asarray(value.numpy()) for name, value in result.items()}


def convert_tensorflow(
    path: Path, input_overrides: tuple[TensorSpec, ...], opset: int | None
) -> Converted:
    """Convert a SavedModel's serving signature to ONNX with tf2onnx."""
    source = _SavedModel(path, input_overrides)
    with quiet():
        tf2onnx = require("tf2onnx", "tensorflow", "tensorflow")
    tf = source.tf
    names = [spec.name for spec in source.inputs]
    signature = [
        tf.TensorSpec(source.input_specs[n].shape, source.input_specs[n].dtype, name=n)
        for n in names
    ]
    function = source.function

    def call(*args: Any) -> Any:
        return function(**dict(zip(names, args, strict=True)))

    try:
        with quiet() as printed:
            wrapped = tf.function(call, input_signature=signature)
            model, _ = tf2onnx.convert.from_function(
                wrapped, input_signature=signature, opset=opset
            )
    except Exception as exc:
        raise converter_error(
            "export (tf2onnx)",
            "tensorflow",
            exc,
            "the graph uses an op tf2onnx cannot convert at this opset; try another --opset",
            printed.getvalue(),
        ) from exc
    try:
        found_inputs, outputs = onnx_signature(model)
        inputs = merge_specs(found_inputs, input_overrides)
    except ConfigError as exc:
        raise _error(exc.message, "signature") from exc
    output_names = [spec.name for spec in outputs]
    by_name = set(output_names) == set(source.output_names)

    def reference(feed: Mapping[str, Array]) -> list[Array]:
        found = source.run(feed)
        if by_name:
            return [found[name] for name in output_names]
        return list(found.values())

    details = {
        "exporter": f"tf2onnx {tf2onnx.__version__} (from_function)",
        "signature": source.key,
        "opset": next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0),
    }
    return Converted(model, inputs, outputs, reference, details)


def tensorflow_to_tflite(
    path: Path,
    input_overrides: tuple[TensorSpec, ...],
    quantize: Quantize,
    sample: Path | None,
) -> TfliteModel:
    """Convert a SavedModel's serving signature to TFLite; the reference is TensorFlow."""
    source = _SavedModel(path, input_overrides)
    calibration: Arrays | None = None
    if sample is not None and quantize == "int8":
        calibration = load_sample(sample, source.inputs)
    data, details = saved_model_to_tflite(path, source.key, "tensorflow", quantize, calibration)
    details["source"] = f"TensorFlow {sys.modules['tensorflow'].__version__}"
    return litert_model(data, "tensorflow", source.run, details)
