"""Which version an offline step works on, the data its accuracy guard compares on, and the
guard itself run on two loaded versions (:func:`guard_accuracy`).

Shared by ``shipyard optimize`` and ``shipyard tune``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from shipyard.backends.base import Backend, load_model_file
from shipyard.backends.onnxruntime import OnnxRuntimeBackend
from shipyard.config import ModelConfig
from shipyard.errors import ConversionError, ModelLoadError, NotFoundError, UnsupportedError
from shipyard.optimize.data import Dataset, random_dataset
from shipyard.optimize.guard import Metric, accuracy_guard, arrays_runner, client_postprocessing
from shipyard.repository.layout import ModelSource
from shipyard.types import JSONObject

__all__ = [
    "RANDOM_SAMPLES",
    "baseline_version",
    "guard_accuracy",
    "load_onnx",
    "load_served",
    "onnx_file",
    "resolve_version",
    "validation_dataset",
]

#: Random samples drawn for the accuracy guard when no validation data is given.
RANDOM_SAMPLES = 64


def resolve_version(source: ModelSource, version: int | None) -> int:
    """``version`` if it exists (default: the latest), else NotFoundError."""
    versions = source.versions()
    if not versions:
        raise NotFoundError(f"model {source.name!r} has no version in {source.path}")
    if version is None:
        return versions[-1]
    if version not in versions:
        raise NotFoundError(
            f"model {source.name!r} has no version {version}"
            f" (versions: {', '.join(map(str, versions))})"
        )
    return version


def onnx_file(source: ModelSource, version: int) -> Path:
    """The model.onnx of ``version``; UnsupportedError for other formats."""
    path = source.version_dir(version) / "model.onnx"
    if not path.is_file():
        raise UnsupportedError(
            f"{source.version_dir(version)} has no model.onnx: optimize works on ONNX versions"
        )
    return path


def baseline_version(source: ModelSource, version: int) -> int:
    """The unoptimized ancestor of ``version``: what its report.json names, when still there."""
    try:
        report = json.loads((source.version_dir(version) / "report.json").read_text("utf-8"))
        baseline = int(report["optimization"]["baseline_version"])
    except (OSError, ValueError, KeyError, TypeError):
        return version
    if (source.version_dir(baseline) / "model.onnx").is_file():
        return baseline
    return version


def load_onnx(path: Path, config: ModelConfig, what: str) -> OnnxRuntimeBackend:
    """Load ``path`` with the model's session options; a ConversionError naming ``what``."""
    try:
        return OnnxRuntimeBackend(path, config)
    except ModelLoadError as exc:
        raise ConversionError(
            exc.message,
            step=f"load the {what}",
            framework="onnxruntime",
            hint="this method does not suit this model or provider; try another --quantize",
        ) from exc


def load_served(path: Path, config: ModelConfig, what: str) -> Backend:
    """Load ``path`` with the backend the server would use for it (model.toml's ``backend``;
    OpenVINO for IR), so the guards judge what will be served; a ConversionError naming
    ``what``."""
    try:
        return load_model_file(path, config)
    except ModelLoadError as exc:
        raise ConversionError(
            exc.message,
            step=f"load the {what}",
            framework=resolve_engine(path, config),
            hint="this method does not suit this model or backend; try another --quantize",
        ) from exc


def resolve_engine(path: Path, config: ModelConfig) -> str:
    """``openvino`` or ``onnxruntime``: the engine :func:`load_served` uses for ``path``."""
    return "openvino" if path.suffix == ".xml" or config.backend == "openvino" else "onnxruntime"


def validation_dataset(
    validation: Path | None,
    calibration: Dataset | None,
    backend: Backend,
    read: Callable[[Path, str], Dataset],
) -> tuple[Dataset, str | None]:
    """The guard's data: ``validation``, else the calibration data, else random inputs,
    with a note saying which when it is not real validation data."""
    if validation is not None:
        return read(validation, "validation"), None
    if calibration is not None:
        return calibration, (
            "no --validation data: the guard used the calibration data, which flatters a"
            " calibrated candidate; pass separate --validation data"
        )
    return random_dataset(backend.inputs, RANDOM_SAMPLES), (
        "no --validation data: the guard compared outputs on random inputs; pass --validation"
        " FILE.npz (with 'labels' for an accuracy figure) for a meaningful guard"
    )


def guard_accuracy(
    baseline: Backend,
    candidate: Backend,
    dataset: Dataset,
    *,
    model: Backend,
    config: ModelConfig,
    model_dir: Path,
    metric: Metric | None,
    max_drop: float,
) -> JSONObject:
    """The accuracy guard of ``candidate`` against ``baseline`` on what clients get.

    ``model`` gives the signature (the version being optimized); ``config`` and ``model_dir``
    the model's ``[[postprocess]]`` entries, applied to both models' outputs before the metric
    when there are any (see :mod:`shipyard.optimize.guard`). Raises ConfigError when an entry
    is wrong (the server would not load the model either).
    """
    names = [spec.name for spec in model.outputs]
    postprocess = client_postprocessing(config, model_dir, model.inputs, model.outputs)
    return accuracy_guard(
        arrays_runner(baseline.run, names),
        arrays_runner(candidate.run, names),
        dataset,
        model.inputs,
        model.outputs,
        metric,
        max_drop,
        postprocess,
    )
