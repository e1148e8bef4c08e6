"""Per model-version statistics with Triton's semantics (the ``statistics`` extension).

``inference_count`` counts batch items (rows), ``execution_count`` counts model executions;
each duration is a count and a total in nanoseconds. Updated only from the event loop thread;
the transports encode these objects (``protocol.rest``, ``protocol.grpc``) as the statistics
extension's JSON or ``ModelStatistics`` messages.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

__all__ = ["BatchStats", "Duration", "ModelStats"]


@dataclass(slots=True)
class Duration:
    """A count of events and their total duration in nanoseconds."""

    count: int = 0
    ns: int = 0

    def add(self, ns: int, count: int = 1) -> None:
        """Record ``count`` events lasting ``ns`` nanoseconds in total."""
        self.count += count
        self.ns += ns

    def merge(self, other: Duration) -> None:
        """Add ``other``'s events (the same counter in another worker process)."""
        self.count += other.count
        self.ns += other.ns


@dataclass(slots=True)
class BatchStats:
    """The compute durations of the executions of one batch size (one count per execution)."""

    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)

    def merge(self, other: BatchStats) -> None:
        """Add ``other``'s executions (the same batch size in another worker process)."""
        self.compute_input.merge(other.compute_input)
        self.compute_infer.merge(other.compute_infer)
        self.compute_output.merge(other.compute_output)


@dataclass(slots=True)
class ModelStats:
    """Counters of one model version."""

    name: str
    version: str
    last_inference_ms: int = 0
    inference_count: int = 0
    execution_count: int = 0
    success: Duration = field(default_factory=Duration)
    fail: Duration = field(default_factory=Duration)
    queue: Duration = field(default_factory=Duration)
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)
    #: Per batch size (rows per execution).
    batches: dict[int, BatchStats] = field(default_factory=dict)

    def record_execution(
        self, batch_size: int, requests: int, input_ns: int, infer_ns: int, output_ns: int
    ) -> None:
        """Record one model execution over ``batch_size`` rows from ``requests`` requests."""
        self.execution_count += 1
        self.inference_count += batch_size
        self.last_inference_ms = time.time_ns() // 1_000_000
        self.compute_input.add(input_ns * requests, requests)
        self.compute_infer.add(infer_ns * requests, requests)
        self.compute_output.add(output_ns * requests, requests)
        stats = self.batches.get(batch_size)
        if stats is None:
            stats = self.batches[batch_size] = BatchStats()
        stats.compute_input.add(input_ns)
        stats.compute_infer.add(infer_ns)
        stats.compute_output.add(output_ns)

    def merge(self, other: ModelStats) -> None:
        """Add ``other``'s counters: the same model version in another worker process.

        Counts and durations add up; ``last_inference_ms`` is the later of the two.
        """
        self.last_inference_ms = max(self.last_inference_ms, other.last_inference_ms)
        self.inference_count += other.inference_count
        self.execution_count += other.execution_count
        for mine, theirs in (
            (self.success, other.success),
            (self.fail, other.fail),
            (self.queue, other.queue),
            (self.compute_input, other.compute_input),
            (self.compute_infer, other.compute_infer),
            (self.compute_output, other.compute_output),
        ):
            mine.merge(theirs)
        for size, batch in other.batches.items():
            self.batches.setdefault(size, BatchStats()).merge(batch)
