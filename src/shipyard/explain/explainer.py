"""Explain one prediction of a served model: what in its input made the score what it is.

:func:`explain` picks the method from the input's pre-processing: images (an image
``[[preprocess]]`` entry) get occlusion or RISE over the pixels the model sees, texts (a
``tokenize`` entry) word occlusion, and plain tensors feature occlusion. Every perturbation
runs through the model's own batcher (:mod:`~shipyard.explain.runner`). The score explained:

- a classifier (or any output with a class axis): the target class's score, by default the
  top one for the unperturbed input; attributions are how much that score drops;
- an embedding (``l2_normalize`` or ``mean_pool`` post-processing): the cosine between the
  perturbed input's embedding and the full input's (or, with ``reference``, the cosine to the
  reference text's embedding); attributions are how much it drops.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shipyard.errors import InvalidInputError, brief
from shipyard.explain.options import ExplainOptions, check_count, parse_options
from shipyard.explain.perturb import Occlusion, Rise, feature_chunks, word_texts
from shipyard.explain.runner import ModelRunner, map_chunks
from shipyard.processing.image import ImageChain
from shipyard.processing.text import TextChain
from shipyard.repository.registry import ServedVersion
from shipyard.types import Array

__all__ = ["Explanation", "explain"]


@dataclass(frozen=True, slots=True)
class Explanation:
    """An explanation: attributions and how they were made (``to_dict`` is its JSON form)."""

    model_name: str
    model_version: str
    input: str
    #: ``image``, ``text`` or ``tensor``.
    kind: str
    method: str
    target: dict[str, Any]
    parameters: dict[str, Any]
    #: Image: ``[height, width]``; text: one per word; tensor: the instance's shape.
    attributions: Array
    perturbations: int
    #: Requests submitted to the model's batcher (each up to max_batch_size perturbations).
    batches: int
    words: tuple[str, ...] = ()
    #: Image only: what the model saw, ``[height, width, channels]`` uint8, for an overlay.
    image: Array | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The JSON answer of ``POST .../explain``."""
        out: dict[str, Any] = {
            "model_name": self.model_name,
            "model_version": self.model_version,
            "input": self.input,
            "kind": self.kind,
            "method": self.method,
            "target": self.target,
            "parameters": self.parameters,
            "perturbations": self.perturbations,
            "batches": self.batches,
            "shape": list(self.attributions.shape),
            "attributions": np.round(self.attributions.astype(np.float64), 7).tolist(),
        }
        if self.kind == "text":
            out["words"] = [
                {"word": word, "importance": round(float(value), 7)}
                for word, value in zip(self.words, self.attributions, strict=True)
            ]
        return out


async def explain(
    served: ServedVersion, arrays: Mapping[str, Array], parameters: Mapping[str, Any]
) -> Explanation:
    """Explain the prediction for the one instance in ``arrays`` (client inputs, validated)."""
    where = f"model {served.name!r}"
    options = parse_options(parameters, where)
    pipeline = served.pipeline
    name = _input(where, arrays, options, pipeline.pre if pipeline is not None else {})
    if served.max_batch_size > 0 and int(arrays[name].shape[0]) != 1:
        raise InvalidInputError(
            f"{where}: explain takes one instance; input {name!r} has"
            f" {int(arrays[name].shape[0])} (dim 0)"
        )
    chain = pipeline.pre.get(name) if pipeline is not None else None
    runner = ModelRunner(served, _output(where, served, options))
    if options.reference is not None and runner.kind != "embedding":
        raise InvalidInputError(f"{where}: reference is for embedding models only")
    job = _Job(served, runner, options, where, dict(arrays), name)
    if isinstance(chain, ImageChain):
        return await job.image(chain)
    if isinstance(chain, TextChain):
        return await job.text()
    if options.method != "occlusion":
        raise InvalidInputError(f"{where}: method {options.method} is for image inputs only")
    return await job.tensor()


def _input(
    where: str, arrays: Mapping[str, Array], options: ExplainOptions, pre: Mapping[str, Any]
) -> str:
    if options.input is not None:
        if options.input not in arrays:
            raise InvalidInputError(
                f"{where}: input {options.input!r} is not in the request"
                f" (it has {', '.join(map(repr, arrays))})"
            )
        return options.input
    processed = [name for name in arrays if name in pre]
    candidates = processed or list(arrays)
    if len(candidates) != 1:
        raise InvalidInputError(
            f"{where}: say which input to explain with the 'input' parameter"
            f" ({', '.join(map(repr, candidates))})"
        )
    return candidates[0]


def _output(where: str, served: ServedVersion, options: ExplainOptions) -> str:
    names = [spec.name for spec in served.outputs]
    if options.output is None:
        return names[0]
    sources = served.pipeline.sources if served.pipeline is not None else {}
    output = sources.get(options.output, options.output)
    if output not in names:
        raise InvalidInputError(
            f"{where}: unknown output {options.output!r}; the model has"
            f" {', '.join(map(repr, names))}"
        )
    return output


