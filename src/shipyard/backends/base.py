"""The backend contract: a loaded model instance that runs a batch of NumPy inputs.

A backend may also implement ``abort()`` (:class:`~shipyard.batching.instances.Abortable`):
the batcher calls it when a run overruns the model's ``execution_timeout_s``, before the
instance is replaced. ONNX Runtime ends the run; the Python backend kills its worker.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

from shipyard.config import ModelConfig
from shipyard.errors import ModelLoadError
from shipyard.types import Array, TensorSpec

__all__ = ["MODEL_FILENAMES", "Backend", "load_backend", "load_model_file", "resolve_backend"]

#: The files each backend looks for inside a version folder, in order of preference
#: (OpenVINO reads its own IR, model.xml + model.bin, or an ONNX file; a Python model is the
#: version's model.py, loaded by the repository, not by :func:`load_backend`).
MODEL_FILENAMES: dict[str, tuple[str, ...]] = {
    "onnxruntime": ("model.onnx",),
    "tflite": ("model.tflite",),
    "openvino": ("model.xml", "model.onnx"),
    "python": ("model.py",),
}


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
    (model.toml names none), ``onnxruntime`` when the folder holds model.onnx, else ``tflite``
    when it holds model.tflite, else ``openvino`` when it holds OpenVINO IR (model.xml), else
    ``python`` when it holds model.py, else ``onnxruntime`` (whose error then names the file
    it expects)."""
    if config.backend != "auto":
        return config.backend
    if (version_dir / "model.onnx").exists():
        return "onnxruntime"
    if (version_dir / "model.tflite").is_file():
        return "tflite"
    if (version_dir / "model.xml").is_file():
        return "openvino"
    if (version_dir / "model.py").is_file():
        return "python"
    return "onnxruntime"


def load_backend(version_dir: Path, config: ModelConfig) -> Backend:
    """Load the model file in ``version_dir`` with the backend named by ``config``.

    Blocking (reads and compiles the model): call it off the event loop. Python models and
    ensembles are loaded by the repository (they need the version and the other models).
    """
    backend = resolve_backend(version_dir, config)
    filenames = MODEL_FILENAMES.get(backend)
    if filenames is None or backend == "python":
        raise ModelLoadError(f"backend {backend!r} is not loaded by load_backend")
    path = next(
        (version_dir / name for name in filenames if (version_dir / name).is_file()),
        version_dir / filenames[0],
    )
    if not path.is_file():
        wanted = " or ".join(filenames)
        raise ModelLoadError(
            f"no {wanted} in {version_dir} "
            f"(the {backend} backend expects <repo>/<name>/<version>/{filenames[0]})"
        )
    if backend == "tflite":
        from shipyard.backends.tflite import TfliteBackend

        return TfliteBackend(path, config)
    if backend == "openvino":
        from shipyard.backends.openvino import OpenVinoBackend

        return OpenVinoBackend(path, config)
    from shipyard.backends.onnxruntime import OnnxRuntimeBackend

    return OnnxRuntimeBackend(path, config)


def load_model_file(path: Path, config: ModelConfig) -> Backend:
    """Load one model file with the backend that serves it: OpenVINO for IR (``.xml``) or when
    ``config`` names it, LiteRT for ``.tflite``, else ONNX Runtime (what the offline tools run).
    """
    if path.suffix == ".xml" or config.backend == "openvino":
        from shipyard.backends.openvino import OpenVinoBackend

        return OpenVinoBackend(path, config)
    if path.suffix == ".tflite":
        from shipyard.backends.tflite import TfliteBackend

        return TfliteBackend(path, config)
    from shipyard.backends.onnxruntime import OnnxRuntimeBackend

    return OnnxRuntimeBackend(path, config)
