"""Scheduler: what the service needs of a served model version to run its requests.

:class:`~shipyard.batching.batcher.DynamicBatcher` is one (a model's own instances); an
ensemble's step runner (:mod:`shipyard.repository.ensemble`) is another (it runs each step
through that model's own batcher).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy.typing as npt

from shipyard.context import RequestContext

__all__ = ["Arrays", "Scheduler"]

Arrays = dict[str, npt.NDArray[Any]]


class Scheduler(Protocol):
    """Runs requests for one model version; drained and closed when the version goes."""

    @property
    def queued(self) -> int:
        """Requests waiting to run."""
        ...

    @property
    def busy(self) -> int:
        """Executions in progress."""
        ...

    @property
    def ready(self) -> bool:
        """Whether requests can run now."""
        ...

    @property
    def problem(self) -> str:
        """Why they cannot, or ``""``."""
        ...

    async def submit(
        self,
        inputs: Arrays,
        outputs: Sequence[str],
        timeout_us: int = 0,
        deadline: float | None = None,
        timing: RequestContext | None = None,
    ) -> Arrays:
        """Run one request; return its ``outputs``.

        ``timeout_us`` (0: the model's default) bounds its wait in a queue, and ``deadline``
        (a ``time.monotonic()`` value: when its caller stops waiting) too. ``timing`` gets
        when the request was queued, started running and came back.
        """
        ...

    async def drain(self, timeout_s: float) -> bool:
        """Refuse new requests; wait up to ``timeout_s`` for the others (True: all done)."""
        ...

    def close(self) -> None:
        """Fail what is left and release the resources."""
        ...
