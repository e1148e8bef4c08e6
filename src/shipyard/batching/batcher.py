"""DynamicBatcher: merge concurrent requests along dim 0 and run them on free model instances.

No polling: the batcher acts when a request arrives, when an execution finishes, or when a
``max_queue_delay`` timer fires. A request that finds an idle instance runs at once; requests
that arrive while every instance is busy queue up and run together as the next batch. All
bookkeeping happens on the event loop thread; only the model runs in worker threads.

The instances themselves (their threads, ``execution_timeout_s``, replacing one that overran
or died) are :class:`~shipyard.batching.instances.InstancePool`'s.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from shipyard.backends.base import Backend
from shipyard.batching.instances import InstancePool, NewInstance, Slot
from shipyard.config import DynamicBatchingConfig
from shipyard.context import RequestContext
from shipyard.errors import (
    DeadlineExceededError,
    InstanceFailedError,
    InternalError,
    InvalidInputError,
    ModelNotReadyError,
    OverloadedError,
    ShipyardError,
)
from shipyard.stats import ModelStats
from shipyard.types import Array

__all__ = ["DynamicBatcher", "queue_timeout_us"]

log = logging.getLogger(__name__)

Arrays = dict[str, Array]


#: What requests must share to run in one batch: per input, its name, its shape past the
#: batch dimension and its dtype.
_BatchKey = tuple[tuple[str, tuple[int, ...], str], ...]


@dataclass(slots=True, eq=False)
class _Pending:
    inputs: Arrays
    outputs: tuple[str, ...]
    rows: int
    #: None: the model does not batch.
    key: _BatchKey | None
    future: asyncio.Future[Arrays]
    enqueued_ns: int
    expiry: asyncio.TimerHandle | None = None
    started: bool = False
    #: Run alone: its batch failed on bad input and each member is retried by itself.
    solo: bool = False
    #: When its execution started and came back (``perf_counter_ns``; 0: not yet).
    started_ns: int = 0
    finished_ns: int = 0


@dataclass(slots=True)
class _Execution:
    results: list[Arrays] = field(default_factory=list)
    input_ns: int = 0
    infer_ns: int = 0
    output_ns: int = 0


class DynamicBatcher:
    """Queue and run requests for one model version on its instances."""

    def __init__(
        self,
        model: str,
        instances: Sequence[Backend],
        max_batch_size: int,
        batching: DynamicBatchingConfig | None,
        stats: ModelStats,
        *,
        execution_timeout_s: float = 0.0,
        new_instance: NewInstance | None = None,
    ) -> None:
        """``execution_timeout_s`` > 0 bounds one execution (past it the batch's requests fail
        with DeadlineExceededError and the instance is replaced by ``new_instance()``)."""
        self.model = model
        self.max_batch_size = max_batch_size
        self._batching = batching if max_batch_size > 0 else None
        self._config = batching or DynamicBatchingConfig()
        # Threads start lazily on the first submit, never here.
        self._pool = InstancePool(
            model, instances, execution_timeout_s, new_instance, on_change=self._dispatch
        )
        self._stats = stats
        self._queue: deque[_Pending] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False
        self._idle: asyncio.Event | None = None

    @property
    def queued(self) -> int:
        """Requests waiting for an instance."""
        return len(self._queue)

    @property
    def busy(self) -> int:
        """Executions in progress."""
        return self._pool.busy

    @property
    def ready(self) -> bool:
        """Whether an instance can run requests (False while the last one is replaced)."""
        return self._pool.ready

    @property
    def problem(self) -> str:
        """Why instances are missing, or ``""``."""
        return self._pool.problem

    @property
    def instances(self) -> InstancePool:
        """The instances and their state (replacements, timeouts)."""
        return self._pool

    async def submit(
        self,
        inputs: Arrays,
        outputs: Sequence[str],
        timeout_us: int = 0,
        deadline: float | None = None,
        timing: RequestContext | None = None,
    ) -> Arrays:
        """Queue one request (all inputs share dim 0 when batching) and await its outputs.

        ``timeout_us`` > 0 drops the request with DeadlineExceededError if it has not
        started running by then; 0 falls back to the model's ``default_timeout_us``.
        ``deadline`` (a ``time.monotonic()`` value: when the caller stops waiting) drops it
        then at the latest, whichever of the two comes first. ``timing`` gets the times the
        request was queued, started and came back.
        """
        if self._closed:
            raise ModelNotReadyError(f"model {self.model!r} is unloading; retry shortly")
        if not self._pool.ready and not self._pool.replacing:
            raise self._broken()
        if len(self._queue) >= self._config.max_queue_size:
            # Requests whose clients went away stay queued until dispatched: do not count them.
            self._queue = deque(p for p in self._queue if not p.future.done())
        if len(self._queue) >= self._config.max_queue_size:
            self._stats.fail.add(0)
            raise OverloadedError(
                f"model {self.model!r}: queue full ({self._config.max_queue_size} requests "
                "waiting); retry later or raise dynamic_batching.max_queue_size"
            )
        loop = asyncio.get_running_loop()
        rows = 1
        key: _BatchKey | None = None
        if self.max_batch_size > 0:
            rows = int(next(iter(inputs.values())).shape[0])
            if rows > self.max_batch_size:  # it could never be taken off the queue
                raise InvalidInputError(
                    f"model {self.model!r}: batch size {rows} is over max_batch_size "
                    f"{self.max_batch_size}"
                )
        if self._batching is not None:
            key = tuple((name, a.shape[1:], a.dtype.str) for name, a in inputs.items())
        pending = _Pending(
            inputs, tuple(outputs), rows, key, loop.create_future(), time.perf_counter_ns()
        )
        timeout_us = queue_timeout_us(
            timeout_us or self._config.default_timeout_us,
            None if deadline is None else deadline - time.monotonic(),
        )
        if timeout_us > 0:
            pending.expiry = loop.call_later(timeout_us / 1e6, self._expire, pending)
        self._queue.append(pending)
        self._dispatch()
        results = await pending.future
        if timing is not None:
            timing.enqueued_at = pending.enqueued_ns
            timing.started_at = pending.started_ns
            timing.finished_at = pending.finished_ns
        return results

    def _expire(self, pending: _Pending) -> None:
        if pending.started or pending.future.done():
            return
        try:
            self._queue.remove(pending)
        except ValueError:
            return
        self._fail(
            pending,
            DeadlineExceededError(
                f"model {self.model!r}: request timed out after waiting "
                f"{(time.perf_counter_ns() - pending.enqueued_ns) / 1e6:.1f} ms in the queue"
            ),
        )
        self._notify_idle()

    def _fail(self, pending: _Pending, error: BaseException) -> None:
        self._stats.fail.add(time.perf_counter_ns() - pending.enqueued_ns)
        if not pending.future.done():
            pending.future.set_exception(error)

    def _broken(self) -> ModelNotReadyError:
        return ModelNotReadyError(
            f"model {self.model!r} has no working instance ({self._pool.problem}); "
            "load the model again"
        )

    def _dispatch(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        free = self._pool.free
        while free and self._queue:
            batch = self._take_batch()
            if batch is None:
                return
            if batch:
                self._start(batch, free.pop())
        if self._queue and not self._pool.ready and not self._pool.replacing:
            error = self._broken()  # the last instance is gone for good
            while self._queue:
                self._fail(self._queue.popleft(), error)
        self._notify_idle()  # the queue may have held only cancelled requests

    def _take_batch(self) -> list[_Pending] | None:
        """Take the next batch off the queue; None means wait for the delay timer."""
        queue = self._queue
        while queue and queue[0].future.done():  # cancelled by a client that went away
            queue.popleft()
        if not queue:
            return []
        if self._batching is None or queue[0].solo:
            return [queue.popleft()]
        first = queue[0]
        batch: list[_Pending] = []
        total = 0
        for item in queue:
            if item.key == first.key and not item.future.done() and not item.solo:
                if total + item.rows > self.max_batch_size:
                    break
                batch.append(item)
                total += item.rows
        preferred = self._batching.preferred_batch_sizes
        delay_ns = self._batching.max_queue_delay_us * 1000
        if delay_ns and total < self.max_batch_size and total not in preferred:
            wait_until_ns = first.enqueued_ns + delay_ns
            now_ns = time.perf_counter_ns()
            if wait_until_ns > now_ns:
                loop = asyncio.get_running_loop()
                self._timer = loop.call_later((wait_until_ns - now_ns) / 1e9, self._dispatch)
                return None
        if preferred and total not in preferred:
            running = 0
            best = 0
            for i, item in enumerate(batch):
                running += item.rows
                if running in preferred:
                    best = i + 1
            if best:
                batch = batch[:best]
        taken = set(map(id, batch))
        self._queue = deque(item for item in queue if id(item) not in taken)
        return batch

    def _start(self, batch: list[_Pending], slot: Slot) -> None:
        start_ns = time.perf_counter_ns()
        for item in batch:
            item.started = True
            item.started_ns = start_ns
            if item.expiry is not None:
                item.expiry.cancel()
            self._stats.queue.add(start_ns - item.enqueued_ns)
        future = self._pool.run(
            slot,
            self._execute,
            batch,
            slot.backend,
            on_timeout=lambda: self._overran(batch, slot),
        )
        future.add_done_callback(lambda f: self._finished(f, batch, slot))

    def _overran(self, batch: list[_Pending], slot: Slot) -> None:
        """The batch on ``slot`` passed ``execution_timeout_s``: fail it, replace the instance."""
        limit = self._pool.execution_timeout_s
        error = DeadlineExceededError(
            f"model {self.model!r}: the execution took longer than execution_timeout_s "
            f"({limit:g} s); the instance is being replaced"
        )
        for item in batch:
            self._fail(item, error)
        self._pool.retire(slot, f"an execution overran execution_timeout_s ({limit:g} s)")
        self._dispatch()

    def _execute(self, batch: list[_Pending], instance: Backend) -> _Execution:
        """Worker thread: stack the inputs, run the model, split the outputs."""
        run = _Execution()
        t0 = time.perf_counter_ns()
        if len(batch) == 1:
            inputs = batch[0].inputs
            wanted: Sequence[str] = batch[0].outputs
        else:
            inputs = {
                name: np.concatenate([item.inputs[name] for item in batch], axis=0)
                for name in batch[0].inputs
            }
            names: dict[str, None] = {}
            for item in batch:
                names.update(dict.fromkeys(item.outputs))
            wanted = list(names)
        t1 = time.perf_counter_ns()
        results = instance.run(inputs, wanted)
        t2 = time.perf_counter_ns()
        by_name = dict(zip(wanted, results, strict=True))
        if len(batch) == 1:
            run.results.append(by_name)
        else:
            total = sum(item.rows for item in batch)
            for name, array in by_name.items():
                if array.ndim == 0 or array.shape[0] != total:
                    raise InternalError(
                        f"model {self.model!r}: output {name!r} has shape {list(array.shape)}, "
                        f"expected dim 0 = {total} (the batch); set max_batch_size = 0 in "
                        "model.toml if the model has no batch dimension"
                    )
            offset = 0
            for item in batch:
                end = offset + item.rows
                run.results.append({n: by_name[n][offset:end] for n in item.outputs})
                offset = end
        run.input_ns, run.infer_ns, run.output_ns = t1 - t0, t2 - t1, time.perf_counter_ns() - t2
        return run

    def _finished(
        self, future: asyncio.Future[_Execution], batch: list[_Pending], slot: Slot
    ) -> None:
        error = future.exception()
        if not self._pool.end(slot):  # it overran: its requests have failed already
            self._dispatch()
            return
        if isinstance(error, InstanceFailedError):
            for item in batch:
                self._fail(item, error)
            self._pool.retire(slot, error.message)
            self._dispatch()
            return
        self._pool.give_back(slot)
        if isinstance(error, InvalidInputError) and len(batch) > 1:
            # One request's data (say, BYTES that are not UTF-8 for a text model) failed the
            # whole batch: run each member alone, first in line, so only the culprit fails.
            for item in reversed(batch):
                item.started, item.solo = False, True
                self._queue.appendleft(item)
            self._dispatch()
            return
        if error is not None:
            if not isinstance(error, ShipyardError):
                log.error(
                    "model %s failed on a batch of %d", self.model, len(batch), exc_info=error
                )
                error = InternalError(
                    f"model {self.model!r} failed ({type(error).__name__}); see the server log"
                )
            for item in batch:
                self._fail(item, error)
        else:
            run = future.result()
            rows = sum(item.rows for item in batch)
            self._stats.record_execution(
                rows, len(batch), run.input_ns, run.infer_ns, run.output_ns
            )
            now_ns = time.perf_counter_ns()
            for item, result in zip(batch, run.results, strict=True):
                item.finished_ns = now_ns
                self._stats.success.add(now_ns - item.enqueued_ns)
                if not item.future.done():
                    item.future.set_result(result)
        self._dispatch()
        self._notify_idle()

    def _notify_idle(self) -> None:
        if self._idle is not None and not self._queue and self.busy == 0:
            self._idle.set()

    async def drain(self, timeout_s: float) -> bool:
        """Refuse new requests, wait up to ``timeout_s`` for queued and running ones.

        Returns True if everything finished in time.
        """
        self._closed = True
        self._queue = deque(p for p in self._queue if not p.future.done())
        if not self._queue and self.busy == 0:
            return True
        self._idle = asyncio.Event()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    def close(self) -> None:
        """Fail whatever is still queued, stop the worker threads, release the instances."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        while self._queue:
            self._fail(
                self._queue.popleft(), ModelNotReadyError(f"model {self.model!r} was unloaded")
            )
        self._pool.close()


def queue_timeout_us(timeout_us: int, left_s: float | None) -> int:
    """Return how long a request may wait in the queue, in microseconds (0: no limit).

    ``timeout_us`` is its own or its model's timeout (0: none), ``left_s`` the seconds left
    before its caller's deadline (None: no deadline). The tighter of the two wins; a
    deadline already past still leaves 1 µs, so the request expires instead of running.
    """
    if left_s is None:
        return timeout_us
    left_us = max(1, int(left_s * 1e6))
    return left_us if timeout_us == 0 or left_us < timeout_us else timeout_us
