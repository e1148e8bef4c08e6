"""Tests for shipyard.batching.batcher.DynamicBatcher, with an in-process fake backend."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from shipyard.batching.batcher import DynamicBatcher, queue_timeout_us
from shipyard.config import DynamicBatchingConfig
from shipyard.errors import (
    DeadlineExceededError,
    InternalError,
    InvalidInputError,
    ModelNotReadyError,
    OverloadedError,
)
from shipyard.stats import ModelStats
from shipyard.testing import wait_until
from shipyard.types import DataType, TensorSpec

Arrays = dict[str, npt.NDArray[Any]]


class FakeBackend:
    """A Backend that computes y = 2x and z = x + 1, records calls and can be held or broken."""

    platform = "fake"
    inputs: tuple[TensorSpec, ...] = (TensorSpec("x", DataType.FP32, (-1, 2)),)
    outputs: tuple[TensorSpec, ...] = (
        TensorSpec("y", DataType.FP32, (-1, 2)),
        TensorSpec("z", DataType.FP32, (-1, 2)),
    )

    def __init__(self) -> None:
        self.calls: list[Arrays] = []
        self.wanted: list[list[str]] = []
        #: While clear, run() blocks (the model is "busy"); tests set it to let runs finish.
        self.gate = threading.Event()
        self.gate.set()
        self.error: BaseException | None = None
        self.truncate_outputs = False
        self.closed = False

    def run(
        self, inputs: Mapping[str, npt.NDArray[Any]], outputs: Sequence[str]
    ) -> list[npt.NDArray[Any]]:
        """Record the call, wait for the gate, then compute (or fail)."""
        self.calls.append({k: np.array(v) for k, v in inputs.items()})
        self.wanted.append(list(outputs))
        if not self.gate.wait(5):
            raise RuntimeError("test gate never opened")
        if self.error is not None:
            raise self.error
        x = inputs["x"]
        computed = {"y": x * 2, "z": x + 1}
        if self.truncate_outputs:
            computed = {k: v[:1] for k, v in computed.items()}
        return [computed[name] for name in outputs]

    def close(self) -> None:
        """Remember that the batcher released this instance."""
        self.closed = True

    @property
    def batch_rows(self) -> list[int]:
        """dim 0 of x in each execution, in order."""
        return [int(call["x"].shape[0]) for call in self.calls]


def rows(n: int, start: float = 0.0, width: int = 2) -> Arrays:
    """An input of ``n`` rows with distinct values."""
    x = np.arange(start, start + n * width, dtype=np.float32).reshape(n, width)
    return {"x": x}


def make(
    backend: FakeBackend | None = None,
    max_batch_size: int = 8,
    batching: DynamicBatchingConfig | None = None,
    instances: int = 1,
) -> tuple[DynamicBatcher, FakeBackend, ModelStats]:
    """A batcher over one fake backend (shared by ``instances`` slots)."""
    backend = backend or FakeBackend()
    stats = ModelStats("m", "1")
    batcher = DynamicBatcher(
        "m",
        [backend] * instances,
        max_batch_size,
        DynamicBatchingConfig() if batching is None else batching,
        stats,
    )
    return batcher, backend, stats


def run(coro: Coroutine[Any, Any, None]) -> None:
    """Run an async test body with a hard limit, so a hang fails instead of blocking."""

    async def guarded() -> None:
        await asyncio.wait_for(coro, 10)

    asyncio.run(guarded())


async def settle() -> None:
    """Let every ready task run until it blocks."""
    for _ in range(10):
        await asyncio.sleep(0)


def submit(
    batcher: DynamicBatcher, inputs: Arrays, outputs: Sequence[str] = ("y",), timeout_us: int = 0
) -> asyncio.Task[Arrays]:
    """Start a submit() as a task."""
    return asyncio.ensure_future(batcher.submit(inputs, outputs, timeout_us))


async def hold_first(batcher: DynamicBatcher, backend: FakeBackend) -> asyncio.Task[Arrays]:
    """Occupy the only instance with a 1-row request that blocks until the gate opens."""
    backend.gate.clear()
    first = submit(batcher, rows(1, 100))
    await wait_until(lambda: len(backend.calls) == 1, "the first request runs")
    return first


async def close_after(batcher: DynamicBatcher, body: Callable[[], Awaitable[None]]) -> None:
    """Run ``body`` then close the batcher whatever happened."""
    try:
        await body()
    finally:
        batcher.close()


# -- dispatch ----------------------------------------------------------------------------------


def test_lone_request_runs_at_once_as_batch_of_one() -> None:
    """An idle batcher runs a single request immediately, alone, and returns its outputs."""
    batcher, backend, _ = make()

    async def body() -> None:
        inputs = rows(1)
        out = await batcher.submit(inputs, ["y", "z"])
        assert backend.batch_rows == [1]
        np.testing.assert_array_equal(out["y"], inputs["x"] * 2)
        np.testing.assert_array_equal(out["z"], inputs["x"] + 1)

    run(close_after(batcher, body))


def test_requests_arriving_while_busy_run_together_next() -> None:
    """Requests queued during an execution are merged into one batch and split back."""
    batcher, backend, _ = make()

    async def body() -> None:
        first = await hold_first(batcher, backend)
        second, third = submit(batcher, rows(2, 0)), submit(batcher, rows(3, 10))
        await settle()
        assert batcher.queued == 2
        assert backend.batch_rows == [1]
        backend.gate.set()
        a, b, c = await asyncio.gather(first, second, third)
        assert backend.batch_rows == [1, 5]
        np.testing.assert_array_equal(b["y"], rows(2, 0)["x"] * 2)
        np.testing.assert_array_equal(c["y"], rows(3, 10)["x"] * 2)
        assert a["y"].shape == (1, 2)

    run(close_after(batcher, body))


def test_each_request_gets_only_its_requested_outputs() -> None:
    """In a merged batch the model runs the union of outputs; each caller gets its own."""
    batcher, backend, _ = make()

    async def body() -> None:
        first = await hold_first(batcher, backend)
        wants_y = submit(batcher, rows(1, 0), ["y"])
        wants_z = submit(batcher, rows(1, 5), ["z"])
        await settle()
        backend.gate.set()
        _, y, z = await asyncio.gather(first, wants_y, wants_z)
        assert sorted(backend.wanted[1]) == ["y", "z"]
        assert set(y) == {"y"}
        assert set(z) == {"z"}
        np.testing.assert_array_equal(z["z"], rows(1, 5)["x"] + 1)

    run(close_after(batcher, body))


@pytest.mark.parametrize(
    "other",
    [rows(1, width=3), {"x": np.zeros((1, 2), np.float64)}],
    ids=["different-shape", "different-dtype"],
)
def test_requests_with_different_non_batch_shapes_are_never_merged(other: Arrays) -> None:
    """Requests differing beyond dim 0 (shape or dtype) run in separate executions."""
    batcher, backend, _ = make()

    async def body() -> None:
        first = await hold_first(batcher, backend)
        same_a, different, same_b = (
            submit(batcher, rows(1)),
            submit(batcher, other),
            submit(batcher, rows(1)),
        )
        await settle()
        backend.gate.set()
        await asyncio.gather(first, same_a, different, same_b)
        widths = [(c["x"].shape, c["x"].dtype) for c in backend.calls]
        assert len(widths) == 3
        assert widths[1] == ((2, 2), np.dtype(np.float32))  # the two matching requests, together
        assert widths[2] == (other["x"].shape, other["x"].dtype)

    run(close_after(batcher, body))


def test_max_batch_size_is_respected() -> None:
    """A batch never exceeds max_batch_size rows; the rest waits for the next execution."""
    batcher, backend, _ = make(max_batch_size=4)

    async def body() -> None:
        first = await hold_first(batcher, backend)
        tasks = [submit(batcher, rows(2, i * 10)) for i in range(3)]
        await settle()
        backend.gate.set()
        results = await asyncio.gather(first, *tasks)
        assert backend.batch_rows == [1, 4, 2]
        for i, result in enumerate(results[1:]):
            np.testing.assert_array_equal(result["y"], rows(2, i * 10)["x"] * 2)

    run(close_after(batcher, body))


def test_request_larger_than_max_batch_size_is_refused() -> None:
    """A request with more rows than max_batch_size is refused instead of stalling the queue."""
    batcher, _, _ = make(max_batch_size=4)

    async def body() -> None:
        with pytest.raises(InvalidInputError, match="max_batch_size"):
            await batcher.submit(rows(5), ["y"])
        assert batcher.queued == 0

    run(close_after(batcher, body))


def test_preferred_batch_size_trims_the_batch() -> None:
    """Without a delay, a batch is cut to the largest prefix that is a preferred size."""
    batcher, backend, _ = make(batching=DynamicBatchingConfig(preferred_batch_sizes=(2,)))

    async def body() -> None:
        first = await hold_first(batcher, backend)
        tasks = [submit(batcher, rows(1, i)) for i in range(3)]
        await settle()
        backend.gate.set()
        await asyncio.gather(first, *tasks)
        assert backend.batch_rows == [1, 2, 1]

    run(close_after(batcher, body))


def test_preferred_batch_size_dispatches_without_waiting_for_the_delay() -> None:
    """Reaching a preferred size dispatches at once even with a long max_queue_delay."""
    config = DynamicBatchingConfig(max_queue_delay_us=5_000_000, preferred_batch_sizes=(2,))
    batcher, backend, _ = make(batching=config)

    async def body() -> None:
        started = time.monotonic()
        await asyncio.gather(batcher.submit(rows(1, 0), ["y"]), batcher.submit(rows(1, 5), ["y"]))
        assert time.monotonic() - started < 2.0
        assert backend.batch_rows == [2]

    run(close_after(batcher, body))


def test_max_batch_size_reached_dispatches_without_waiting() -> None:
    """A full batch does not wait for max_queue_delay."""
    batcher, backend, _ = make(
        max_batch_size=3, batching=DynamicBatchingConfig(max_queue_delay_us=5_000_000)
    )

    async def body() -> None:
        started = time.monotonic()
        await asyncio.gather(*(batcher.submit(rows(1, i), ["y"]) for i in range(3)))
        assert time.monotonic() - started < 2.0
        assert backend.batch_rows == [3]

    run(close_after(batcher, body))


def test_max_queue_delay_waits_then_dispatches() -> None:
    """A lone request waits max_queue_delay for company, then runs with what arrived."""
    batcher, backend, stats = make(batching=DynamicBatchingConfig(max_queue_delay_us=50_000))

    async def body() -> None:
        started = time.monotonic()
        first = submit(batcher, rows(1, 0))
        await wait_until(lambda: batcher.queued == 1, "the first request queues")
        await settle()
        assert backend.calls == []  # still waiting for the delay
        second = submit(batcher, rows(2, 10))
        await asyncio.gather(first, second)
        assert time.monotonic() - started >= 0.045
        assert backend.batch_rows == [3]
        assert stats.queue.count == 2

    run(close_after(batcher, body))


def test_no_batching_runs_requests_one_by_one() -> None:
    """With max_batch_size 0, queued requests are never merged."""
    batcher, backend, stats = make(max_batch_size=0)

    async def body() -> None:
        first = await hold_first(batcher, backend)
        tasks = [submit(batcher, rows(1, i)) for i in range(2)]
        await settle()
        backend.gate.set()
        await asyncio.gather(first, *tasks)
        assert backend.batch_rows == [1, 1, 1]
        assert stats.execution_count == 3

    run(close_after(batcher, body))


def test_dynamic_batching_off_counts_rows_but_never_merges() -> None:
    """max_batch_size > 0 with dynamic batching off: one request per run, rows still counted."""
    stats = ModelStats("m", "1")
    backend = FakeBackend()
    batcher = DynamicBatcher("m", [backend], 8, None, stats)

    async def body() -> None:
        first = await hold_first(batcher, backend)
        tasks = [submit(batcher, rows(3, i)) for i in range(2)]
        await settle()
        backend.gate.set()
        await asyncio.gather(first, *tasks)
        assert backend.batch_rows == [1, 3, 3]
        assert stats.inference_count == 7

    run(close_after(batcher, body))


def test_two_instances_run_concurrently() -> None:
    """With two instances a second request starts while the first is still running."""
    batcher, backend, _ = make(instances=2)

    async def body() -> None:
        backend.gate.clear()
        tasks = [submit(batcher, rows(1, i)) for i in range(2)]
        await wait_until(lambda: len(backend.calls) == 2, "the second batch runs")
        assert batcher.busy == 2
        backend.gate.set()
        await asyncio.gather(*tasks)
        assert batcher.busy == 0

    run(close_after(batcher, body))


# -- refusals, deadlines, cancellation ---------------------------------------------------------


def test_full_queue_refuses_at_once() -> None:
    """When max_queue_size requests wait, the next is refused with OverloadedError at once."""
    batcher, backend, stats = make(batching=DynamicBatchingConfig(max_queue_size=2))

    async def body() -> None:
        first = await hold_first(batcher, backend)
        waiting = [submit(batcher, rows(1)) for _ in range(2)]
        await settle()
        with pytest.raises(OverloadedError, match="queue full"):
            await batcher.submit(rows(1), ["y"])
        assert stats.fail.count == 1
        assert batcher.queued == 2
        backend.gate.set()
        await asyncio.gather(first, *waiting)

    run(close_after(batcher, body))


def test_timeout_expires_queued_requests_before_they_reach_the_model() -> None:
    """A queued request whose timeout passes fails with DeadlineExceededError and never runs."""
    batcher, backend, stats = make()

    async def body() -> None:
        first = await hold_first(batcher, backend)
        doomed = submit(batcher, rows(1, 50), timeout_us=20_000)
        patient = submit(batcher, rows(1, 60))
        with pytest.raises(DeadlineExceededError, match="timed out"):
            await doomed
        assert batcher.queued == 1
        backend.gate.set()
        await asyncio.gather(first, patient)
        assert backend.batch_rows == [1, 1]
        assert not any((call["x"] == 50).any() for call in backend.calls)
        assert stats.fail.count == 1

    run(close_after(batcher, body))


def test_default_timeout_applies_without_a_request_timeout() -> None:
    """default_timeout_us expires requests that did not send a timeout."""
    batcher, backend, _ = make(batching=DynamicBatchingConfig(default_timeout_us=20_000))

    async def body() -> None:
        first = await hold_first(batcher, backend)
        with pytest.raises(DeadlineExceededError):
            await batcher.submit(rows(1), ["y"])
        backend.gate.set()
        await first
        assert backend.batch_rows == [1]

    run(close_after(batcher, body))


def test_deadline_expires_a_queued_request() -> None:
    """A queued request whose caller's deadline passes is dropped, though it sent no timeout."""
    batcher, backend, stats = make()

    async def body() -> None:
        first = await hold_first(batcher, backend)
        deadline = time.monotonic() + 0.02
        with pytest.raises(DeadlineExceededError, match="timed out"):
            await batcher.submit(rows(1, 50), ["y"], deadline=deadline)
        backend.gate.set()
        await first
        assert backend.batch_rows == [1]
        assert stats.fail.count == 1

    run(close_after(batcher, body))


