"""Python steps around a model: ``[[preprocess]]`` / ``[[postprocess]]`` with ``kind = "python"``.

A Python pre-processing step takes client inputs it declares and returns model inputs (its
``targets``); a Python post-processing step takes model tensors (its ``sources``: outputs, or
inputs such as the candidates a pre step chose) and returns client outputs it declares.

:func:`python_step_specs` checks them against the model's signature when it loads. The code
itself never runs here: each step runs in worker processes behind a batcher of its own (the
repository wires a :class:`StepRunner` to each), so requests batch through the step as they
do through the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy.typing as npt

from shipyard.config import ModelConfig
from shipyard.errors import ConfigError
from shipyard.types import TensorSpec

__all__ = ["PythonStage", "PythonStepSpec", "StepRunner", "python_step_specs"]

Array = npt.NDArray[Any]


class StepRunner(Protocol):
    """Runs one Python step on a request's tensors (a batcher over the step's workers)."""

    async def submit(
        self,
        inputs: dict[str, Array],
        outputs: Sequence[str],
        timeout_us: int = 0,
        deadline: float | None = None,
    ) -> dict[str, Array]:
        """Run the step; return its ``outputs``."""
        ...


@dataclass(frozen=True, slots=True)
class PythonStepSpec:
    """A checked Python step: its function and the tensors it takes and gives."""

    #: For messages: ``preprocess[0] (recommend:candidates)``.
    where: str
    function: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


@dataclass(frozen=True, slots=True)
class PythonStage:
    """A Python step in a pipeline: what it takes and gives, and what runs it."""

    spec: PythonStepSpec
    runner: StepRunner

    @property
    def takes(self) -> tuple[str, ...]:
        """The names of the tensors the step takes."""
        return tuple(s.name for s in self.spec.inputs)

    @property
    def gives(self) -> tuple[str, ...]:
        """The names of the tensors the step returns."""
        return tuple(s.name for s in self.spec.outputs)


def python_step_specs(
    config: ModelConfig, inputs: tuple[TensorSpec, ...], outputs: tuple[TensorSpec, ...]
) -> tuple[list[PythonStepSpec], list[PythonStepSpec]]:
    """Check the model's Python steps against its signature; raise ConfigError naming one."""
    model_inputs = {s.name: s for s in inputs}
    model_tensors = {**model_inputs, **{s.name: s for s in outputs}}
    pre: list[PythonStepSpec] = []
    fed: dict[str, str] = {}
    for i, entry in enumerate(config.python_preprocess):
        where = f"preprocess[{i}] ({entry.function})"
        for target in entry.targets:
            if target not in model_inputs:
                raise ConfigError(
                    f"{where}: target {target!r} is not a model input "
                    f"(it has {', '.join(model_inputs)})"
                )
            if target in fed:
                raise ConfigError(
                    f"{where}: model input {target!r} is already fed by {fed[target]}"
                )
            fed[target] = where
        _unique(where, "inputs", entry.inputs)
        pre.append(
            PythonStepSpec(
                where,
                entry.function,
                entry.inputs,
                tuple(model_inputs[t] for t in entry.targets),
            )
        )
    post: list[PythonStepSpec] = []
    for i, post_entry in enumerate(config.python_postprocess):
        where = f"postprocess[{i}] ({post_entry.function})"
        for source in post_entry.sources:
            if source not in model_tensors:
                raise ConfigError(
                    f"{where}: source {source!r} is neither a model output nor a model input "
                    f"(it has {', '.join(model_tensors)})"
                )
        _unique(where, "outputs", post_entry.outputs)
        post.append(
            PythonStepSpec(
                where,
                post_entry.function,
                tuple(model_tensors[s] for s in post_entry.sources),
                post_entry.outputs,
            )
        )
    return pre, post


def _unique(where: str, what: str, specs: tuple[TensorSpec, ...]) -> None:
    if not specs:
        raise ConfigError(
            f"{where}: declare its {what} (an array of tables with name, datatype and shape)"
        )
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}: two {what} have the same name ({', '.join(names)})")
