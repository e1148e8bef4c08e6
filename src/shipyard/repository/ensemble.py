"""Ensembles: a model made of other models, wired by tensor names (Triton's ensembles).

model.toml says ``backend = "ensemble"`` and lists ``[[step]]`` tables; each step names a
model (and optionally a version), maps the ensemble tensors that feed its inputs
(``input_map``: step input → ensemble tensor) and names its outputs (``output_map``: step
output → ensemble tensor)::

    backend = "ensemble"

    [[step]]
    model = "tokenizer"
    input_map = { TEXT = "text" }
    output_map = { input_ids = "ids", attention_mask = "mask" }

    [[step]]
    model = "encoder"
    input_map = { input_ids = "ids", attention_mask = "mask" }
    output_map = { embedding = "embedding" }

The ensemble's inputs are the tensors no step produces, its outputs those no step consumes
(or the ``[[inputs]]`` / ``[[outputs]]`` model.toml declares). Steps run as soon as their
inputs exist, each through its model's own pipeline and batcher, so ensemble requests batch
with each other (and with direct requests) at every step. The step models are looked up per
request: reloading one changes the ensemble at once, unloading one makes it not ready.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from shipyard.batching.scheduler import Arrays
from shipyard.config import EnsembleStepConfig, ModelConfig
from shipyard.context import RequestContext
from shipyard.errors import ConfigError, ModelNotReadyError, ShipyardError, UnavailableError
from shipyard.repository.served import ServedVersion, run_version
from shipyard.stats import ModelStats
from shipyard.types import TensorSpec

__all__ = ["EnsembleRunner", "Lookup", "build_ensemble"]

#: Finds a loaded model version (``None``: the latest); raises like ModelRegistry.get.
Lookup = Callable[[str, str | None], ServedVersion]


@dataclass(frozen=True, slots=True)
class _Step:
    config: EnsembleStepConfig
    where: str

    def lookup(self, lookup: Lookup) -> ServedVersion:
        version = self.config.version
        return lookup(self.config.model, None if version is None else str(version))


def _client_signature(served: ServedVersion) -> tuple[dict[str, TensorSpec], dict[str, TensorSpec]]:
    pipeline = served.pipeline
    inputs, outputs = (
        (pipeline.inputs, pipeline.outputs) if pipeline else (served.inputs, served.outputs)
    )
    return {s.name: s for s in inputs}, {s.name: s for s in outputs}


class EnsembleRunner:
    """Runs ensemble requests step by step; the ensemble version's scheduler."""

    def __init__(
        self,
        name: str,
        levels: list[list[_Step]],
        lookup: Lookup,
        stats: ModelStats,
        batched: bool,
    ) -> None:
        self.name = name
        self._batched = batched
        self._levels = levels
        self._lookup = lookup
        self._stats = stats
        self._running = 0
        self._closed = False
        self._idle: asyncio.Event | None = None

    @property
    def queued(self) -> int:
        """Requests waiting (an ensemble queues in its steps' batchers, never here)."""
        return 0

    @property
    def busy(self) -> int:
        """Ensemble requests in progress."""
        return self._running

    @property
    def ready(self) -> bool:
        """Whether every step model is loaded and ready."""
        return not self.problem

    @property
    def problem(self) -> str:
        """The first step model that is not ready, or ``""``."""
        for level in self._levels:
            for step in level:
                try:
                    served = step.lookup(self._lookup)
                except ShipyardError as exc:
                    return f"{step.where}: {exc.message}"
                if not served.ready:
                    return f"{step.where}: model {served.name!r} is not ready: {served.problem}"
        return ""

    async def submit(
        self,
        inputs: Arrays,
        outputs: Sequence[str],
        timeout_us: int = 0,
        deadline: float | None = None,
        timing: RequestContext | None = None,
    ) -> Arrays:
        """Run every step in order (steps of one level at once); return ``outputs``.

        Each step's request gets ``timeout_us`` in its model's queue and ``deadline`` overall.
        ``timing`` gets the whole run as the request's compute (no queue of its own).
        """
        if self._closed:
            raise ModelNotReadyError(f"model {self.name!r} is unloading; retry shortly")
        start_ns = time.perf_counter_ns()
        self._running += 1
        try:
            tensors = dict(inputs)
            for level in self._levels:
                done = await asyncio.gather(
                    *(self._run(step, tensors, timeout_us, deadline) for step in level)
                )
                for produced in done:
                    tensors.update(produced)
        except BaseException:
            self._stats.fail.add(time.perf_counter_ns() - start_ns)
            raise
        finally:
            self._running -= 1
            if self._idle is not None and not self._running:
                self._idle.set()
        end_ns = time.perf_counter_ns()
        elapsed_ns = end_ns - start_ns
        if timing is not None:
            timing.enqueued_at = timing.started_at = start_ns
            timing.finished_at = end_ns
        rows = int(next(iter(inputs.values())).shape[0]) if self._batched and inputs else 1
        self._stats.record_execution(rows, 1, 0, elapsed_ns, 0)
        self._stats.success.add(elapsed_ns)
        return {name: tensors[name] for name in outputs}

    async def _run(
        self, step: _Step, tensors: Arrays, timeout_us: int, deadline: float | None
    ) -> Arrays:
        try:
            served = step.lookup(self._lookup)
        except ShipyardError as exc:
            raise UnavailableError(f"model {self.name!r}, {step.where}: {exc.message}") from exc
        feed = {model_input: tensors[source] for model_input, source in step.config.input_map}
        wanted = [model_output for model_output, _ in step.config.output_map]
        results = await run_version(served, feed, wanted, timeout_us, deadline)
        return {target: results[model_output] for model_output, target in step.config.output_map}

    async def drain(self, timeout_s: float) -> bool:
        """Refuse new requests; wait up to ``timeout_s`` for those running."""
        self._closed = True
        if not self._running:
            return True
        self._idle = asyncio.Event()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    def close(self) -> None:
        """Refuse new requests (the step models belong to themselves)."""
        self._closed = True


