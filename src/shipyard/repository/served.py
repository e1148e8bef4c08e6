"""ServedVersion: one loaded, servable model version, and how a request runs through it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from shipyard.batching import Scheduler
from shipyard.batching.scheduler import Arrays
from shipyard.config import ModelConfig
from shipyard.processing import Pipeline
from shipyard.stats import ModelStats
from shipyard.types import TensorSpec

__all__ = ["ServedVersion", "run_version"]


@dataclass(slots=True)
class ServedVersion:
    """One loaded, servable model version."""

    name: str
    version: int
    config: ModelConfig
    platform: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    #: Runs the model's requests: its DynamicBatcher (an ensemble's step runner).
    batcher: Scheduler
    stats: ModelStats
    #: Pre- and post-processing around the model (``None``: the model has none).
    pipeline: Pipeline | None = None
    #: What loading it warned about (e.g. int8 weights chosen for another kind of CPU).
    warnings: tuple[str, ...] = ()
    #: The batchers of the model's Python pre- and post-processing steps.
    pre_steps: tuple[Scheduler, ...] = ()
    post_steps: tuple[Scheduler, ...] = ()

    @property
    def max_batch_size(self) -> int:
        """The resolved maximum batch size (0: no batching)."""
        return self.config.max_batch_size or 0

    @property
    def schedulers(self) -> tuple[Scheduler, ...]:
        """Everything that runs its requests, in the order a request passes through them."""
        return (*self.pre_steps, self.batcher, *self.post_steps)

    @property
    def ready(self) -> bool:
        """Whether requests can run (False while its last instance is being replaced)."""
        if not self.pre_steps and not self.post_steps:  # the common case, on every request
            return self.batcher.ready
        return all(s.ready for s in self.schedulers)

    @property
    def problem(self) -> str:
        """Why it is not ready, or ``""``."""
        return next((s.problem for s in self.schedulers if not s.ready), "")

    async def drain(self, timeout_s: float) -> bool:
        """Let its requests finish in pipeline order (each part gets ``timeout_s``)."""
        drained = True
        for scheduler in self.schedulers:
            drained = await scheduler.drain(timeout_s) and drained
        return drained

    def close(self) -> None:
        """Release everything that runs its requests."""
        for scheduler in self.schedulers:
            scheduler.close()


async def run_version(
    served: ServedVersion,
    inputs: Arrays,
    outputs: Sequence[str],
    timeout_us: int = 0,
    deadline: float | None = None,
) -> Arrays:
    """Run one request through ``served``'s pipeline and batcher (what an ensemble step does).

    ``inputs`` and ``outputs`` are the model's client-facing ones; the caller has checked
    them.
    """
    pipeline = served.pipeline
    if pipeline is None:
        return await served.batcher.submit(inputs, outputs, timeout_us, deadline)
    model_inputs = await pipeline.preprocess(inputs)
    wanted = list(outputs)
    needed = pipeline.model_outputs(wanted)
    raw = await served.batcher.submit(model_inputs, needed, timeout_us, deadline)
    return await pipeline.postprocess(raw, model_inputs, wanted)
