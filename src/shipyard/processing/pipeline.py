"""Pipeline: a model version's checked pre- and post-processing, built when the model loads.

The pipeline owns the model's **client-facing signature**: processed inputs (BYTES, one image or
text per batch row) replace the model inputs they feed, and processed outputs replace the model
outputs they transform. Unprocessed inputs and outputs pass through unchanged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from shipyard.config import ModelConfig, PreprocessConfig
from shipyard.errors import ConfigError
from shipyard.processing.image import ImageChain, build_image_chain
from shipyard.processing.outputs import Kind, OutputChain, build_output_chain
from shipyard.processing.steps import IMAGE_STEPS, STEPS, unknown_step
from shipyard.processing.text import TextChain, build_text_chain
from shipyard.types import Array, DataType, TensorSpec

__all__ = ["INLINE_BYTES", "Pipeline", "build_pipeline", "build_postprocess"]

#: Requests whose processed inputs hold at most this many bytes are pre-processed on the event
#: loop (a 28x28 PNG decodes in ~50 µs, less than a thread hop); larger ones in a worker thread.
INLINE_BYTES = 64 * 1024

Chain = ImageChain | TextChain


@dataclass(slots=True)
class Pipeline:
    """Pre-processing by client input, post-processing by model output, and the signature."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    pre: dict[str, Chain]
    post: dict[str, OutputChain]
    #: Client output name → the model output it comes from.
    sources: dict[str, str]

    @property
    def kind(self) -> Kind:
        """What ``/predict`` answers: labelled classes, embeddings, or raw outputs."""
        for chain in self.post.values():
            if chain.kind != "raw":
                return chain.kind
        return "raw"

    async def preprocess(self, arrays: Mapping[str, Array]) -> dict[str, Array]:
        """Client inputs → model inputs; large payloads are processed in a worker thread."""
        size = sum(
            sum(len(v) for v in arrays[name].reshape(-1) if isinstance(v, bytes))
            for name in self.pre
            if name in arrays
        )
        if size <= INLINE_BYTES:
            return self.preprocess_now(arrays)
        return await asyncio.to_thread(self.preprocess_now, arrays)

    def preprocess_now(self, arrays: Mapping[str, Array]) -> dict[str, Array]:
        """Client inputs → model inputs, on the calling thread."""
        out: dict[str, Array] = {}
        for name, array in arrays.items():
            chain = self.pre.get(name)
            if chain is None:
                out[name] = array
            else:
                out.update(chain.run(array))
        return out

    def model_outputs(self, wanted: list[str]) -> list[str]:
        """The model outputs needed to answer the client outputs ``wanted``."""
        return list(dict.fromkeys(self.sources[name] for name in wanted))

    def postprocess(
        self, results: Mapping[str, Array], model_inputs: Mapping[str, Array], wanted: list[str]
    ) -> dict[str, Array]:
        """Model outputs → the client outputs ``wanted``."""
        out: dict[str, Array] = {}
        for source in self.model_outputs(wanted):
            chain = self.post.get(source)
            if chain is None:
                out[source] = results[source]
            else:
                out.update(chain.run(results[source], model_inputs))
        return {name: out[name] for name in wanted}

    def labels(self, output: str) -> tuple[str, ...] | None:
        """The class labels of client output ``output``, when its last axis is the classes."""
        chain = self.post.get(self.sources.get(output, ""))
        if chain is None or not chain.keeps_classes:
            return None
        return chain.labels


