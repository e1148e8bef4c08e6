"""The contract of a model written in Python: :class:`PythonModel` and its :class:`ModelContext`.

A version folder that holds ``model.py`` (or whose model.toml says ``backend = "python"``)
defines a subclass named ``Model``::

    import numpy as np
    import shipyard

    class Model(shipyard.PythonModel):
        def load(self, context: shipyard.ModelContext) -> None:
            self.scale = float(context.settings.get("scale", 2.0))

        def predict(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            return {"OUTPUT0": batch["INPUT0"] * self.scale}

Shipyard runs it in worker processes (``[python] workers`` per model version), never in the
server's own process: ``load`` once per worker, ``predict`` once per batch. The batch holds the
inputs declared in model.toml's ``[[inputs]]``, stacked along dim 0 when the model batches, and
``predict`` returns every output declared in ``[[outputs]]`` with the same dim 0 (Shipyard
splits it back per request). See docs/python-models.md.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy.typing as npt

from shipyard.types import TensorSpec

__all__ = ["ModelContext", "PythonModel"]


@dataclass(frozen=True, slots=True)
class ModelContext:
    """What :meth:`PythonModel.load` is told about the model it serves."""

    #: The model's name in the repository.
    name: str
    #: The version being loaded.
    version: int
    #: ``<repo>/<name>/<version>``: the files of this version (weights, tables, modules).
    version_dir: Path
    #: The inputs ``predict`` receives (full shapes, -1 for variable).
    inputs: tuple[TensorSpec, ...]
    #: The outputs ``predict`` returns.
    outputs: tuple[TensorSpec, ...]
    #: Largest batch ``predict`` receives (0: the model does not batch; no dim 0 is added).
    max_batch_size: int
    #: model.toml's ``[python.settings]`` table.
    settings: Mapping[str, Any] = field(default_factory=dict)
    #: Which worker of the pool this is (0, 1, ...).
    worker: int = 0


class PythonModel(abc.ABC):
    """Base class of a model written in Python; subclass it as ``Model`` in ``model.py``."""

    def load(self, context: ModelContext) -> None:  # noqa: B027 (optional hook, empty by default)
        """Prepare the model once per worker process (read files, build tables).

        An exception fails the model's load; its message is in the repository index and its
        traceback in the server log.
        """

    @abc.abstractmethod
    def predict(self, batch: dict[str, npt.NDArray[Any]]) -> Mapping[str, npt.NDArray[Any]]:
        """Compute the outputs of one batch: input name → array in, output name → array out.

        Arrays are NumPy arrays of the declared datatypes (BYTES: object arrays of ``bytes``).
        An exception fails the batch's requests with an error naming the model (500); the
        traceback goes to the server log, never to the client.
        """
