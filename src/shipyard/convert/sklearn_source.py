"""scikit-learn sources: estimators and pipelines saved with pickle or joblib, via skl2onnx.

Loading a pickle runs code stored in the file, so :func:`convert_sklearn` refuses unless the
caller passes ``trust_pickle=True`` (``--trust-pickle``). The model takes one 2-D input
(``[-1, n_features_in_]``, FP32 unless ``--input`` says otherwise). Classifiers are converted
with ZipMap off, so they output ``label`` ([-1]) and ``probabilities`` ([-1, classes]) as
plain tensors; regressors and transformers output ``variable``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from shipyard.convert.base import Converted, converter_error, quiet, require
from shipyard.convert.signature import onnx_signature
from shipyard.errors import ConfigError, ConversionError
from shipyard.types import Array, DataType, JSONObject, TensorSpec

__all__ = ["PICKLE_WARNING", "convert_sklearn"]

PICKLE_WARNING = (
    "is a pickle, and loading a pickle executes code stored in it, so Shipyard refuses it"
    " unless you trust where it came from"
)
_HINT_TRUST = "pass --trust-pickle if you made this file or trust whoever did"
_TENSOR_TYPES = {
    DataType.FP32: "FloatTensorType",
    DataType.FP64: "DoubleTensorType",
    DataType.INT64: "Int64TensorType",
    DataType.INT32: "Int32TensorType",
}


def _load(path: Path) -> Any:
    joblib = require("joblib", "sklearn", "sklearn")
    require("sklearn", "sklearn", "sklearn")
    try:
        with quiet():
            return joblib.load(path)
    except Exception as exc:
        raise converter_error(
            "load", "sklearn", exc, f"{path} is not a readable pickle/joblib file; re-save it"
        ) from exc


def _input_spec(model: Any, overrides: tuple[TensorSpec, ...]) -> TensorSpec:
    if len(overrides) > 1:
        raise ConfigError("scikit-learn models take one input tensor; give at most one --input")
    features = getattr(model, "n_features_in_", None)
    if overrides:
        spec = overrides[0]
        if spec.datatype not in _TENSOR_TYPES or len(spec.shape) != 2:
            raise ConfigError(
                f"--input {spec.name}: scikit-learn inputs are 2-D [-1, features] of "
                + ", ".join(_TENSOR_TYPES)
            )
        if features is not None and spec.shape[1] not in (-1, features):
            raise ConfigError(
                f"--input {spec.name}: the model was fitted on {features} features, "
                f"not {spec.shape[1]}"
            )
        return spec
    if not isinstance(features, int):
        raise ConfigError(
            "the model does not record its number of features; pass --input input:FP32:-1,FEATURES"
        )
    return TensorSpec("input", DataType.FP32, (-1, features))


def _reference(model: Any, spec: TensorSpec, outputs: tuple[TensorSpec, ...]) -> Any:
    def run(feed: Mapping[str, Array]) -> list[Array]:
        features = feed[spec.name]
        results: list[Array] = []
        for out in outputs:
            if out.name == "probabilities":
                value = model.predict_proba(features)
            elif out.name == "label" or (out.name == "variable" and hasattr(model, "predict")):
                value = model.predict(features)
            else:
                value = model.transform(features)
            value = np.asarray(value)
            if len(out.shape) == 2 and value.ndim == 1:
                value = value.reshape(len(features), -1)
            results.append(value)
        return results

    return run


def convert_sklearn(
    path: Path, input_overrides: tuple[TensorSpec, ...], opset: int | None, trust_pickle: bool
) -> Converted:
    """Load a pickled estimator (only if trusted) and convert it with skl2onnx."""
    if not trust_pickle:
        raise ConversionError(
            f"{path} {PICKLE_WARNING}", step="load", framework="sklearn", hint=_HINT_TRUST
        )
    model = _load(path)
    if not (hasattr(model, "predict") or hasattr(model, "transform")) or not hasattr(
        model, "get_params"
    ):
        raise ConversionError(
            f"{path} holds a {type(model).__name__}, not a scikit-learn estimator or pipeline",
            step="load",
            framework="sklearn",
            hint="save the fitted estimator itself with joblib.dump(model, path)",
        )
    try:
        spec = _input_spec(model, input_overrides)
    except ConfigError as exc:
        raise ConversionError(exc.message, step="signature", framework="sklearn") from exc
    skl2onnx = require("skl2onnx", "sklearn", "sklearn")
    data_types = require("skl2onnx.common.data_types", "sklearn", "sklearn")
    from sklearn.base import is_classifier

    tensor_type = getattr(data_types, _TENSOR_TYPES[spec.datatype])
    dims = [None if d == -1 else d for d in spec.shape]
    options = {"zipmap": False} if is_classifier(model) else None
    try:
        with quiet():
            onnx_model = skl2onnx.convert_sklearn(
                model,
                initial_types=[(spec.name, tensor_type(dims))],
                target_opset=opset,
                options=options,
            )
    except Exception as exc:
        raise converter_error(
            "convert",
            "sklearn",
            exc,
            "skl2onnx has no converter for a step of this model; check skl2onnx's supported"
            " models or register a custom converter",
        ) from exc
    try:
        _, outputs = onnx_signature(onnx_model)
    except ConfigError as exc:
        raise ConversionError(exc.message, step="signature", framework="sklearn") from exc
    details: JSONObject = {"estimator": type(model).__name__, "opset": _opset(onnx_model)}
    return Converted(onnx_model, (spec,), outputs, _reference(model, spec, outputs), details)


def _opset(model: Any) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
