"""Pipeline: a model version's checked pre- and post-processing, built when the model loads.

The pipeline owns the model's **client-facing signature**: processed inputs (BYTES, one image or
text per batch row) replace the model inputs they feed, and processed outputs replace the model
outputs they transform. Unprocessed inputs and outputs pass through unchanged. Python steps
(:mod:`~shipyard.processing.python_steps`) take part the same way: a pre step's declared inputs
replace the model inputs it feeds, a post step's declared outputs replace the model outputs it
reads.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from shipyard.config import ModelConfig, PreprocessConfig
from shipyard.errors import ConfigError
from shipyard.processing.image import ImageChain, build_image_chain
from shipyard.processing.outputs import Kind, OutputChain, build_output_chain
from shipyard.processing.python_steps import PythonStage, StepRunner, python_step_specs
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
    #: Python pre-processing steps (run before the model, after the declarative chains).
    python_pre: tuple[PythonStage, ...] = ()
    #: Client output name → the Python post-processing step that makes it.
    python_post: dict[str, PythonStage] = field(default_factory=dict)
    #: Client output name → the model outputs its Python post step reads.
    python_sources: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def kind(self) -> Kind:
        """What ``/predict`` answers: labelled classes, embeddings, or raw outputs."""
        for chain in self.post.values():
            if chain.kind != "raw":
                return chain.kind
        return "raw"

    async def preprocess(self, arrays: Mapping[str, Array]) -> dict[str, Array]:
        """Client inputs → model inputs; large payloads are processed in a worker thread."""
        if self.python_pre:
            arrays = await self._run_python_pre(arrays)
        size = sum(
            sum(len(v) for v in arrays[name].reshape(-1) if isinstance(v, bytes))
            for name in self.pre
            if name in arrays
        )
        if size <= INLINE_BYTES:
            return self.preprocess_now(arrays)
        return await asyncio.to_thread(self.preprocess_now, arrays)

    async def _run_python_pre(self, arrays: Mapping[str, Array]) -> dict[str, Array]:
        """Run the Python pre steps (at once, each through its own batcher)."""
        results = await asyncio.gather(
            *(
                stage.runner.submit({n: arrays[n] for n in stage.takes}, stage.gives)
                for stage in self.python_pre
            )
        )
        taken = {n for stage in self.python_pre for n in stage.takes}
        out = {n: a for n, a in arrays.items() if n not in taken}
        for result in results:
            out.update(result)
        return out

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
        needed: dict[str, None] = {}
        for name in wanted:
            if name in self.python_post:
                needed.update(dict.fromkeys(self.python_sources[name]))
            else:
                needed[self.sources[name]] = None
        return list(needed)

    async def postprocess(
        self, results: Mapping[str, Array], model_inputs: Mapping[str, Array], wanted: list[str]
    ) -> dict[str, Array]:
        """Model outputs → the client outputs ``wanted``."""
        out: dict[str, Array] = {}
        declarative = [name for name in wanted if name not in self.python_post]
        for source in dict.fromkeys(self.sources[name] for name in declarative):
            chain = self.post.get(source)
            if chain is None:
                out[source] = results[source]
            else:
                out.update(chain.run(results[source], model_inputs))
        stages = {id(s): s for name in wanted if (s := self.python_post.get(name)) is not None}
        if stages:
            tensors = {**model_inputs, **results}
            done = await asyncio.gather(
                *(
                    stage.runner.submit(
                        {n: tensors[n] for n in stage.takes},
                        [g for g in stage.gives if g in wanted],
                    )
                    for stage in stages.values()
                )
            )
            for result in done:
                out.update(result)
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
    python_pre: Sequence[StepRunner] = (),
    python_post: Sequence[StepRunner] = (),
) -> Pipeline | None:
    """Check the model's processing config against its signature; ``None`` when it has none.

    Reads the files it names (labels, tokenizer). Raises ConfigError naming the entry and
    step at fault, which fails the model's load. ``python_pre`` and ``python_post`` run the
    model's Python steps, in the order of :func:`python_step_specs`; a caller that runs no
    repository code (the offline tools) passes none, and a model with Python steps is then
    refused.
    """
    if not (
        config.preprocess
        or config.postprocess
        or config.python_preprocess
        or config.python_postprocess
    ):
        return None
    pre_specs, post_specs = python_step_specs(config, inputs, outputs)
    if len(python_pre) != len(pre_specs) or len(python_post) != len(post_specs):
        steps = ", ".join(s.where for s in [*pre_specs, *post_specs])
        raise ConfigError(
            f"model {config.name!r} has Python steps ({steps}), which only the server runs "
            "(with --allow-python-models)"
        )
    python_stages = [PythonStage(s, r) for s, r in zip(pre_specs, python_pre, strict=True)]
    post_stages = [PythonStage(s, r) for s, r in zip(post_specs, python_post, strict=True)]
    model_inputs = {spec.name: spec for spec in inputs}
    pre: dict[str, Chain] = {}
    fed: dict[str, str] = {
        target: stage.spec.where for stage in python_stages for target in stage.gives
    }
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
    added = [
        *(
            (name, TensorSpec(name, DataType.BYTES, chain.client_shape))
            for name, chain in pre.items()
        ),
        *((s.name, s) for stage in python_stages for s in stage.spec.inputs),
    ]
    for name, spec in added:
        if any(shown.name == name for shown in client_inputs):
            raise ConfigError(
                f"preprocess: input name {name!r} is also a model input that is not processed "
                "(or another step's input); choose another name"
            )
        client_inputs.append(spec)
    post = build_postprocess(config, model_dir, inputs, outputs)
    read_by_python = {n for stage in post_stages for n in stage.takes}
    client_outputs: list[TensorSpec] = []
    sources: dict[str, str] = {}
    python_outputs: dict[str, PythonStage] = {}
    for spec in outputs:
        out_chain = post.get(spec.name)
        if out_chain is None and spec.name in read_by_python:
            continue  # a Python post step turns it into outputs of its own
        for shown in out_chain.client_specs() if out_chain is not None else [spec]:
            _add_output(shown, client_outputs)
            sources[shown.name] = spec.name
    model_outputs = {spec.name for spec in outputs}
    python_sources: dict[str, tuple[str, ...]] = {}
    for stage in post_stages:
        for shown in stage.spec.outputs:
            _add_output(shown, client_outputs)
            python_outputs[shown.name] = stage
            python_sources[shown.name] = tuple(n for n in stage.takes if n in model_outputs)
    return Pipeline(
        tuple(client_inputs),
        tuple(client_outputs),
        pre,
        post,
        sources,
        tuple(python_stages),
        python_outputs,
        python_sources,
    )


def _add_output(spec: TensorSpec, shown: list[TensorSpec]) -> None:
    if any(s.name == spec.name for s in shown):
        raise ConfigError(
            f"postprocess: two outputs are named {spec.name!r}; rename one "
            "(topk's labels_output / scores_output, a Python step's outputs)"
        )
    shown.append(spec)


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