def build_pipeline(
    config: ModelConfig,
    model_dir: Path,
    inputs: tuple[TensorSpec, ...],
    outputs: tuple[TensorSpec, ...],
) -> Pipeline | None:
    """Check the model's processing config against its signature; ``None`` when it has none.

    Reads the files it names (labels, tokenizer). Raises ConfigError naming the entry and
    step at fault, which fails the model's load.
    """
    if not config.preprocess and not config.postprocess:
        return None
    model_inputs = {spec.name: spec for spec in inputs}
    pre: dict[str, Chain] = {}
    fed: dict[str, str] = {}
    for i, entry in enumerate(config.preprocess):
        where = f"preprocess[{i}] (input {entry.input!r})"
        if entry.input in pre:
            raise ConfigError(f"{where}: input {entry.input!r} is processed twice")
        chain = _build_input(entry, where, model_dir, model_inputs)
        for target in _targets(chain):
            if target in fed:
                raise ConfigError(
                    f"{where}: model input {target!r} is already fed by input {fed[target]!r}"
                )
            fed[target] = entry.input
        pre[entry.input] = chain
    client_inputs = [spec for spec in inputs if spec.name not in fed]
    for name, chain in pre.items():
        if any(spec.name == name for spec in client_inputs):
            raise ConfigError(
                f"preprocess: input name {name!r} is also a model input that is not processed; "
                "choose another name"
            )
        client_inputs.append(TensorSpec(name, DataType.BYTES, chain.client_shape))
    post = build_postprocess(config, model_dir, inputs, outputs)
    client_outputs: list[TensorSpec] = []
    sources: dict[str, str] = {}
    for spec in outputs:
        out_chain = post.get(spec.name)
        for shown in out_chain.client_specs() if out_chain is not None else [spec]:
            if shown.name in sources:
                raise ConfigError(
                    f"postprocess: two outputs are named {shown.name!r}; rename one "
                    "(topk's labels_output / scores_output)"
                )
            sources[shown.name] = spec.name
            client_outputs.append(shown)
    return Pipeline(tuple(client_inputs), tuple(client_outputs), pre, post, sources)


def build_postprocess(
    config: ModelConfig,
    model_dir: Path,
    inputs: tuple[TensorSpec, ...],
    outputs: tuple[TensorSpec, ...],
) -> dict[str, OutputChain]:
    """The model's checked ``[[postprocess]]`` entries, by model output (empty without any).

    Part of :func:`build_pipeline`; also used alone by the offline accuracy guard, which
    compares post-processed outputs and needs no pre-processing (tokenizer, Pillow).
    """
    model_inputs = {spec.name: spec for spec in inputs}
    model_outputs = {spec.name: spec for spec in outputs}
    post: dict[str, OutputChain] = {}
    for i, post_entry in enumerate(config.postprocess):
        where = f"postprocess[{i}] (output {post_entry.output!r})"
        source = model_outputs.get(post_entry.output)
        if source is None:
            raise ConfigError(
                f"{where}: the model has no output {post_entry.output!r} "
                f"(it has {', '.join(model_outputs)})"
            )
        if post_entry.output in post:
            raise ConfigError(f"{where}: output {post_entry.output!r} is processed twice")
        post[post_entry.output] = build_output_chain(
            post_entry, where, model_dir, source, model_inputs
        )
    return post


def _build_input(
    entry: PreprocessConfig, where: str, model_dir: Path, model_inputs: dict[str, TensorSpec]
) -> Chain:
    if not entry.steps:
        raise ConfigError(f'{where}: steps is empty; e.g. steps = [{{op = "decode_image"}}]')
    first = entry.steps[0]
    if first.op == "tokenize":
        return build_text_chain(entry, where, model_dir, model_inputs)
    if first.op not in IMAGE_STEPS:
        raise unknown_step(
            first, f"{where}.steps[0]", [s for s, k in STEPS.items() if k == "preprocess"]
        )
    if entry.target is None:
        raise ConfigError(f'{where}: needs target = "<model input the image feeds>"')
    target = model_inputs.get(entry.target)
    if target is None:
        raise ConfigError(
            f"{where}: target {entry.target!r} is not a model input "
            f"(it has {', '.join(model_inputs)})"
        )
    return build_image_chain(entry, where, target)


def _targets(chain: Chain) -> list[str]:
    if isinstance(chain, ImageChain):
        return [chain.target.name]
    return list(chain.targets)