def test_a_later_deadline_keeps_the_default_timeout_of_an_unbatched_model() -> None:
    """A deadline 30 s away does not loosen default_timeout_us, with batching off too."""
    batching = DynamicBatchingConfig(default_timeout_us=20_000)
    batcher, backend, _ = make(max_batch_size=0, batching=batching)

    async def body() -> None:
        first = await hold_first(batcher, backend)
        started = time.monotonic()
        with pytest.raises(DeadlineExceededError):
            await batcher.submit(rows(1), ["y"], deadline=started + 30)
        assert time.monotonic() - started < 5  # the default fired, not the deadline
        backend.gate.set()
        await first

    run(close_after(batcher, body))


@pytest.mark.parametrize(
    ("timeout_us", "expected_us"),
    [
        (0, 199_000),  # no timeout: the deadline applies
        (500_000, 199_000),  # the deadline is tighter than the timeout
        (50_000, 50_000),  # the timeout is tighter
        (10_000, 10_000),  # a model default that is tighter is kept
    ],
)
def test_deadline_caps_the_queue_timeout(timeout_us: int, expected_us: int) -> None:
    """A deadline 199 ms away caps the queue timeout, never loosening a tighter one."""
    assert queue_timeout_us(timeout_us, 0.199) == expected_us
    assert queue_timeout_us(timeout_us, None) == timeout_us
    assert queue_timeout_us(timeout_us, -5.0) == 1  # already past: expire at once


