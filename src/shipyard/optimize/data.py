"""Calibration and validation data: ``.npz`` files with one array per model input.

Each array is named after a model input and holds N samples along its first axis (the batch
axis); a validation file may add a ``labels`` array of N integer class ids. Arrays are checked
against the model's signature here, so a wrong file fails with one line naming the array, its
shape and the input's, before any quantization tool sees it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from shipyard.config import ModelConfig
from shipyard.errors import InvalidInputError, ShipyardError, UnsupportedError
from shipyard.sampling import example_shape, random_tensor
from shipyard.types import Array, DataType, TensorSpec

__all__ = [
    "Arrays",
    "Dataset",
    "batches",
    "load_dataset",
    "load_image_folder",
    "random_dataset",
    "take",
]

Arrays = dict[str, Array]
LABELS = "labels"


@dataclass(frozen=True, slots=True)
class Dataset:
    """Samples for every model input (first axis: sample), optional labels, and their origin."""

    arrays: Arrays
    labels: npt.NDArray[np.int64] | None
    origin: str

    @property
    def size(self) -> int:
        """The number of samples."""
        return int(next(iter(self.arrays.values())).shape[0])


def load_dataset(path: Path, specs: Sequence[TensorSpec], role: str) -> Dataset:
    """Read ``path`` (.npz) for ``role`` ("calibration" or "validation"); raise one-line errors."""
    if path.is_dir():
        raise UnsupportedError(
            f"{role} data from a folder of images ({path}) needs the model's [[preprocess]]"
            " image entry in model.toml; or save the pre-processed inputs with numpy.savez"
        )
    if not path.is_file():
        raise InvalidInputError(f"{role} data {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as data:
            found = {name: np.asarray(data[name]) for name in data.files}
    except (OSError, ValueError, EOFError) as exc:
        raise InvalidInputError(
            f"cannot read {role} data {path}: {exc}; save it with numpy.savez(path, input=array)"
        ) from exc
    missing = [s.name for s in specs if s.name not in found]
    if missing:
        raise InvalidInputError(
            f"{role} data {path} has no array named {', '.join(map(repr, missing))}"
            f" (it has {', '.join(map(repr, found)) or 'none'}); name each array after a model"
            f" input ({', '.join(s.name for s in specs)})"
        )
    arrays: Arrays = {}
    for spec in specs:
        value = found[spec.name]
        if spec.datatype is DataType.BYTES:
            raise UnsupportedError(f"input {spec.name!r} is BYTES: quantization needs numbers")
        if value.ndim != len(spec.shape) or any(
            d != -1 and d != v for d, v in zip(spec.shape[1:], value.shape[1:], strict=False)
        ):
            raise InvalidInputError(
                f"{role} data {path}: array {spec.name!r} has shape {list(value.shape)}, the"
                f" input is {list(spec.shape)} (-1: any size; the first axis counts samples)"
            )
        if value.shape[0] == 0:
            raise InvalidInputError(f"{role} data {path}: array {spec.name!r} has no samples")
        if value.dtype.kind not in "biuf":
            raise InvalidInputError(
                f"{role} data {path}: array {spec.name!r} has dtype {value.dtype}, not numbers"
            )
        arrays[spec.name] = value.astype(spec.datatype.numpy, copy=False)
    sizes = {name: a.shape[0] for name, a in arrays.items()}
    if len(set(sizes.values())) > 1:
        raise InvalidInputError(f"{role} data {path}: arrays differ in sample count: {sizes}")
    labels = None
    if LABELS in found and LABELS not in arrays:
        raw = found[LABELS]
        count = next(iter(sizes.values()))
        if raw.dtype.kind not in "iub" or raw.shape != (count,):
            raise InvalidInputError(
                f"{role} data {path}: 'labels' must be {count} integer class ids, got"
                f" {raw.dtype} {list(raw.shape)}"
            )
        labels = raw.astype(np.int64)
    return Dataset(arrays, labels, str(path))


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def load_image_folder(
    folder: Path,
    config: ModelConfig,
    model_dir: Path,
    inputs: tuple[TensorSpec, ...],
    outputs: tuple[TensorSpec, ...],
    role: str,
) -> Dataset:
    """Every image file in ``folder`` through the model's ``[[preprocess]]`` image entry.

    The model must take exactly one input, fed by an image entry (decode, resize, scale...),
    so that each file becomes one sample, exactly as the server would feed it.
    """
    from shipyard.processing.image import ImageChain
    from shipyard.processing.pipeline import build_pipeline

    pipeline = build_pipeline(config, model_dir, inputs, outputs)
    chains = [c for c in (pipeline.pre.values() if pipeline else ()) if isinstance(c, ImageChain)]
    if len(chains) != 1 or len(inputs) != 1 or chains[0].target.name != inputs[0].name:
        raise UnsupportedError(
            f"{role} data from a folder of images ({folder}) needs a model with one input fed by"
            " a [[preprocess]] image entry in model.toml; save the pre-processed inputs with"
            " numpy.savez instead"
        )
    chain = chains[0]
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InvalidInputError(
            f"{role} folder {folder} has no image ({', '.join(IMAGE_SUFFIXES)})"
        )
    rows = []
    for path in files:
        value = np.empty(1, dtype=object)
        value[0] = path.read_bytes()
        try:
            rows.append(chain.run(value)[chain.target.name])
        except ShipyardError as exc:
            raise InvalidInputError(f"{role} image {path}: {exc.message}") from exc
    return Dataset({chain.target.name: np.concatenate(rows)}, None, str(folder))


def random_dataset(specs: Sequence[TensorSpec], count: int, seed: int = 0) -> Dataset:
    """``count`` random samples per input: floats in [0, 1), small integers, booleans."""
    rng = np.random.default_rng(seed)
    arrays: Arrays = {}
    for spec in specs:
        if spec.datatype is DataType.BYTES:
            raise UnsupportedError(f"input {spec.name!r} is BYTES: pass --validation data")
        shape = example_shape(spec, count)
        shape = (count, *shape[1:]) if shape else shape
        arrays[spec.name] = random_tensor(spec.datatype, shape, rng)
    return Dataset(arrays, None, f"random inputs (seed {seed})")


def take(arrays: Mapping[str, Array], start: int, stop: int) -> Arrays:
    """Samples ``start:stop`` of every array."""
    return {name: a[start:stop] for name, a in arrays.items()}


def batches(
    arrays: Mapping[str, Array], size: int, specs: Sequence[TensorSpec]
) -> Iterator[Arrays]:
    """Split ``arrays`` into feeds of ``size`` samples (a fixed first dimension wins).

    A model whose first dimension is fixed takes exactly that many samples: a remainder that
    does not fill it is dropped.
    """
    fixed = {s.shape[0] for s in specs if s.shape and s.shape[0] > 0}
    step = min(fixed) if fixed else size
    count = int(next(iter(arrays.values())).shape[0])
    last = count - step + 1 if fixed else count
    for start in range(0, max(last, 0), step):
        yield take(arrays, start, start + step)