class _Job:
    """One explanation in progress: the model, its runner, the options and the instance."""

    def __init__(
        self,
        served: ServedVersion,
        runner: ModelRunner,
        options: ExplainOptions,
        where: str,
        arrays: dict[str, Array],
        name: str,
    ) -> None:
        self.served, self.runner, self.options, self.where = served, runner, options, where
        self.arrays, self.name = arrays, name
        self.limit = served.config.explain.max_perturbations
        # A model without batching takes inputs without a batch axis: add one for the rows.
        self.lead = 0 if runner.batching else 1
        self.model_inputs: dict[str, Array] = {}
        #: The vector rows are compared with by cosine (embeddings); None: a class score.
        self.compare: Array | None = None
        self.index = 0

    def _model_inputs(self, client: Mapping[str, Array]) -> dict[str, Array]:
        pipeline = self.served.pipeline
        arrays = pipeline.preprocess_now(client) if pipeline is not None else dict(client)
        return {n: a[None] for n, a in arrays.items()} if self.lead else arrays

    async def _prepare(self) -> tuple[float, dict[str, Any]]:
        """Score the unperturbed instance; fix what the rows are compared with."""
        runner, options = self.runner, self.options
        full = (await runner.scores(self.model_inputs))[0]
        target: dict[str, Any] = {"output": runner.output}
        if options.reference is not None:
            text = np.empty(1, dtype=object)
            text[0] = options.reference.encode("utf-8")
            reference = self._model_inputs({**self.arrays, self.name: text})
            self.compare = (await runner.scores(reference))[0]
            target["measure"] = "cosine to the reference's embedding"
        elif runner.kind == "embedding":
            self.compare = full
            target["measure"] = "cosine to the full input's embedding"
        else:
            self.index = _target_index(self.where, options.target, full, runner.labels)
            labels = runner.labels
            target["index"] = self.index
            target["label"] = labels[self.index] if labels and self.index < len(labels) else None
        score = float(self._score(full[None])[0])
        target["score"] = score
        return score, target

    def _score(self, vectors: Array) -> Array:
        if self.compare is not None:
            return _cosine(vectors, self.compare)
        out: Array = vectors[:, self.index]
        return out

    def _explanation(
        self,
        kind: str,
        method: str,
        target: dict[str, Any],
        parameters: dict[str, Any],
        attributions: Array,
        perturbations: int,
        **extra: Any,
    ) -> Explanation:
        return Explanation(
            self.served.name,
            str(self.served.version),
            self.name,
            kind,
            method,
            target,
            parameters,
            attributions,
            perturbations,
            self.runner.batches,
            **extra,
        )

    async def image(self, chain: ImageChain) -> Explanation:
        options, order = self.options, chain.order
        axes = (order.index("H") + self.lead, order.index("W") + self.lead)
        # Rows of the perturbed batch: the model input with its batch axis first.
        self.model_inputs = self._model_inputs(self.arrays)
        x = self.model_inputs[chain.target.name]
        height, width = int(x.shape[axes[0]]), int(x.shape[axes[1]])
        if options.method == "occlusion":
            patch = options.patch or max(1, round(min(height, width) / 8))
            stride = options.stride or max(1, patch // 2)
            if patch > min(height, width):
                raise InvalidInputError(
                    f"{self.where}: patch {patch} is larger than the image ({width}x{height})"
                )
            occlusion = Occlusion(height, width, patch, stride)
            count = len(occlusion.windows)
            check_count(
                self.where,
                count,
                self.limit,
                f"{patch}-pixel patches every {stride}",
                "use a larger patch or stride",
            )
            score, target = await self._prepare()
            chunks = occlusion.chunks(x, axes, options.baseline, self.runner.chunk_rows)
            drops = await map_chunks(
                chunks, lambda c: self._drops(chain.target.name, c[1], score), self.runner.in_flight
            )
            heat = occlusion.heatmap(np.concatenate(drops))
            parameters = {"patch": patch, "stride": stride, "baseline": options.baseline}
        else:
            check_count(
                self.where,
                options.masks,
                self.limit,
                f"{options.masks} masks",
                "ask for fewer masks",
            )
            rise = Rise(
                height, width, options.masks, options.cells, options.probability, options.seed
            )
            score, target = await self._prepare()

            async def run(chunk: tuple[Array, Array]) -> Array:
                masks, batch = chunk  # folded at once: the masks are not kept
                scores = self._score(await self.runner.scores(self._rows(chain.target.name, batch)))
                return rise.saliency(masks, scores) * len(masks)

            parts = await map_chunks(
                rise.chunks(x, axes, options.baseline, self.runner.chunk_rows),
                run,
                self.runner.in_flight,
            )
            heat = (np.sum(parts, axis=0) / options.masks).astype(np.float32)
            count = options.masks
            parameters = {
                "masks": options.masks,
                "cells": options.cells,
                "probability": options.probability,
                "seed": options.seed,
                "baseline": options.baseline,
            }
        return self._explanation(
            "image",
            options.method,
            target,
            parameters,
            heat,
            count,
            image=_picture(x[0][0] if self.lead and "N" in order else x[0], order),
        )

    def _rows(self, name: str, batch: Array) -> dict[str, Array]:
        """Model inputs for ``batch``: the other inputs repeated for each row."""
        rows = int(batch.shape[0])
        out = {n: np.repeat(a, rows, axis=0) for n, a in self.model_inputs.items() if n != name}
        out[name] = batch
        return out

    async def _drops(self, name: str, batch: Array, score: float) -> Array:
        out: Array = score - self._score(await self.runner.scores(self._rows(name, batch)))
        return out

    async def text(self) -> Explanation:
        array = self.arrays[self.name].reshape(-1)
        try:
            text = bytes(array[0]).decode("utf-8")
        except (TypeError, UnicodeDecodeError):
            raise InvalidInputError(
                f"{self.where}: input {self.name!r} must be UTF-8 text"
            ) from None
        words, texts = word_texts(text)
        if len(words) < 2:
            raise InvalidInputError(
                f"{self.where}: word occlusion needs a text of two words or more"
            )
        check_count(
            self.where, len(words), self.limit, f"{len(words)} words", "send a shorter text"
        )
        self.model_inputs = self._model_inputs(self.arrays)
        score, target = await self._prepare()
        size = self.runner.chunk_rows
        chunks = [texts[i : i + size] for i in range(0, len(texts), size)]

        async def run(part: list[str]) -> Array:
            values = np.empty(len(part), dtype=object)
            values[:] = [t.encode("utf-8") for t in part]
            rows = len(part)
            others = {
                n: np.repeat(a, rows, axis=0) for n, a in self.arrays.items() if n != self.name
            }
            inputs = self._model_inputs({**others, self.name: values})
            out: Array = score - self._score(await self.runner.scores(inputs))
            return out

        drops = await map_chunks(chunks, run, self.runner.in_flight)
        return self._explanation(
            "text",
            "word occlusion",
            target,
            {},
            np.concatenate(drops).astype(np.float32),
            len(words),
            words=tuple(words),
        )

    async def tensor(self) -> Explanation:
        options = self.options
        self.model_inputs = self._model_inputs(self.arrays)
        x = self.model_inputs[self.name]
        if x.dtype.kind not in "fiu":
            raise InvalidInputError(
                f"{self.where}: input {self.name!r} is {x.dtype}; feature occlusion needs numbers"
            )
        features = int(np.prod(x.shape[1:], dtype=np.int64))
        check_count(
            self.where, features, self.limit, f"{features} features", "explain a smaller input"
        )
        score, target = await self._prepare()
        drops = await map_chunks(
            feature_chunks(x, options.baseline, self.runner.chunk_rows),
            lambda c: self._drops(self.name, c[1], score),
            self.runner.in_flight,
        )
        attributions = np.concatenate(drops).astype(np.float32).reshape(x.shape[1:])
        return self._explanation(
            "tensor",
            "feature occlusion",
            target,
            {"baseline": options.baseline},
            attributions,
            features,
        )


def _cosine(vectors: Array, reference: Array) -> Array:
    norms = np.linalg.norm(vectors, axis=1) * np.linalg.norm(reference)
    out: Array = (vectors @ reference) / np.maximum(norms, 1e-12)
    return out


def _target_index(
    where: str, target: int | str | None, scores: Array, labels: tuple[str, ...] | None
) -> int:
    if target is None:
        return int(np.argmax(scores))
    if isinstance(target, str):
        if labels is None or target not in labels:
            raise InvalidInputError(
                f"{where}: target {brief(target)} is not a label of the output"
                + ("" if labels is None else f" ({', '.join(labels[:20])})")
            )
        return labels.index(target)
    if target >= scores.size:
        raise InvalidInputError(
            f"{where}: target {target} is out of range; the output has {scores.size} values"
        )
    return target


def _picture(plane: Array, order: str) -> Array:
    """What the model saw (``plane``: axes ``order`` less N), as ``[height, width, channels]``
    uint8, min-max scaled."""
    letters = [c for c in order if c != "N"]
    values = np.asarray(plane, dtype=np.float64)
    values = values.transpose([letters.index(c) for c in "HWC" if c in letters])
    if values.ndim == 2:
        values = values[..., None]
    if values.shape[-1] not in (1, 3):
        values = values.mean(axis=-1, keepdims=True)
    low, high = float(values.min()), float(values.max())
    scaled = (values - low) / (high - low) if high > low else np.zeros_like(values)
    out: Array = (scaled * 255).round().astype(np.uint8)
    return out