def test_timeout_does_not_cancel_a_request_that_started() -> None:
    """A request that started running completes even if its timeout passes meanwhile."""
    batcher, backend, _ = make()

    async def body() -> None:
        backend.gate.clear()
        loop = asyncio.get_running_loop()
        expires = loop.time() + 0.01
        task = submit(batcher, rows(1), timeout_us=10_000)
        await wait_until(lambda: len(backend.calls) == 1, "the request runs")
        await wait_until(lambda: loop.time() > expires, "its timeout has passed")
        await settle()  # the expiry timer, due by now, has run
        backend.gate.set()
        assert (await task)["y"].shape == (1, 2)

    run(close_after(batcher, body))


def test_cancelled_waiter_is_skipped() -> None:
    """A queued request whose client went away is not sent to the model."""
    batcher, backend, _ = make()

    async def body() -> None:
        first = await hold_first(batcher, backend)
        gone = submit(batcher, rows(1, 70))
        kept = submit(batcher, rows(2, 80))
        await settle()
        gone.cancel()
        await settle()
        backend.gate.set()
        await asyncio.gather(first, kept)
        assert gone.cancelled()
        assert backend.batch_rows == [1, 2]
        assert not any((call["x"] == 70).any() for call in backend.calls)

    run(close_after(batcher, body))