def build_ensemble(
    config: ModelConfig, version: int, lookup: Lookup
) -> tuple[ModelConfig, tuple[TensorSpec, ...], tuple[TensorSpec, ...], EnsembleRunner, ModelStats]:
    """Check the wiring of ``config``'s steps against the loaded step models.

    Returns the resolved config (``max_batch_size`` filled in), the ensemble's inputs and
    outputs, its runner and its statistics. Raises ConfigError naming the step at fault.
    """
    steps = [_Step(s, f"step[{i}] (model {s.model!r})") for i, s in enumerate(config.steps)]
    produced: dict[str, TensorSpec] = {}
    consumed: dict[str, TensorSpec] = {}
    batch_sizes: list[int] = []
    producer: dict[str, int] = {}
    for i, step in enumerate(steps):
        try:
            served = step.lookup(lookup)
        except ShipyardError as exc:
            raise ConfigError(f"{step.where}: {exc.message}") from exc
        batch_sizes.append(served.max_batch_size)
        ins, outs = _client_signature(served)
        for model_input, tensor in step.config.input_map:
            spec = ins.get(model_input)
            if spec is None:
                raise ConfigError(
                    f"{step.where}: input_map names {model_input!r}, which is not an input of "
                    f"the model (it has {', '.join(ins)})"
                )
            seen = consumed.get(tensor)
            if seen is not None and seen.datatype is not spec.datatype:
                raise ConfigError(
                    f"{step.where}: tensor {tensor!r} feeds inputs of datatypes "
                    f"{seen.datatype.value} and {spec.datatype.value}"
                )
            consumed.setdefault(tensor, TensorSpec(tensor, spec.datatype, spec.shape))
        missing = sorted(set(ins) - {k for k, _ in step.config.input_map})
        if missing:
            raise ConfigError(f"{step.where}: input_map leaves input(s) {', '.join(missing)} unfed")
        for model_output, tensor in step.config.output_map:
            spec = outs.get(model_output)
            if spec is None:
                raise ConfigError(
                    f"{step.where}: output_map names {model_output!r}, which is not an output "
                    f"of the model (it has {', '.join(outs)})"
                )
            if tensor in produced:
                raise ConfigError(
                    f"{step.where}: tensor {tensor!r} is already produced by "
                    f"step[{producer[tensor]}]"
                )
            produced[tensor] = TensorSpec(tensor, spec.datatype, spec.shape)
            producer[tensor] = i
    for tensor, spec in consumed.items():
        made = produced.get(tensor)
        if made is not None and made.datatype is not spec.datatype:
            raise ConfigError(
                f"tensor {tensor!r}: step[{producer[tensor]}] produces {made.datatype.value} but "
                f"it feeds an input of {spec.datatype.value}"
            )
    inputs = _declared(
        "inputs", config.inputs, {t: s for t, s in consumed.items() if t not in produced}
    )
    outputs = _declared(
        "outputs",
        config.outputs,
        {t: s for t, s in produced.items() if t not in consumed},
        produced,
    )
    levels = _levels(steps, {s.name for s in inputs})
    max_batch = config.max_batch_size
    smallest = min(batch_sizes)
    if max_batch is None:
        max_batch = smallest
    elif max_batch > 0 and max_batch > smallest:
        raise ConfigError(
            f"max_batch_size = {max_batch} is larger than a step model's ({smallest}); every "
            "step must take the ensemble's whole batch"
        )
    resolved = ModelConfig(
        name=config.name,
        backend="ensemble",
        max_batch_size=max_batch,
        dynamic_batching=None,
        version_policy=config.version_policy,
        inputs=inputs,
        outputs=outputs,
        execution_timeout_s=config.execution_timeout_s,
        steps=config.steps,
    )
    stats = ModelStats(config.name, str(version))
    runner = EnsembleRunner(config.name, levels, lookup, stats, max_batch > 0)
    return resolved, inputs, outputs, runner, stats


