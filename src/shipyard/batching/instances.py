"""InstancePool: a model version's instances, their threads, the execution timeout and repair.

Each instance runs one batch at a time on a thread of its own. With ``execution_timeout_s`` set,
a batch that runs longer is given up on: the batcher fails its requests (DEADLINE_EXCEEDED)
and the pool **retires** the instance, asks it to stop (:class:`Abortable`: ONNX Runtime ends
the run, a Python worker is killed) and loads a **replacement** off the event loop with the
``new_instance`` factory, while the other instances keep serving. An instance whose run raised
:class:`~shipyard.errors.InstanceFailedError` (its worker process died) is retired the same way.

A retired instance is closed once its stuck run returns (at once if it was not running), so a
backend is never closed under a running call. While no instance works, the pool is not
:attr:`~InstancePool.ready`; if a replacement cannot be loaded, :attr:`~InstancePool.problem`
says why. Everything here runs on the event loop thread, except the loading of a replacement,
which has a thread of its own (a slow ``load()`` never holds up the server's shutdown).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, runtime_checkable

from shipyard.backends.base import Backend

__all__ = ["Abortable", "InstancePool", "NewInstance", "Slot"]

log = logging.getLogger(__name__)

T = TypeVar("T")
#: Loads one more instance of the model version (blocking; run in a thread).
NewInstance = Callable[[], Backend]


@runtime_checkable
class Abortable(Protocol):
    """A backend that can stop a run in progress (called from the event loop thread)."""

    def abort(self) -> None:
        """Make the running ``run`` return (or raise) as soon as possible."""
        ...


@dataclass(eq=False, slots=True)
class Slot:
    """One instance and the thread that runs its batches."""

    backend: Backend
    executor: ThreadPoolExecutor
    running: bool = False
    retired: bool = False
    #: Fires ``execution_timeout_s`` after the current run started.
    timer: asyncio.TimerHandle | None = field(default=None, repr=False)


class InstancePool:
    """Which instances are free, which run, which are being replaced."""

    def __init__(
        self,
        model: str,
        instances: Sequence[Backend],
        execution_timeout_s: float = 0.0,
        new_instance: NewInstance | None = None,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.model = model
        self.execution_timeout_s = execution_timeout_s
        self._new_instance = new_instance
        self._on_change = on_change or (lambda: None)
        self._slots = [self._slot(b) for b in instances]
        self._wanted = len(self._slots)
        self.free = list(self._slots)
        #: Retired instances still running a batch (closed when it returns).
        self._stuck: list[Slot] = []
        #: Replacements being loaded (each in a thread of its own).
        self._replacing = 0
        self._closed = False
        #: Why the pool is short of instances ("" when all is well).
        self.problem = ""
        #: Instances retired (and replaced) since the start.
        self.retired_count = 0

    def _slot(self, backend: Backend) -> Slot:
        # One thread per instance, started lazily on the first run: a stuck run holds only
        # its own instance's thread, never a replacement's.
        return Slot(backend, ThreadPoolExecutor(1, thread_name_prefix=f"shipyard-{self.model}"))

    @property
    def size(self) -> int:
        """Working instances (retired ones not counted)."""
        return len(self._slots)

    @property
    def busy(self) -> int:
        """Working instances running a batch."""
        return len(self._slots) - len(self.free)

    @property
    def stuck(self) -> int:
        """Retired instances whose run has not returned yet."""
        return len(self._stuck)

    @property
    def replacing(self) -> int:
        """Replacements being loaded."""
        return self._replacing

    @property
    def ready(self) -> bool:
        """Whether at least one instance works."""
        return bool(self._slots)

    def run(
        self, slot: Slot, function: Callable[..., T], *args: Any, on_timeout: Callable[[], None]
    ) -> asyncio.Future[T]:
        """Run ``function(*args)`` on ``slot``'s thread; ``on_timeout`` fires if it overruns."""
        loop = asyncio.get_running_loop()
        slot.running = True
        if self.execution_timeout_s > 0:
            slot.timer = loop.call_later(self.execution_timeout_s, on_timeout)
        return loop.run_in_executor(slot.executor, function, *args)

    def end(self, slot: Slot) -> bool:
        """Record that ``slot``'s run returned; False if it was retired meanwhile (now closed).

        The results of a retired slot's run are dropped: its requests failed already.
        """
        slot.running = False
        if slot.timer is not None:
            slot.timer.cancel()
            slot.timer = None
        if slot.retired:
            if slot in self._stuck:
                self._stuck.remove(slot)
            self._release(slot)
            return False
        return True

    def give_back(self, slot: Slot) -> None:
        """Make ``slot`` free for the next batch."""
        self.free.append(slot)

    def retire(self, slot: Slot, reason: str) -> None:
        """Stop using ``slot`` (its run overran or its worker died) and load a replacement."""
        if slot.retired:
            return
        slot.retired = True
        self.retired_count += 1
        if slot.timer is not None:
            slot.timer.cancel()
            slot.timer = None
        self._slots.remove(slot)
        if slot in self.free:
            self.free.remove(slot)
        log.warning("model %s: replacing an instance: %s", self.model, reason)
        if slot.running:
            self._stuck.append(slot)
            if isinstance(slot.backend, Abortable):
                try:
                    slot.backend.abort()
                except Exception:
                    log.exception("model %s: aborting the instance failed", self.model)
        else:
            self._release(slot)
        if self._new_instance is None or self._closed:
            self.problem = f"{reason}; no replacement can be loaded"
            return
        self.problem = f"{reason}; a replacement is loading"
        self._replacing += 1
        loop = asyncio.get_running_loop()
        # A thread of its own, not the loop's executor: a replacement that takes long (a slow
        # load()) must not hold up the server's shutdown, which waits for that executor.
        threading.Thread(
            target=self._load_replacement,
            args=(loop, reason),
            name=f"shipyard-replace-{self.model}",
            daemon=True,
        ).start()

    def _load_replacement(self, loop: asyncio.AbstractEventLoop, reason: str) -> None:
        """Replacement thread: load an instance, hand it (or the failure) to the loop."""
        assert self._new_instance is not None
        try:
            backend: Backend | None = self._new_instance()
            failure: BaseException | None = None
        except Exception as exc:
            backend, failure = None, exc
        try:
            loop.call_soon_threadsafe(self._replaced, backend, failure, reason)
        except RuntimeError:  # the loop is closed: the server is gone
            if backend is not None:
                backend.close()

    def _replaced(
        self, backend: Backend | None, failure: BaseException | None, reason: str
    ) -> None:
        """On the loop: put the replacement to work, or record why there is none."""
        self._replacing -= 1
        if self._closed:
            if backend is not None:
                backend.close()
            return
        if backend is None:
            message = getattr(failure, "message", None) or f"{type(failure).__name__}: {failure}"
            log.error("model %s: the replacement instance failed to load: %s", self.model, message)
            self.problem = f"{reason}; the replacement failed to load: {message}"
        else:
            slot = self._slot(backend)
            self._slots.append(slot)
            self.free.append(slot)
            log.info("model %s: replacement instance ready", self.model)
            if len(self._slots) >= self._wanted:
                self.problem = ""
        self._on_change()

    def _release(self, slot: Slot) -> None:
        slot.executor.shutdown(wait=False)
        try:
            slot.backend.close()
        except Exception:
            log.exception("model %s: closing an instance failed", self.model)

    def close(self) -> None:
        """Release every instance; stuck runs are aborted, replacements closed on arrival."""
        self._closed = True  # a replacement still loading is closed when it arrives
        for slot in self._stuck:
            if isinstance(slot.backend, Abortable):
                slot.backend.abort()
        for slot in [*self._slots, *self._stuck]:
            self._release(slot)
        self._slots, self.free, self._stuck = [], [], []
