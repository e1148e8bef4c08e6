"""Output post-processing (softmax, argmax, top-k with labels, pooling, normalization) and
Triton's ``classification`` output parameter.

A ``[[postprocess]]`` entry transforms one model output; ``topk`` replaces it with two outputs,
labels (BYTES) and scores (FP32). A labels file (one label per line) belongs to the entry and is
used by ``topk``, by the ``classification`` parameter and by ``/predict``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from shipyard.config import PostprocessConfig
from shipyard.errors import ConfigError, InternalError, InvalidInputError, brief
from shipyard.processing.steps import OUTPUT_STEPS, Options, model_file, unknown_step
from shipyard.types import Array, DataType, TensorSpec

__all__ = [
    "OutputChain",
    "build_output_chain",
    "check_classification",
    "classify",
    "read_labels",
    "top_k",
]

Kind = Literal["classifier", "embedding", "raw"]
_Op = Callable[[Array, Mapping[str, Array]], Array]


def read_labels(path: Path, where: str) -> tuple[str, ...]:
    """The labels of a labels file: one per line, trailing blank lines ignored."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where}: cannot read labels file {path.name}: {exc}") from exc
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise ConfigError(f"{where}: labels file {path.name} is empty")
    return tuple(line.strip() for line in lines)


def top_k(values: Array, k: int) -> tuple[Array, Array]:
    """Indices and values of the ``k`` largest entries along the last axis, largest first."""
    k = min(k, values.shape[-1])
    part = np.argpartition(-values, k - 1, axis=-1)[..., :k]
    picked = np.take_along_axis(values, part, axis=-1)
    order = np.argsort(-picked, axis=-1, kind="stable")
    indices = np.take_along_axis(part, order, axis=-1)
    return indices, np.take_along_axis(values, indices, axis=-1)


def classify(
    name: str, values: Array, count: object, labels: tuple[str, ...] | None, batched: bool
) -> Array:
    """Triton's ``classification``: the top ``count`` as BYTES ``"value:index[:label]"``.

    Batched models get ``[batch, count]`` (each row's elements compared together), others
    ``[count]``. Values print as C's ``%f`` for floats (Triton's ``std::to_string``).
    """
    top = check_classification(name, count, DataType.from_numpy(values.dtype))
    if values.size == 0:
        raise InvalidInputError(
            f"output {name!r}: 'classification' needs a numeric output with elements, not "
            f"{DataType.from_numpy(values.dtype)} {list(values.shape)}"
        )
    rows = values.reshape(values.shape[0], -1) if batched else values.reshape(1, -1)
    indices, picked = top_k(rows, top)
    is_float = values.dtype.kind == "f"
    out = np.empty(indices.shape, dtype=object)
    for r in range(indices.shape[0]):
        for c in range(indices.shape[1]):
            index = int(indices[r, c])
            value = f"{float(picked[r, c]):f}" if is_float else str(int(picked[r, c]))
            text = f"{value}:{index}"
            if labels is not None:
                text += f":{_label(name, labels, index)}"
            out[r, c] = text.encode("utf-8")
    return out if batched else out[0]