def _declared(
    kind: str,
    declared: tuple[TensorSpec, ...],
    inferred: dict[str, TensorSpec],
    available: dict[str, TensorSpec] | None = None,
) -> tuple[TensorSpec, ...]:
    """The ensemble's inputs or outputs: model.toml's if it declares them, else ``inferred``."""
    if not declared:
        if not inferred:
            raise ConfigError(f"the ensemble has no {kind}: check the steps' tensor names")
        return tuple(inferred.values())
    pool = available if available is not None else inferred
    for spec in declared:
        found = pool.get(spec.name)
        if found is None:
            raise ConfigError(
                f"model.toml {kind}: {spec.name!r} is not an ensemble {kind[:-1]} "
                f"(those are {', '.join(pool) or 'none'})"
            )
        if found.datatype is not spec.datatype:
            raise ConfigError(
                f"model.toml {kind}: {spec.name!r} is {found.datatype.value} in the steps, "
                f"not {spec.datatype.value}"
            )
    if available is None and set(inferred) - {s.name for s in declared}:
        unfed = sorted(set(inferred) - {s.name for s in declared})
        raise ConfigError(f"model.toml inputs: the steps also need {', '.join(unfed)}")
    return declared


def _levels(steps: list[_Step], inputs: set[str]) -> list[list[_Step]]:
    """Group steps so that each runs after the steps that produce its inputs."""
    have = set(inputs)
    left = list(steps)
    levels: list[list[_Step]] = []
    while left:
        ready = [s for s in left if all(t in have for _, t in s.config.input_map)]
        if not ready:
            names = ", ".join(s.where for s in left)
            raise ConfigError(f"steps {names} wait on each other's outputs (a cycle)")
        levels.append(ready)
        left = [s for s in left if s not in ready]
        have.update(t for s in ready for _, t in s.config.output_map)
    return levels
