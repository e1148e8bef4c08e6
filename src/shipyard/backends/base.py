"""The backend contract: a loaded model instance that runs a batch of NumPy inputs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

from shipyard.config import ModelConfig
from shipyard.errors import ModelLoadError
from shipyard.types import Array, TensorSpec

__all__ = ["MODEL_FILENAMES", "Backend", "load_backend", "resolve_backend"]

#: The file each backend looks for inside a version folder.
MODEL_FILENAMES = {"onnxruntime": "model.onnx", "tflite": "model.tflite"}


class Backend(Protocol):
    """One loaded instance of a model version. ``run`` is called from worker threads."""

    #: V2 platform string, e.g. ``onnx_onnxv1``.
    platform: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def run(self, inputs: Mapping[str, Array], outputs: Sequence[str]) -> list[Array]:
        """Run the model; return the named ``outputs`` in the order asked."""
        ...

    def close(self) -> None:
        """Release the model's resources."""
        ...


def resolve_backend(version_dir: Path, config: ModelConfig) -> str:
    """The backend that serves ``version_dir``: the one ``config`` names, or, for ``auto``
    (model.toml names none), ``tflite`` when the folder holds model.tflite and no model.onnx,
    else ``onnxruntime``."""
    if config.backend != "auto":
        return config.backend
    if not (version_dir / "model.onnx").exists() and (version_dir / "model.tflite").is_file():
        return "tflite"
    return "onnxruntime"


def load_backend(version_dir: Path, config: ModelConfig) -> Backend:
    """Load the model file in ``version_dir`` with the backend named by ``config``.

    Blocking (reads and compiles the model): call it off the event loop.
    """
    backend = resolve_backend(version_dir, config)
    filename = MODEL_FILENAMES.get(backend)
    if filename is None:
        raise ModelLoadError(f"unknown backend {backend!r}")
    path = version_dir / filename
    if not path.is_file():
        raise ModelLoadError(
            f"no {filename} in {version_dir} "
            f"(the {backend} backend expects <repo>/<name>/<version>/{filename})"
        )
    if backend == "tflite":
        from shipyard.backends.tflite import TfliteBackend

        return TfliteBackend(path, config)
    from shipyard.backends.onnxruntime import OnnxRuntimeBackend

    return OnnxRuntimeBackend(path, config)