def check_classification(name: str, count: object, datatype: DataType) -> int:
    """Return a ``classification`` count; refuse a bad one, or a non-numeric output, with 400."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise InvalidInputError(
            f"output {name!r}: 'classification' must be an integer >= 1, got {brief(count)}"
        )
    if datatype in (DataType.BYTES, DataType.BOOL):
        raise InvalidInputError(
            f"output {name!r}: 'classification' needs a numeric output, not {datatype}"
        )
    return count


def _label(name: str, labels: tuple[str, ...], index: int) -> str:
    if index >= len(labels):
        raise InternalError(
            f"output {name!r}: class {index} has no label (the labels file has {len(labels)})"
        )
    return labels[index]


@dataclass(slots=True)
class OutputChain:
    """A checked ``[[postprocess]]`` entry for the model output ``output``."""

    output: str
    spec: TensorSpec
    labels: tuple[str, ...] | None
    kind: Kind
    ops: list[_Op] = field(default_factory=list)
    #: ``(k, labels output, scores output)`` when the entry ends with ``topk``.
    topk: tuple[int, str, str] | None = None
    #: Model inputs the steps read (``mean_pool``'s mask).
    needs: tuple[str, ...] = ()
    #: Whether the result's last axis still holds one value per class (no argmax, topk, pool).
    keeps_classes: bool = True
    #: The entry's step names, in order (``("mean_pool", "l2_normalize")``).
    steps: tuple[str, ...] = ()

    def client_specs(self) -> list[TensorSpec]:
        """The outputs this entry shows clients, in place of the model output."""
        if self.topk is None:
            return [self.spec]
        k, labels_name, scores_name = self.topk
        shape = (*self.spec.shape[:-1], k)
        return [
            TensorSpec(labels_name, DataType.BYTES, shape),
            TensorSpec(scores_name, DataType.FP32, shape),
        ]

    @property
    def decision(self) -> str | None:
        """The step that turns scores into class ids or labels (argmax, topk), if the entry
        ends with one."""
        return self.steps[-1] if self.steps[-1:] in (("argmax",), ("topk",)) else None

    def scores(self, value: Array, model_inputs: Mapping[str, Array]) -> Array:
        """The numbers the entry computes from one model output, before a class decision.

        The client-facing output itself when the entry ends with no decision (an embedding,
        probabilities); else the scores ``argmax``/``topk`` decide from. The offline accuracy
        guard compares these (``shipyard.optimize.guard``).
        """
        ops = self.ops[:-1] if self.decision == "argmax" else self.ops
        for op in ops:
            value = op(value, model_inputs)
        return value

    def run(self, value: Array, model_inputs: Mapping[str, Array]) -> dict[str, Array]:
        """Apply the steps to one model output; return the client-facing outputs."""
        for op in self.ops:
            value = op(value, model_inputs)
        if self.topk is None:
            return {self.spec.name: value}
        k, labels_name, scores_name = self.topk
        indices, scores = top_k(value, k)
        texts = np.empty(indices.shape, dtype=object)
        for position, index in np.ndenumerate(indices):
            i = int(index)
            label = str(i) if self.labels is None else _label(self.output, self.labels, i)
            texts[position] = label.encode("utf-8")
        return {labels_name: texts, scores_name: scores.astype(np.float32, copy=False)}


def build_output_chain(
    entry: PostprocessConfig,
    where: str,
    model_dir: Path,
    source: TensorSpec,
    model_inputs: Mapping[str, TensorSpec],
) -> OutputChain:
    """Check an entry against the model output it transforms; raise ConfigError on mistakes."""
    labels = None
    if entry.labels is not None:
        labels = read_labels(model_file(model_dir, entry.labels, "labels file", where), where)
        classes = source.shape[-1] if source.shape else -1
        if classes != -1 and classes != len(labels):
            raise ConfigError(
                f"{where}: labels file {entry.labels} has {len(labels)} labels but output "
                f"{source.name!r} {list(source.shape)} has {classes} classes"
            )
    shape = list(source.shape)
    datatype = source.datatype
    ops: list[_Op] = []
    needs: list[str] = []
    topk = None
    ended = ""
    kind: Kind = "classifier" if labels is not None else "raw"
    for i, step in enumerate(entry.steps):
        at = f"{where}.steps[{i}]"
        if step.op not in OUTPUT_STEPS:
            raise unknown_step(step, at, OUTPUT_STEPS)
        if ended:
            raise ConfigError(f"{at}: nothing may follow {ended}")
        if datatype in (DataType.BYTES, DataType.BOOL) or not shape:
            raise ConfigError(
                f"{at}: {step.op} needs a numeric output with at least one axis, but "
                f"{source.name!r} is {datatype} {shape}"
            )
        if step.op == "softmax":
            Options(step, at, ())
            ops.append(_softmax)
            datatype, kind = DataType.FP32, "classifier"
        elif step.op == "l2_normalize":
            Options(step, at, ())
            ops.append(_l2_normalize)
            datatype, kind = DataType.FP32, "embedding"
        elif step.op == "mean_pool":
            mask = Options(step, at, {"mask"}).string("mask", "attention_mask")
            if mask not in model_inputs:
                raise ConfigError(
                    f"{at}: mask {mask!r} is not a model input (it has {', '.join(model_inputs)})"
                )
            if len(shape) != 3:
                raise ConfigError(
                    f"{at}: mean_pool needs a [batch, tokens, dims] output, but "
                    f"{source.name!r} is {shape}"
                )
            ops.append(functools.partial(_mean_pool, mask=mask))
            needs.append(mask)
            shape = [shape[0], shape[2]]
            datatype, kind = DataType.FP32, "embedding"
        elif step.op == "argmax":
            Options(step, at, ())
            ops.append(_argmax)
            shape = shape[:-1]
            datatype, kind, ended = DataType.INT64, "classifier", "argmax"
        else:  # topk
            opts = Options(step, at, {"k", "labels_output", "scores_output"})
            k = opts.integer("k")
            if shape[-1] != -1 and k > shape[-1]:
                raise opts.error(f"k = {k} is more than the {shape[-1]} classes of {source.name!r}")
            names = (opts.string("labels_output", "labels"), opts.string("scores_output", "scores"))
            if names[0] == names[1]:
                raise opts.error("labels_output and scores_output must differ")
            topk = (k, *names)
            kind, ended = "classifier", "topk"
    spec = TensorSpec(source.name, datatype, tuple(shape))
    keeps = not ended and not needs and kind != "embedding"
    steps = tuple(step.op for step in entry.steps)
    return OutputChain(source.name, spec, labels, kind, ops, topk, tuple(needs), keeps, steps)


def _argmax(values: Array, inputs: Mapping[str, Array]) -> Array:
    out: Array = np.argmax(values, axis=-1).astype(np.int64)
    return out


def _softmax(values: Array, inputs: Mapping[str, Array]) -> Array:
    shifted = values.astype(np.float32, copy=False) - values.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    out: Array = exp / exp.sum(axis=-1, keepdims=True)
    return out


def _l2_normalize(values: Array, inputs: Mapping[str, Array]) -> Array:
    values = values.astype(np.float32, copy=False)
    norm = np.linalg.norm(values, axis=-1, keepdims=True)
    out: Array = values / np.maximum(norm, np.float32(1e-12))
    return out


def _mean_pool(values: Array, inputs: Mapping[str, Array], mask: str) -> Array:
    weights = inputs[mask].astype(np.float32)[..., None]
    total = (values.astype(np.float32, copy=False) * weights).sum(axis=1)
    out: Array = total / np.maximum(weights.sum(axis=1), np.float32(1e-9))
    return out
