"""Large JSON decodes in worker processes, so that one body cannot stall the event loop.

Parsing JSON holds the GIL for the whole call: a 60 MiB body of nested lists took 28 s during
which no other request, health check included, was answered, and a thread would not help (it
holds the same GIL). So the transport decodes a JSON document on the loop only up to
``decode_inline_bytes``; a larger one goes to a worker process of this pool, with the garbage
collector off while it parses (JSON makes no reference cycles, and collecting millions of
fresh lists is most of the time a nested body takes). The loop only copies the body out and
the decoded arrays back. Workers start on the first large body (spawned: the server has
threads), and a worker that dies (out of memory) is replaced.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from shipyard.errors import InternalError

__all__ = ["DecodePool"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")


def _without_gc(function: Callable[..., _T], *args: Any) -> _T:
    """Run ``function(*args)`` with the garbage collector off (in a worker process)."""
    gc.disable()
    try:
        return function(*args)
    finally:
        gc.enable()


class DecodePool:
    """Worker processes for the decodes too large to run on the event loop."""

    def __init__(self, workers: int, inline_bytes: int) -> None:
        #: Worker processes (0: decode everything on the loop, as before this pool existed).
        self.workers = workers
        #: JSON documents up to this size are decoded on the loop.
        self.inline_bytes = inline_bytes
        self._executor: ProcessPoolExecutor | None = None

    def offload(self, size: int) -> bool:
        """Whether a JSON document of ``size`` bytes is decoded by a worker."""
        return self.workers > 0 and size > self.inline_bytes

    async def run(self, function: Callable[..., _T], *args: Any) -> _T:
        """Run ``function(*args)`` in a worker process and return (or raise) what it did.

        ``function`` and its arguments must pickle (a module-level function, bytes, core
        types). A worker that dies on it is replaced and the call raises InternalError.
        """
        executor = self._executor
        if executor is None:
            context = multiprocessing.get_context("spawn")
            executor = self._executor = ProcessPoolExecutor(self.workers, mp_context=context)
        try:
            return await asyncio.wrap_future(executor.submit(_without_gc, function, *args))
        except BrokenProcessPool as exc:
            log.error("a decode worker process died (out of memory?); starting a new one")
            if self._executor is executor:
                self._executor = None
                executor.shutdown(wait=False, cancel_futures=True)
            raise InternalError(
                "decoding the request body failed: its worker process died; see the server log"
            ) from exc

    def close(self) -> None:
        """Stop the worker processes (at server stop); pending decodes are cancelled."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
