"""The two guards a candidate must pass before it is published.

**Accuracy guard.** The baseline (unoptimized) model and the candidate run on the same
validation samples. The guarded figure, per ``metric``:

=================  ============================================================  ===========
metric             figure                                                        "drop"
=================  ============================================================  ===========
``accuracy``       top-1 accuracy against ``labels`` (needs a ``labels`` array)  base - cand
``top1-agreement`` fraction of samples whose top-1 class is the baseline's       1 - value
``cosine``         mean cosine similarity of each sample's outputs               1 - value
``max-abs``        largest absolute difference of any output element             value
=================  ============================================================  ===========

``accuracy`` and ``top1-agreement`` read the first floating-point output shaped
``[batch, classes]`` (classes > 1); ``cosine`` and ``max-abs`` read every floating-point output
and keep the worst. A candidate whose drop exceeds ``max_drop`` is rejected.

**Speed guard.** A candidate must be faster (p50 latency at batch 1, or throughput at batch N)
or smaller (file size) than the model it replaces, each by more than ``min_gain`` (a fraction,
so measurement noise does not count as a gain); otherwise it is not published unless forced.
A candidate that passes by size alone while being slower is published with the loss stated in
the verdict (``slower``), e.g. int8-dynamic on a small CNN.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, get_args

import numpy as np
import numpy.typing as npt

from shipyard.errors import InvalidInputError
from shipyard.optimize.benchmark import Measurement
from shipyard.optimize.data import Arrays, Dataset, batches
from shipyard.types import TensorSpec

__all__ = [
    "DEFAULT_MAX_DROP",
    "DEFAULT_MIN_GAIN",
    "Metric",
    "accuracy_guard",
    "default_metric",
    "speed_guard",
]

Metric = Literal["accuracy", "top1-agreement", "cosine", "max-abs"]
METRICS: tuple[str, ...] = get_args(Metric)
DEFAULT_MAX_DROP = 0.01
DEFAULT_MIN_GAIN = 0.05
#: A candidate whose latency and throughput are both worse by more than this is "clearly
#: slower" and is not published without --force, however much smaller it is.
SLOWER_LIMIT = 0.25
#: Samples per model call during validation.
VALIDATION_BATCH = 64

Runner = Callable[[Arrays], list[npt.NDArray[Any]]]


def _classifier_index(outputs: Sequence[TensorSpec], results: Sequence[npt.NDArray[Any]]) -> int:
    for i, array in enumerate(results):
        if array.dtype.kind == "f" and array.ndim == 2 and array.shape[1] > 1:
            return i
    names = ", ".join(f"{s.name} {list(r.shape)}" for s, r in zip(outputs, results, strict=True))
    raise InvalidInputError(
        f"no output is shaped [batch, classes] ({names}); use --metric cosine or max-abs"
    )


def default_metric(dataset: Dataset, outputs: Sequence[TensorSpec]) -> Metric:
    """``accuracy`` with labels; else ``top1-agreement`` for classifiers; else ``cosine``."""
    if dataset.labels is not None:
        return "accuracy"
    classifier = any(s.datatype.numpy.kind == "f" and len(s.shape) == 2 for s in outputs)
    return "top1-agreement" if classifier else "cosine"


def _run_all(run: Runner, dataset: Dataset, inputs: Sequence[TensorSpec]) -> list[np.ndarray]:
    parts: list[list[npt.NDArray[Any]]] = [
        run(feed) for feed in batches(dataset.arrays, VALIDATION_BATCH, inputs)
    ]
    if not parts:
        raise InvalidInputError(f"validation data {dataset.origin} has too few samples")
    return [np.concatenate([p[i] for p in parts]) for i in range(len(parts[0]))]


def _cosine(a: npt.NDArray[Any], b: npt.NDArray[Any]) -> float:
    x = a.reshape(a.shape[0], -1).astype(np.float64)
    y = b.reshape(b.shape[0], -1).astype(np.float64)
    dot = (x * y).sum(axis=1)
    norms = np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1)
    both_zero = norms == 0
    cos = np.where(both_zero, 1.0, dot / np.where(both_zero, 1.0, norms))
    return float(cos.mean())


def accuracy_guard(
    baseline: Runner,
    candidate: Runner,
    dataset: Dataset,
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    metric: Metric | None = None,
    max_drop: float = DEFAULT_MAX_DROP,
) -> dict[str, Any]:
    """Compare ``candidate`` with ``baseline`` on ``dataset``; return the guard's figures.

    The result's ``passed`` is False when the drop exceeds ``max_drop``.
    """
    metric = metric or default_metric(dataset, outputs)
    if metric not in METRICS:
        raise InvalidInputError(f"unknown metric {metric!r}; use one of {', '.join(METRICS)}")
    if metric == "accuracy" and dataset.labels is None:
        raise InvalidInputError(
            f"--metric accuracy needs a 'labels' array in the validation data ({dataset.origin})"
        )
    base = _run_all(baseline, dataset, inputs)
    cand = _run_all(candidate, dataset, inputs)
    floats = [i for i, a in enumerate(base) if a.dtype.kind == "f"]
    figures: dict[str, Any] = {
        "metric": metric,
        "max_drop": max_drop,
        "validation": dataset.origin,
        "samples": int(base[0].shape[0]) if base and base[0].ndim else dataset.size,
    }
    if floats:
        figures["max_abs_error"] = max(
            float(np.abs(base[i].astype(np.float64) - cand[i]).max(initial=0.0)) for i in floats
        )
        figures["cosine"] = min(_cosine(base[i], cand[i]) for i in floats)
    labels = dataset.labels
    top = None
    if metric in ("accuracy", "top1-agreement") or labels is not None:
        try:
            top = _classifier_index(outputs, base)
        except InvalidInputError:
            if metric in ("accuracy", "top1-agreement"):
                raise
    if top is not None:
        b_top, c_top = base[top].argmax(axis=1), cand[top].argmax(axis=1)
        figures["top1_agreement"] = float((b_top == c_top).mean())
        if labels is not None:
            count = b_top.shape[0]
            figures["baseline_accuracy"] = float((b_top == labels[:count]).mean())
            figures["candidate_accuracy"] = float((c_top == labels[:count]).mean())
    drop = {
        "accuracy": lambda: figures["baseline_accuracy"] - figures["candidate_accuracy"],
        "top1-agreement": lambda: 1.0 - figures["top1_agreement"],
        "cosine": lambda: 1.0 - figures.get("cosine", 1.0),
        "max-abs": lambda: figures.get("max_abs_error", 0.0),
    }[metric]()
    figures["drop"] = float(drop)
    figures["passed"] = bool(drop <= max_drop)
    return figures


def speed_guard(
    before: Measurement,
    after: Measurement,
    size_before: int,
    size_after: int,
    min_gain: float = DEFAULT_MIN_GAIN,
) -> dict[str, Any]:
    """Is ``after`` faster or smaller than ``before`` by more than ``min_gain``, and not clearly
    slower (latency and throughput both worse by more than SLOWER_LIMIT)? With ratios."""
    latency_ratio = before.latency.p50_ms / max(after.latency.p50_ms, 1e-9)
    throughput_ratio = after.throughput.samples_per_s / max(before.throughput.samples_per_s, 1e-9)
    size_ratio = size_after / max(size_before, 1)
    faster_latency = latency_ratio > 1 + min_gain
    faster_throughput = throughput_ratio > 1 + min_gain
    smaller = size_ratio < 1 - min_gain
    gains = [
        text
        for ok, text in (
            (faster_latency, f"latency {latency_ratio:.2f}x faster"),
            (faster_throughput, f"throughput {throughput_ratio:.2f}x higher"),
            (smaller, f"{1 / size_ratio:.2f}x smaller" if size_ratio else "smaller"),
        )
        if ok
    ]
    losses = [
        text
        for ok, text in (
            (latency_ratio < 1 - min_gain, f"latency {1 / max(latency_ratio, 1e-9):.2f}x slower"),
            (
                throughput_ratio < 1 - min_gain,
                f"throughput {1 / max(throughput_ratio, 1e-9):.2f}x lower",
            ),
        )
        if ok
    ]
    # Clearly slower: both latency and throughput worse by more than the noise these machines
    # show. A smaller model that is clearly slower is not an optimization on this hardware.
    clearly_slower = max(latency_ratio, throughput_ratio) < 1 - SLOWER_LIMIT
    if clearly_slower:
        verdict = f"slower on this hardware: {', '.join(losses)}" + (
            f" (although {', '.join(gains)})" if gains else ""
        )
    elif gains:
        verdict = "better: " + ", ".join(gains) + (f"; but {', '.join(losses)}" if losses else "")
    else:
        verdict = (
            f"neither faster nor smaller on this hardware (latency {latency_ratio:.2f}x,"
            f" throughput {throughput_ratio:.2f}x, size {size_ratio:.2f}x of the original)"
        )
    return {
        "min_gain": min_gain,
        "latency_speedup": latency_ratio,
        "throughput_speedup": throughput_ratio,
        "size_ratio": size_ratio,
        "faster_latency": faster_latency,
        "faster_throughput": faster_throughput,
        "smaller": smaller,
        "slower": bool(losses),
        "clearly_slower": clearly_slower,
        "passed": bool(gains) and not clearly_slower,
        "verdict": verdict,
    }


def arrays_runner(
    run: Callable[[Mapping[str, Any], Sequence[str]], list[Any]], names: Sequence[str]
) -> Runner:
    """Adapt ``backend.run(inputs, output_names)`` to a :data:`Runner`."""
    return lambda feed: [np.asarray(a) for a in run(feed, list(names))]