# -- failures ----------------------------------------------------------------------------------


def test_model_exception_fails_every_request_in_the_batch(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A model exception: InternalError for each request, its text and traceback only logged."""
    batcher, backend, stats = make()

    async def body() -> None:
        first = await hold_first(batcher, backend)
        tasks = [submit(batcher, rows(1, i)) for i in range(2)]
        await settle()
        backend.error = RuntimeError("kaput")
        backend.gate.set()
        results = await asyncio.gather(first, *tasks, return_exceptions=True)
        for result in results:
            assert isinstance(result, InternalError)
            assert "(RuntimeError); see the server log" in result.message
            assert "kaput" not in result.message
            assert "model 'm'" in result.message
        assert stats.fail.count == 3
        assert stats.execution_count == 0
        records = [r for r in caplog.records if r.name == "shipyard.batching.batcher"]
        assert records  # one per failed execution, each with the exception and traceback
        for record in records:
            assert record.exc_info is not None
            assert "kaput" in str(record.exc_info[1])
        # the instance is free again: the next request runs normally
        backend.error = None
        assert (await batcher.submit(rows(1), ["y"]))["y"].shape == (1, 2)

    run(close_after(batcher, body))


def test_shipyard_errors_from_the_model_pass_through() -> None:
    """A ShipyardError raised by the backend reaches the caller unchanged."""
    batcher, backend, _ = make()
    backend.error = InvalidInputError("the model rejected the input")

    async def body() -> None:
        with pytest.raises(InvalidInputError, match="rejected"):
            await batcher.submit(rows(1), ["y"])

    run(close_after(batcher, body))


def test_output_with_wrong_dim0_is_an_internal_error() -> None:
    """If a merged batch's output does not have the batch's dim 0, every request fails."""
    batcher, backend, _ = make()

    async def body() -> None:
        first = await hold_first(batcher, backend)
        tasks = [submit(batcher, rows(1, i)) for i in range(2)]
        await settle()
        backend.truncate_outputs = True
        backend.gate.set()
        await first  # a lone request's output is passed through as is
        for task in tasks:
            with pytest.raises(InternalError, match=r"expected dim 0 = 2 \(the batch\)"):
                await task

    run(close_after(batcher, body))


# -- statistics --------------------------------------------------------------------------------


def test_stats_count_rows_and_executions() -> None:
    """inference_count counts rows, execution_count counts model runs, batch_stats by size."""
    batcher, backend, stats = make()

    async def body() -> None:
        first = await hold_first(batcher, backend)
        tasks = [submit(batcher, rows(2, 0)), submit(batcher, rows(3, 10))]
        await settle()
        backend.gate.set()
        await asyncio.gather(first, *tasks)
        assert stats.inference_count == 6
        assert stats.execution_count == 2
        assert stats.success.count == 3
        assert stats.compute_infer.count == 3
        assert stats.queue.count == 3
        assert stats.last_inference_ms > 0
        assert sorted(stats.batches) == [1, 5]
        assert all(b.compute_infer.count == 1 for b in stats.batches.values())

    run(close_after(batcher, body))


# -- drain and close ---------------------------------------------------------------------------


def test_drain_waits_for_in_flight_work_and_refuses_new() -> None:
    """drain() refuses new requests and returns True once running and queued work is done."""
    batcher, backend, _ = make()

    async def body() -> None:
        first = await hold_first(batcher, backend)
        queued = submit(batcher, rows(1))
        await settle()
        drain = asyncio.ensure_future(batcher.drain(5))
        await settle()
        assert not drain.done()
        with pytest.raises(ModelNotReadyError, match="unloading"):
            await batcher.submit(rows(1), ["y"])
        backend.gate.set()
        assert await drain is True
        assert first.done()
        assert queued.done()
        await asyncio.gather(first, queued)

    run(close_after(batcher, body))


def test_drain_of_an_idle_batcher_returns_at_once() -> None:
    """Nothing in flight: drain() is True immediately."""
    batcher, _, _ = make()

    async def body() -> None:
        assert await batcher.drain(0) is True

    run(close_after(batcher, body))


def test_drain_times_out() -> None:
    """drain() returns False when work is still running at the timeout."""
    batcher, backend, _ = make()

    async def body() -> None:
        first = await hold_first(batcher, backend)
        assert await batcher.drain(0.02) is False
        backend.gate.set()
        await first

    run(close_after(batcher, body))


def test_drain_is_not_held_up_by_a_cancelled_request() -> None:
    """A request cancelled while waiting for the batch delay does not stall drain()."""
    batcher, backend, _ = make(batching=DynamicBatchingConfig(max_queue_delay_us=20_000))

    async def body() -> None:
        waiting = submit(batcher, rows(1))
        await settle()
        waiting.cancel()
        await settle()
        assert await batcher.drain(2) is True
        assert backend.calls == []

    run(close_after(batcher, body))


def test_close_fails_queued_requests_and_releases_instances() -> None:
    """close() fails queued requests with ModelNotReadyError and closes every instance."""
    batcher, backend, _ = make()

    async def body() -> None:
        first = await hold_first(batcher, backend)
        queued = submit(batcher, rows(1))
        await settle()
        batcher.close()
        with pytest.raises(ModelNotReadyError, match="was unloaded"):
            await queued
        assert backend.closed
        with pytest.raises(ModelNotReadyError):
            await batcher.submit(rows(1), ["y"])
        backend.gate.set()
        await first
        assert backend.batch_rows == [1]

    run(close_after(batcher, body))


def test_cancelled_requests_do_not_fill_the_queue() -> None:
    """Requests whose callers went away leave room in a full queue for new ones."""
    batcher, backend, _ = make(batching=DynamicBatchingConfig(max_queue_size=2))

    async def body() -> None:
        first = await hold_first(batcher, backend)
        gone = [submit(batcher, rows(1, i)) for i in range(2)]
        await settle()
        assert batcher.queued == 2
        for task in gone:
            task.cancel()
        await settle()
        newcomer = submit(batcher, rows(1, 7))
        await settle()
        backend.gate.set()
        assert (await newcomer)["y"].shape == (1, 2)
        await first

    run(body())


class PickyBackend(FakeBackend):
    """Refuses any batch holding a negative value, as ONNX Runtime refuses bad text."""

    def run(
        self, inputs: Mapping[str, npt.NDArray[Any]], outputs: Sequence[str]
    ) -> list[npt.NDArray[Any]]:
        """Fail the whole call on one bad row, like a backend decoding a batch at once."""
        if (inputs["x"] < 0).any():
            self.calls.append({k: np.array(v) for k, v in inputs.items()})
            raise InvalidInputError("input 'x': a row the model cannot take")
        return super().run(inputs, outputs)


def test_one_bad_request_fails_alone_not_its_batch() -> None:
    """A batch refused for bad input is re-run request by request: only the culprit fails."""
    backend = PickyBackend()
    batcher, _, stats = make(backend=backend)

    async def body() -> None:
        first = await hold_first(batcher, backend)
        good = [submit(batcher, rows(1, i)) for i in (1.0, 2.0)]
        bad = submit(batcher, rows(1, -5.0))
        await settle()
        backend.gate.set()
        await first
        results = await asyncio.gather(*good, bad, return_exceptions=True)
        assert [r["y"][0, 0] for r in results[:2]] == [2.0, 4.0]  # type: ignore[index]
        assert isinstance(results[2], InvalidInputError)
        # one held execution, one failed batch of 3, then the three members alone
        assert backend.batch_rows == [1, 3, 1, 1, 1]
        assert stats.fail.count == 1

    run(body())
