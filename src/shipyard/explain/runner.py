"""Run perturbed inputs through a served model's own batcher and score what comes back.

Perturbations go to :meth:`~shipyard.batching.batcher.DynamicBatcher.submit` in chunks of the
model's ``max_batch_size`` rows (one row each for a model without batching), a few chunks in
flight at once, so an explanation of P perturbations costs about P / max_batch_size executions
and never holds more than a few chunks in memory. Each row's output is turned into a score
vector by the output's post-processing up to its class decision (probabilities, an embedding;
:meth:`~shipyard.processing.outputs.OutputChain.scores`), or taken as it is without one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TypeVar

import numpy as np

from shipyard.repository.registry import ServedVersion
from shipyard.types import Array

__all__ = ["ModelRunner", "map_chunks"]


_T = TypeVar("_T")
_R = TypeVar("_R")


async def map_chunks(
    chunks: Iterable[_T], run: Callable[[_T], Awaitable[_R]], in_flight: int
) -> list[_R]:
    """``run`` every chunk, at most ``in_flight`` at once; results in order.

    Chunks are drawn from ``chunks`` only when a slot is free, so a lazy iterable is never
    materialized. The first failure cancels the chunks still running and is raised.
    """
    slots = asyncio.Semaphore(max(1, in_flight))
    tasks: list[asyncio.Task[_R]] = []
    try:
        for chunk in chunks:
            await slots.acquire()
            task = asyncio.ensure_future(run(chunk))
            task.add_done_callback(lambda _: slots.release())
            tasks.append(task)
            if task.done() and task.exception() is not None:
                break
        return list(await asyncio.gather(*tasks))
    finally:
        for task in tasks:
            task.cancel()


class ModelRunner:
    """Score batches of model inputs for one output of a served version."""

    def __init__(self, served: ServedVersion, output: str) -> None:
        self.served = served
        self.output = output
        self.batching = served.max_batch_size > 0
        #: Rows per submitted chunk.
        self.chunk_rows = served.max_batch_size if self.batching else 1
        #: Chunks in flight at once: enough to keep every instance busy.
        self.in_flight = 2 * max(1, served.config.instance_count)
        #: Requests submitted to the batcher so far (each at most ``chunk_rows`` rows).
        self.batches = 0
        self._chain = served.pipeline.post.get(output) if served.pipeline is not None else None

    @property
    def kind(self) -> str:
        """What the output is: ``classifier``, ``embedding`` or ``raw``."""
        return self._chain.kind if self._chain is not None else "raw"

    @property
    def labels(self) -> tuple[str, ...] | None:
        """The output's class labels, when its post-processing has a labels file."""
        return self._chain.labels if self._chain is not None else None

    async def scores(self, inputs: Mapping[str, Array]) -> Array:
        """Score vectors ``[rows, n]`` (float64) for model ``inputs`` with a leading row axis.

        A model without batching gets each row alone, without that axis.
        """
        rows = int(next(iter(inputs.values())).shape[0])
        if self.batching:
            self.batches += 1
            raw = (await self.served.batcher.submit(dict(inputs), [self.output]))[self.output]
        else:
            parts = []
            for row in range(rows):
                self.batches += 1
                single = {name: array[row] for name, array in inputs.items()}
                result = await self.served.batcher.submit(single, [self.output])
                parts.append(np.asarray(result[self.output])[None])
            raw = np.concatenate(parts)
        if self._chain is not None:
            model_inputs = dict(inputs)
            raw = self._chain.scores(raw, model_inputs)
        return np.asarray(raw, dtype=np.float64).reshape(rows, -1)
