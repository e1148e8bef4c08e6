"""Which framework a conversion SOURCE belongs to, from its name and its first bytes.

Recognised sources:

- ``model.onnx``                         ONNX
- ``model.pt2``                          PyTorch ``torch.export`` program (a zip archive)
- ``model.pt`` / ``.pth`` / ``.ts``      PyTorch TorchScript (a zip archive with ``code/``)
- ``module.py:factory``                  PyTorch: a callable returning an ``nn.Module``
- ``model.pkl`` / ``.joblib`` / ``.pickle``  scikit-learn (a pickle; needs ``--trust-pickle``)
- ``model.keras`` / ``.h5``, a SavedModel folder   Keras / TensorFlow

``--framework`` overrides the guess, but a source that is recognisably another framework's
(an ONNX file given with ``--framework torch``) is refused rather than misread.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from shipyard.errors import ConversionError

__all__ = ["FRAMEWORKS", "LABELS", "Framework", "Source", "TorchKind", "detect_source"]

Framework = Literal["torch", "keras", "tensorflow", "sklearn", "onnx"]
FRAMEWORKS: tuple[Framework, ...] = ("torch", "keras", "tensorflow", "sklearn", "onnx")
TorchKind = Literal["exported", "torchscript", "factory", "state_dict"]

#: How messages name each framework.
LABELS: dict[str, str] = {
    "torch": "PyTorch",
    "keras": "Keras",
    "tensorflow": "TensorFlow",
    "sklearn": "scikit-learn",
    "onnx": "ONNX",
}
_PICKLE_SUFFIXES = {".pkl", ".pickle", ".joblib"}
_TORCH_SUFFIXES = {".pt", ".pth", ".ts", ".pt2"}


@dataclass(frozen=True, slots=True)
class Source:
    """A resolved conversion source: its path, framework and (for PyTorch) its kind."""

    path: Path
    framework: Framework
    #: For PyTorch sources: what the file holds.
    torch_kind: TorchKind | None = None
    #: For ``module.py:factory``: the callable's name.
    factory: str | None = None


def _a(label: str) -> str:
    return f"an {label}" if label[0] in "AEIOU" else f"a {label}"


def _fail(message: str, hint: str) -> ConversionError:
    return ConversionError(message, step="detect framework", hint=hint)


def _zip_kind(path: Path) -> TorchKind | None:
    """What a PyTorch zip archive holds, or None if it is not one."""
    if not zipfile.is_zipfile(path):
        return None
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return None
    tails = {name.split("/", 1)[-1] for name in names}
    if "archive_format" in tails or any(t.startswith("models/") for t in tails):
        return "exported"
    if "constants.pkl" in tails or any(t.startswith("code/") for t in tails):
        return "torchscript"
    if "data.pkl" in tails:
        return "state_dict"
    return None


def _sniff(path: Path) -> tuple[Framework, TorchKind | None] | None:
    """Guess from the file itself; None when nothing is recognisable."""
    if path.is_dir():
        if (path / "saved_model.pb").exists():
            return "tensorflow", None
        return None
    kind = _zip_kind(path)
    if kind is not None:
        return "torch", kind
    suffix = path.suffix.lower()
    if suffix == ".keras" and zipfile.is_zipfile(path):
        return "keras", None
    with path.open("rb") as handle:
        head = handle.read(8)
    if head.startswith(b"\x89HDF"):
        return "keras", None
    if suffix == ".onnx":
        return "onnx", None
    if suffix in _TORCH_SUFFIXES:  # not a zip archive: the loader reports what is wrong
        return "torch", "exported" if suffix == ".pt2" else "torchscript"
    if suffix in _PICKLE_SUFFIXES or head[:1] == b"\x80":
        return "sklearn", None
    return None


def detect_source(source: str, framework: Framework | None = None) -> Source:
    """Resolve SOURCE (a path, or ``module.py:factory``) and its framework; raise on doubt."""
    module, sep, factory = source.rpartition(":")
    if sep and module.endswith(".py"):
        path = Path(module)
        if not path.is_file():
            raise _fail(f"{module} does not exist", "check the path of the module file")
        if not factory.isidentifier():
            raise _fail(
                f"{factory!r} is not a Python name", "use module.py:factory with a function name"
            )
        if framework not in (None, "torch"):
            raise _fail(
                f"{source} is a PyTorch module factory, not a {LABELS[framework]} model",
                "drop --framework or pass --framework torch",
            )
        return Source(path, "torch", "factory", factory)
    path = Path(source)
    if not path.exists():
        raise _fail(f"{source} does not exist", "check the path")
    if path.is_file() and path.stat().st_size == 0:
        raise _fail(f"{source} is empty", "re-save the model")
    guess = _sniff(path)
    if guess is None:
        if framework is None:
            raise _fail(
                f"cannot tell which framework {source} belongs to",
                "pass --framework torch|keras|tensorflow|sklearn|onnx",
            )
        kind: TorchKind | None = None
        if framework == "torch":
            kind = "exported" if path.suffix == ".pt2" else "torchscript"
        return Source(path, framework, kind)
    found, kind = guess
    if framework is not None and framework != found:
        raise _fail(
            f"{source} looks like {_a(LABELS[found])} model, not {_a(LABELS[framework])} one",
            f"drop --framework, or pass --framework {found}",
        )
    if kind == "state_dict":
        raise _fail(
            f"{source} is a torch.save() file (a state dict or a pickled module), which holds"
            " weights but not the model's code",
            "pass module.py:factory --weights " + source + ", or save with torch.export",
        )
    return Source(path, found, kind)
