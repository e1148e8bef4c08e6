"""execution_timeout_s and instance replacement in the batcher (InstancePool), in process."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from shipyard.backends.base import Backend
from shipyard.batching import Abortable, DynamicBatcher
from shipyard.config import DynamicBatchingConfig
from shipyard.errors import (
    DeadlineExceededError,
    InstanceFailedError,
    ModelLoadError,
    ModelNotReadyError,
)
from shipyard.stats import ModelStats
from shipyard.testing import wait_until
from tests.unit.test_batcher import FakeBackend, rows, run, submit


class AbortableBackend(FakeBackend):
    """A FakeBackend whose abort() opens its gate (as ONNX Runtime's terminate ends a run)."""

    def __init__(self) -> None:
        super().__init__()
        self.aborted = False

    def abort(self) -> None:
        """Remember the abort and let the blocked run return."""
        self.aborted = True
        self.gate.set()


def make(
    backends: list[FakeBackend], timeout_s: float, spare: list[FakeBackend] | None = None
) -> tuple[DynamicBatcher, ModelStats, list[int]]:
    """A batcher without dynamic batching whose replacements come from ``spare``."""
    stats = ModelStats("m", "1")
    made: list[int] = []
    pending = list(spare or [])

    def new_instance() -> Backend:
        made.append(1)
        if not pending:
            raise ModelLoadError("no more instances to load")
        return pending.pop(0)

    batcher = DynamicBatcher(
        "m",
        backends,
        4,
        DynamicBatchingConfig(max_queue_delay_us=0),
        stats,
        execution_timeout_s=timeout_s,
        new_instance=new_instance,
    )
    return batcher, stats, made


def test_abortable_is_the_backends_abort_hook() -> None:
    """A backend with abort() is Abortable; the plain fake is not."""
    assert isinstance(AbortableBackend(), Abortable)
    assert not isinstance(FakeBackend(), Abortable)


def test_overrun_fails_its_batch_and_replaces_the_instance() -> None:
    """A run past the timeout fails with DeadlineExceededError at the timeout (not when the
    run returns); the instance is aborted and a replacement serves the next request."""
    stuck, fresh = AbortableBackend(), AbortableBackend()
    batcher, stats, made = make([stuck], 0.05, [fresh])

    async def body() -> None:
        stuck.gate.clear()
        with pytest.raises(DeadlineExceededError, match="execution_timeout_s"):
            await batcher.submit(rows(1), ["y"])
        assert stuck.aborted
        await wait_until(lambda: batcher.instances.size == 1, "the replacement arrives")
        out = await batcher.submit(rows(2, 10), ["y"])
        np.testing.assert_array_equal(out["y"], rows(2, 10)["x"] * 2)
        assert len(fresh.calls) == 1
        assert made == [1]
        await wait_until(lambda: stuck.closed, "the aborted instance is closed")
        assert stats.fail.count == 1
        assert batcher.instances.retired_count == 1

    try:
        run(body())
    finally:
        batcher.close()


def test_other_instances_serve_while_one_overruns() -> None:
    """With two instances, a request runs on the free one while the other is stuck."""
    a, b = FakeBackend(), FakeBackend()
    batcher, _, _ = make([a, b], 5.0, [FakeBackend()])

    async def body() -> None:
        a.gate.clear()
        b.gate.clear()
        first = submit(batcher, rows(1))
        await wait_until(lambda: len(a.calls) + len(b.calls) == 1, "the stuck run starts")
        stuck, other = (a, b) if a.calls else (b, a)
        other.gate.set()
        out = await batcher.submit(rows(1, 7), ["y"])
        np.testing.assert_array_equal(out["y"], rows(1, 7)["x"] * 2)
        assert len(other.calls) == 1
        stuck.gate.set()
        await first

    try:
        run(body())
    finally:
        batcher.close()


def test_a_backend_without_abort_is_closed_only_when_its_run_returns() -> None:
    """The retired instance is never closed under a running call."""
    stuck = FakeBackend()
    batcher, _, _ = make([stuck], 0.05, [FakeBackend()])

    async def body() -> None:
        stuck.gate.clear()
        with pytest.raises(DeadlineExceededError):
            await batcher.submit(rows(1), ["y"])
        await wait_until(lambda: batcher.instances.size == 1, "the replacement arrives")
        assert not stuck.closed
        assert batcher.instances.stuck == 1
        stuck.gate.set()
        await wait_until(lambda: stuck.closed, "the late run returns and the instance closes")
        assert batcher.instances.stuck == 0

    try:
        run(body())
    finally:
        batcher.close()


def test_dead_instance_fails_its_batch_and_is_replaced() -> None:
    """InstanceFailedError (a worker died) fails the batch and the instance is replaced."""
    dead, fresh = FakeBackend(), FakeBackend()
    dead.error = InstanceFailedError("model 'm': its worker died")
    batcher, _, made = make([dead], 0.0, [fresh])

    async def body() -> None:
        with pytest.raises(InstanceFailedError, match="worker died"):
            await batcher.submit(rows(1), ["y"])
        await wait_until(lambda: batcher.ready, "the replacement arrives")
        await batcher.submit(rows(1), ["y"])
        assert len(fresh.calls) == 1
        assert dead.closed
        assert made == [1]

    try:
        run(body())
    finally:
        batcher.close()


def test_queued_requests_wait_for_the_replacement() -> None:
    """Requests queued behind a dying instance run on its replacement, not failed."""
    dead, fresh = FakeBackend(), FakeBackend()
    dead.error = InstanceFailedError("model 'm': its worker died")
    batcher, _, _ = make([dead], 0.0, [fresh])

    async def body() -> None:
        dead.gate.clear()
        first = submit(batcher, rows(1))
        await wait_until(lambda: len(dead.calls) == 1, "the doomed run starts")
        queued = submit(batcher, rows(1, 3))
        await asyncio.sleep(0)
        dead.gate.set()
        with pytest.raises(InstanceFailedError):
            await first
        out = await queued
        np.testing.assert_array_equal(out["y"], rows(1, 3)["x"] * 2)

    try:
        run(body())
    finally:
        batcher.close()


def test_failed_replacement_leaves_the_model_not_ready() -> None:
    """When no replacement can be loaded, queued and new requests fail with a reason."""
    dead = FakeBackend()
    dead.error = InstanceFailedError("model 'm': its worker died")
    batcher, _, made = make([dead], 0.0, [])

    async def body() -> None:
        dead.gate.clear()
        first = submit(batcher, rows(1))
        await wait_until(lambda: len(dead.calls) == 1, "the doomed run starts")
        queued = submit(batcher, rows(1))
        await asyncio.sleep(0)
        dead.gate.set()
        with pytest.raises(InstanceFailedError):
            await first
        with pytest.raises(ModelNotReadyError, match="no more instances to load"):
            await queued
        assert not batcher.ready
        assert "replacement failed to load" in batcher.problem
        with pytest.raises(ModelNotReadyError, match="no working instance"):
            await batcher.submit(rows(1), ["y"])
        assert made == [1]

    try:
        run(body())
    finally:
        batcher.close()
