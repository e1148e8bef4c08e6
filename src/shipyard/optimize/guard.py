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

**What clients get.** When the model's ``model.toml`` declares ``[[postprocess]]`` entries
(:func:`client_postprocessing`), both models' outputs go through them, with the server's own
step code (:meth:`~shipyard.processing.outputs.OutputChain.scores`), before the metric: an
embedding model is judged on its pooled, normalized sentence embeddings, not on raw token
embeddings whose padding positions clients never see. Steps that read a model input
(``mean_pool``'s mask) take it from the validation data. An entry that ends with a class
decision (``argmax``, or ``topk`` with its labels) is compared on the scores it decides from
(e.g. the softmax probabilities): labels are not numbers, and ``top1-agreement`` on those scores
is the agreement of the label clients get first. The raw-output figures are kept in
``raw_outputs``.

**Speed guard.** The candidate must be better than the model it replaces at the user's
``objective`` on this machine: ``latency`` (p50 at batch 1, the default), ``throughput``
(samples/s at batch N) or ``size`` (file bytes). Both models are timed in interleaved rounds
(:func:`~shipyard.optimize.benchmark.benchmark_rounds`); each round gives one paired ratio,
the ratio used is the median of them, and the **noise margin** is their relative spread
(max - min over median), so a gain or loss counts only when it exceeds what the rounds
themselves disagree by. "Better" also needs more than ``min_gain`` (a gain worth a new
version). A candidate that is measurably slower at a speed objective is never published
without ``force``; with ``size`` it may be slower, and the verdict says by how much. With a
single round the noise cannot be measured, and ``min_gain`` stands in for it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import numpy.typing as npt

from shipyard.config import ModelConfig
from shipyard.errors import InvalidInputError
from shipyard.optimize.benchmark import Measurement
from shipyard.optimize.data import Arrays, Dataset, batches
from shipyard.processing.outputs import OutputChain
from shipyard.processing.pipeline import build_postprocess
from shipyard.types import Array, TensorSpec

__all__ = [
    "DEFAULT_MAX_DROP",
    "DEFAULT_MIN_GAIN",
    "OBJECTIVES",
    "Metric",
    "Objective",
    "PostProcessing",
    "accuracy_guard",
    "client_postprocessing",
    "default_metric",
    "speed_guard",
]

Metric = Literal["accuracy", "top1-agreement", "cosine", "max-abs"]
METRICS: tuple[str, ...] = get_args(Metric)
#: What a candidate must be better at to be published: see the module docstring.
Objective = Literal["latency", "throughput", "size"]
OBJECTIVES: tuple[str, ...] = get_args(Objective)
DEFAULT_MAX_DROP = 0.01
#: The smallest gain (a fraction) worth publishing a new version for.
DEFAULT_MIN_GAIN = 0.05
#: Samples per model call during validation.
VALIDATION_BATCH = 64

Runner = Callable[[Arrays], list[Array]]


@dataclass(frozen=True, slots=True)
class PostProcessing:
    """A model's ``[[postprocess]]`` entries, applied to its outputs before the guard's metric."""

    #: The model outputs, in the order a :data:`Runner` returns them.
    names: tuple[str, ...]
    #: The checked entries, by model output (the server's own :class:`OutputChain`).
    chains: Mapping[str, OutputChain]

    def apply(self, results: Sequence[Array], feed: Arrays) -> list[Array]:
        """Each model output as clients get it (scores before a class decision); ``feed``: the
        model inputs, for steps that read one (``mean_pool``'s mask)."""
        return [
            self.chains[name].scores(result, feed) if name in self.chains else result
            for name, result in zip(self.names, results, strict=True)
        ]

    @property
    def steps(self) -> dict[str, list[str]]:
        """The step names applied, by model output."""
        return {name: list(chain.steps) for name, chain in self.chains.items()}

    @property
    def embedding(self) -> bool:
        """Whether an entry makes an embedding (then ``cosine`` is the default metric)."""
        return any(chain.kind == "embedding" for chain in self.chains.values())

    def describe(self) -> str:
        """``mean_pool, l2_normalize``; prefixed by the output when the model has several."""
        parts = []
        for name, chain in self.chains.items():
            text = ", ".join(chain.steps) or "no step"
            if chain.decision:
                text += f" (compared on the scores before {chain.decision})"
            parts.append(text if len(self.names) == 1 else f"{name}: {text}")
        return "; ".join(parts)


def client_postprocessing(
    config: ModelConfig,
    model_dir: Path,
    inputs: tuple[TensorSpec, ...],
    outputs: tuple[TensorSpec, ...],
) -> PostProcessing | None:
    """The model's ``[[postprocess]]`` entries as the server builds them; ``None`` without any.

    Raises ConfigError, as the server's load would, when an entry is wrong.
    """
    chains = build_postprocess(config, model_dir, inputs, outputs)
    if not chains:
        return None
    return PostProcessing(tuple(spec.name for spec in outputs), chains)


def _classifier_index(outputs: Sequence[TensorSpec], results: Sequence[Array]) -> int:
    for i, array in enumerate(results):
        if array.dtype.kind == "f" and array.ndim == 2 and array.shape[1] > 1:
            return i
    names = ", ".join(f"{s.name} {list(r.shape)}" for s, r in zip(outputs, results, strict=True))
    raise InvalidInputError(
        f"no output is shaped [batch, classes] ({names}); use --metric cosine or max-abs"
    )


def default_metric(
    dataset: Dataset, outputs: Sequence[TensorSpec], embedding: bool = False
) -> Metric:
    """``accuracy`` with labels; else ``top1-agreement`` for classifiers; else ``cosine``
    (also for a model whose post-processing makes embeddings)."""
    if dataset.labels is not None:
        return "accuracy"
    if embedding:
        return "cosine"
    classifier = any(s.datatype.numpy.kind == "f" and len(s.shape) == 2 for s in outputs)
    return "top1-agreement" if classifier else "cosine"


def _run_all(
    run: Runner, dataset: Dataset, inputs: Sequence[TensorSpec], post: PostProcessing | None
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The raw outputs over the whole dataset, and the same after ``post`` (else the same)."""
    raw: list[list[Array]] = []
    processed: list[list[Array]] = []
    for feed in batches(dataset.arrays, VALIDATION_BATCH, inputs):
        results = run(feed)
        raw.append(results)
        if post is not None:
            processed.append(post.apply(results, feed))
    if not raw:
        raise InvalidInputError(f"validation data {dataset.origin} has too few samples")

    def joined(parts: list[list[Array]]) -> list[np.ndarray]:
        return [np.concatenate([p[i] for p in parts]) for i in range(len(parts[0]))]

    whole = joined(raw)
    return whole, joined(processed) if post is not None else whole


def _cosine(a: Array, b: Array) -> float:
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
    postprocess: PostProcessing | None = None,
) -> dict[str, Any]:
    """Compare ``candidate`` with ``baseline`` on ``dataset``; return the guard's figures.

    With ``postprocess``, the figures are those of the post-processed outputs (what clients
    get), ``compared`` says so, and ``raw_outputs`` holds the same figures on the raw outputs.
    The result's ``passed`` is False when the drop exceeds ``max_drop``.
    """
    metric = metric or default_metric(
        dataset, outputs, embedding=postprocess is not None and postprocess.embedding
    )
    if metric not in METRICS:
        raise InvalidInputError(f"unknown metric {metric!r}; use one of {', '.join(METRICS)}")
    if metric == "accuracy" and dataset.labels is None:
        raise InvalidInputError(
            f"--metric accuracy needs a 'labels' array in the validation data ({dataset.origin})"
        )
    base_raw, base = _run_all(baseline, dataset, inputs, postprocess)
    cand_raw, cand = _run_all(candidate, dataset, inputs, postprocess)
    figures: dict[str, Any] = {
        "metric": metric,
        "max_drop": max_drop,
        "validation": dataset.origin,
        "samples": int(base[0].shape[0]) if base and base[0].ndim else dataset.size,
    }
    if postprocess is not None:
        figures["compared"] = f"after post-processing: {postprocess.describe()}"
        figures["postprocess"] = postprocess.steps
    figures.update(_figures(base, cand, dataset.labels, outputs, metric, strict=True))
    drop = figures["drop"]
    figures["passed"] = bool(drop <= max_drop)
    if postprocess is not None:
        figures["raw_outputs"] = _figures(
            base_raw, cand_raw, dataset.labels, outputs, metric, strict=False
        )
    return figures


def _figures(
    base: Sequence[Array],
    cand: Sequence[Array],
    labels: npt.NDArray[np.int64] | None,
    outputs: Sequence[TensorSpec],
    metric: Metric,
    *,
    strict: bool,
) -> dict[str, Any]:
    """Every figure that applies to these outputs, and ``drop`` for ``metric``.

    ``strict``: a metric that needs a ``[batch, classes]`` output the outputs lack is an error;
    otherwise (raw outputs shown for transparency) those figures and ``drop`` are left out.
    """
    floats = [i for i, a in enumerate(base) if a.dtype.kind == "f"]
    figures: dict[str, Any] = {}
    if floats:
        figures["max_abs_error"] = max(
            float(np.abs(base[i].astype(np.float64) - cand[i]).max(initial=0.0)) for i in floats
        )
        figures["cosine"] = min(_cosine(base[i], cand[i]) for i in floats)
    top = None
    if metric in ("accuracy", "top1-agreement") or labels is not None:
        try:
            top = _classifier_index(outputs, base)
        except InvalidInputError:
            if strict and metric in ("accuracy", "top1-agreement"):
                raise
    if top is not None:
        b_top, c_top = base[top].argmax(axis=1), cand[top].argmax(axis=1)
        figures["top1_agreement"] = float((b_top == c_top).mean())
        if labels is not None:
            count = b_top.shape[0]
            figures["baseline_accuracy"] = float((b_top == labels[:count]).mean())
            figures["candidate_accuracy"] = float((c_top == labels[:count]).mean())
    if metric in ("accuracy", "top1-agreement") and top is None:
        return figures  # not strict: no classifier output among these
    drop = {
        "accuracy": lambda: figures["baseline_accuracy"] - figures["candidate_accuracy"],
        "top1-agreement": lambda: 1.0 - figures["top1_agreement"],
        "cosine": lambda: 1.0 - figures.get("cosine", 1.0),
        "max-abs": lambda: figures.get("max_abs_error", 0.0),
    }[metric]()
    figures["drop"] = float(drop)
    return figures


def _paired(ratios: Sequence[float], min_gain: float) -> tuple[float, float | None, float]:
    """The median of per-round ratios, their relative spread (None for one round), and the
    margin a change must exceed to be more than noise."""
    middle = float(np.median(ratios))
    if len(ratios) < 2:
        return middle, None, min_gain
    spread = (max(ratios) - min(ratios)) / max(middle, 1e-12)
    return middle, spread, spread


def speed_guard(
    before: Sequence[Measurement],
    after: Sequence[Measurement],
    size_before: int,
    size_after: int,
    objective: Objective = "latency",
    min_gain: float = DEFAULT_MIN_GAIN,
) -> dict[str, Any]:
    """Is ``after`` better than ``before`` at ``objective``, beyond the rounds' noise?

    ``before`` and ``after`` are the same rounds of the two models (round ``i`` of each ran
    back to back). Returns the ratios (> 1 is better for speedups, < 1 for size), the noise
    margins, which changes are measurable, ``passed`` and a one-line ``verdict``.
    """
    if objective not in OBJECTIVES:
        raise InvalidInputError(
            f"unknown objective {objective!r}; use one of {', '.join(OBJECTIVES)}"
        )
    if not before or len(before) != len(after):
        raise ValueError("speed_guard needs the same number (>= 1) of rounds for both models")
    latency, latency_noise, latency_margin = _paired(
        [
            b.latency.p50_ms / max(a.latency.p50_ms, 1e-9)
            for b, a in zip(before, after, strict=True)
        ],
        min_gain,
    )
    throughput, throughput_noise, throughput_margin = _paired(
        [
            a.throughput.samples_per_s / max(b.throughput.samples_per_s, 1e-9)
            for b, a in zip(before, after, strict=True)
        ],
        min_gain,
    )
    size_ratio = size_after / max(size_before, 1)
    faster_latency = latency > 1 + max(min_gain, latency_margin)
    faster_throughput = throughput > 1 + max(min_gain, throughput_margin)
    slower_latency = latency < 1 - latency_margin
    slower_throughput = throughput < 1 - throughput_margin
    smaller = size_ratio < 1 - min_gain
    gains = [
        text
        for ok, text in (
            (faster_latency, f"latency {latency:.2f}x faster"),
            (faster_throughput, f"throughput {throughput:.2f}x higher"),
            (smaller, f"{1 / size_ratio:.2f}x smaller" if size_ratio else "smaller"),
        )
        if ok
    ]
    losses = [
        text
        for ok, text in (
            (slower_latency, f"latency {1 / max(latency, 1e-9):.2f}x slower"),
            (slower_throughput, f"throughput {1 / max(throughput, 1e-9):.2f}x lower"),
        )
        if ok
    ]
    passed = {"latency": faster_latency, "throughput": faster_throughput, "size": smaller}[
        objective
    ]
    rounds = len(before)
    noise = (
        f"noise margin ±{latency_margin:.1%} latency, ±{throughput_margin:.1%} throughput"
        f" over {rounds} rounds"
        if rounds > 1
        else f"1 round, so the noise is unmeasured: the {min_gain:.0%} minimum gain stands in"
    )
    if passed:
        verdict = f"better at {objective}: " + ", ".join(gains)
        if losses:
            verdict += f"; but {', '.join(losses)}"
    elif objective != "size" and (slower_latency if objective == "latency" else slower_throughput):
        verdict = f"slower at {objective} on this hardware: {', '.join(losses)} ({noise})"
        if gains:
            verdict += f", although {', '.join(gains)}"
    else:
        figure = {
            "latency": f"latency {latency:.2f}x",
            "throughput": f"throughput {throughput:.2f}x",
            "size": f"size {size_ratio:.2f}x of the original",
        }[objective]
        verdict = f"not measurably better at {objective} on this hardware: {figure}"
        if objective != "size":
            verdict += f" ({noise}; a gain must exceed {min_gain:.0%})"
        others = gains + losses
        if others:
            verdict += f"; {', '.join(others)}"
    if not passed and smaller and objective != "size":
        verdict += "; --objective size would publish it for its size"
    return {
        "objective": objective,
        "min_gain": min_gain,
        "rounds": rounds,
        "latency_speedup": latency,
        "throughput_speedup": throughput,
        "size_ratio": size_ratio,
        "noise": {"latency": latency_noise, "throughput": throughput_noise},
        "faster_latency": faster_latency,
        "faster_throughput": faster_throughput,
        "smaller": smaller,
        "slower_latency": slower_latency,
        "slower_throughput": slower_throughput,
        "slower": bool(losses),
        "passed": passed,
        "verdict": verdict,
    }


def arrays_runner(
    run: Callable[[Mapping[str, Array], Sequence[str]], list[Array]], names: Sequence[str]
) -> Runner:
    """Adapt ``backend.run(inputs, output_names)`` to a :data:`Runner`."""
    return lambda feed: [np.asarray(a) for a in run(feed, list(names))]
