"""The parity check: run the source model and the converted one on the same inputs, compare.

Inputs come from ``--sample FILE.npz`` (one array per model input, named after it) or are drawn
at random from the signature (a batch of :data:`RANDOM_BATCH`; standard normal floats, small
integers, random booleans). For each output the report records the largest absolute error, the
largest relative error (``|converted - source| / max(|source|, 1e-6)``), how many elements are
outside ``atol + rtol * |source|`` (NumPy's ``allclose`` rule), and, for classifier-shaped
outputs (floating point, ``[batch, classes]`` with classes > 1), the fraction of rows whose
top-1 class agrees. Integer, boolean and string outputs (labels) must match exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shipyard.convert.base import Arrays, Reference, converter_error, quiet
from shipyard.errors import ConversionError
from shipyard.sampling import example_shape, random_tensor
from shipyard.types import Array, DataType, TensorSpec

__all__ = [
    "INT8_TOLERANCES",
    "RANDOM_BATCH",
    "Tolerances",
    "check_parity",
    "load_sample",
    "random_inputs",
]

RANDOM_BATCH = 8
_REL_FLOOR = 1e-6


@dataclass(frozen=True, slots=True)
class Tolerances:
    """Largest accepted differences; the defaults suit fp32 models converted to fp32."""

    atol: float = 1e-4
    rtol: float = 1e-3
    #: Scale ``atol`` by each output's largest magnitude (at least 1): quantization errors
    #: grow with the range an output spans.
    range_relative: bool = False


#: Defaults for int8-quantized TFLite models (``--quantize int8``): an error of up to 5% of
#: each output's range (largest magnitude, at least 1) per element.
INT8_TOLERANCES = Tolerances(atol=0.05, rtol=0.05, range_relative=True)


def random_inputs(
    specs: Sequence[TensorSpec], rng: np.random.Generator, batch: int = RANDOM_BATCH
) -> Arrays:
    """Random arrays matching ``specs`` (dynamic dims: ``batch`` first, 8 elsewhere)."""
    arrays: Arrays = {}
    for spec in specs:
        shape = example_shape(spec, batch)
        if spec.datatype is DataType.BYTES:
            raise ConversionError(
                f"cannot draw random BYTES data for input {spec.name!r}",
                step="parity inputs",
                hint="pass --sample FILE.npz with real inputs",
            )
        arrays[spec.name] = random_tensor(spec.datatype, shape, rng, normal=True)
    return arrays


def load_sample(path: Path, specs: Sequence[TensorSpec]) -> Arrays:
    """Read ``--sample FILE.npz``: one array per input, named after it, cast to its datatype."""
    try:
        with np.load(path, allow_pickle=False) as data:
            found = {name: np.asarray(data[name]) for name in data.files}
    except (OSError, ValueError) as exc:
        raise ConversionError(
            f"cannot read {path}: {exc}",
            step="parity inputs",
            hint="save it with numpy.savez(path, input_name=array, ...)",
        ) from exc
    missing = [s.name for s in specs if s.name not in found]
    if missing:
        raise ConversionError(
            f"{path} has no array for input(s) {', '.join(missing)}"
            f" (it has {', '.join(found) or 'none'})",
            step="parity inputs",
            hint="name each array after a model input",
        )
    arrays: Arrays = {}
    for spec in specs:
        value = found[spec.name]
        if len(value.shape) != len(spec.shape) or any(
            d != -1 and d != v for d, v in zip(spec.shape, value.shape, strict=False)
        ):
            raise ConversionError(
                f"{path}: array {spec.name!r} has shape {list(value.shape)}, the input is"
                f" {list(spec.shape)}",
                step="parity inputs",
            )
        arrays[spec.name] = value.astype(spec.datatype.numpy)
    return arrays


def _compare(spec: TensorSpec, source: Array, converted: Array, tol: Tolerances) -> dict[str, Any]:
    row: dict[str, Any] = {
        "name": spec.name,
        "datatype": spec.datatype.value,
        "shape": list(converted.shape),
        "max_abs_error": None,
        "max_rel_error": None,
        "mismatched": 0,
        "elements": int(converted.size),
        "top1_agreement": None,
        "passed": False,
    }
    if source.size == converted.size and source.shape != converted.shape:
        source = source.reshape(converted.shape)
    if source.shape != converted.shape:
        row["note"] = f"shape differs: source {list(source.shape)}"
        return row
    if converted.dtype.kind in "fc" and source.dtype.kind in "fciub":
        ref = source.astype(np.float64)
        got = converted.astype(np.float64)
        diff = np.abs(got - ref)
        if converted.size:
            row["max_abs_error"] = float(diff.max())
            row["max_rel_error"] = float((diff / np.maximum(np.abs(ref), _REL_FLOOR)).max())
        atol = tol.atol
        if tol.range_relative and ref.size:
            atol *= max(1.0, float(np.abs(ref).max()))
        bad = ~(diff <= atol + tol.rtol * np.abs(ref))
        row["mismatched"] = int(np.count_nonzero(bad))
        if converted.ndim == 2 and converted.shape[1] > 1 and converted.shape[0] > 0:
            same = np.argmax(ref, axis=1) == np.argmax(got, axis=1)
            row["top1_agreement"] = float(same.mean())
    else:
        equal = np.asarray(source.astype(str) == converted.astype(str))
        if source.dtype.kind not in "OSU" and converted.dtype.kind not in "OSU":
            equal = np.asarray(source == converted)
            if converted.size:
                diff = np.abs(source.astype(np.float64) - converted.astype(np.float64))
                row["max_abs_error"] = float(diff.max())
        row["mismatched"] = int(np.count_nonzero(~equal))
    row["passed"] = row["mismatched"] == 0
    return row


def check_parity(
    framework: str,
    reference: Reference,
    converted: Reference,
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    tolerances: Tolerances,
    sample: Path | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Run both models on the same inputs; return the parity report (see the module doc)."""
    feed = (
        load_sample(sample, inputs)
        if sample is not None
        else random_inputs(inputs, np.random.default_rng(seed))
    )
    results: list[list[Array]] = []
    for step, run in (("run source model", reference), ("run converted model", converted)):
        try:
            with quiet():
                results.append([np.asarray(a) for a in run(feed)])
        except ConversionError:
            raise
        except Exception as exc:
            raise converter_error(
                f"parity check: {step}",
                framework,
                exc,
                "check that the --input signature (or --sample data) fits the model",
            ) from exc
    source, target = results
    if len(source) != len(target):
        raise ConversionError(
            f"the source model returned {len(source)} output(s), the converted one {len(target)}",
            step="parity check",
            framework=framework,
        )
    rows = [
        _compare(spec, s, t, tolerances) for spec, s, t in zip(outputs, source, target, strict=True)
    ]
    return {
        "inputs_from": str(sample) if sample is not None else f"random (seed {seed})",
        "batch": _batch(feed),
        "tolerances": {
            "atol": tolerances.atol,
            "rtol": tolerances.rtol,
            "range_relative": tolerances.range_relative,
        },
        "outputs": rows,
        "passed": all(row["passed"] for row in rows),
    }


def _batch(feed: Mapping[str, Array]) -> int | None:
    first = next(iter(feed.values()), None)
    return int(first.shape[0]) if first is not None and first.ndim else None
