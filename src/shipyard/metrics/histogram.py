"""A histogram kept as plain integers: bucket counts and a sum, observed in O(log buckets).

Observing is one ``bisect`` and two integer additions on the event loop thread: no lock, no
label lookup, no allocation. Durations are observed in nanoseconds (``perf_counter_ns``
differences) against bounds in nanoseconds; the exposition turns them into seconds.
"""

from __future__ import annotations

import itertools
import math
from bisect import bisect_left
from collections.abc import Sequence

__all__ = [
    "BATCH_SIZE_BUCKETS",
    "DEFAULT_LATENCY_BUCKETS_S",
    "GC_PAUSE_BUCKETS_S",
    "LOAD_BUCKETS_S",
    "Histogram",
    "check_buckets",
    "seconds_to_ns",
]

#: Request and stage latency buckets, in seconds: from 50 µs (a sub-millisecond model's
#: compute) to 10 s. ``--metrics-buckets`` replaces them.
DEFAULT_LATENCY_BUCKETS_S: tuple[float, ...] = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
#: Rows per model execution.
BATCH_SIZE_BUCKETS: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
#: Model load durations, in seconds.
LOAD_BUCKETS_S: tuple[float, ...] = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
#: Garbage collector pauses, in seconds.
GC_PAUSE_BUCKETS_S: tuple[float, ...] = (
    0.0001,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    1.0,
)


def seconds_to_ns(bounds_s: Sequence[float]) -> tuple[int, ...]:
    """Bucket bounds in seconds → nanoseconds (rounded), for :class:`Histogram`."""
    return tuple(round(b * 1e9) for b in bounds_s)


def check_buckets(bounds: Sequence[float], what: str) -> tuple[float, ...]:
    """Return ``bounds`` if they are finite, positive and strictly increasing; else ValueError."""
    values = tuple(float(b) for b in bounds)
    if not values:
        raise ValueError(f"{what}: at least one bucket bound is needed")
    if any(not math.isfinite(b) or b <= 0 for b in values):
        raise ValueError(f"{what}: bucket bounds must be finite and > 0, got {list(values)}")
    if any(a >= b for a, b in itertools.pairwise(values)):
        raise ValueError(f"{what}: bucket bounds must increase strictly, got {list(values)}")
    return values


class Histogram:
    """Counts of observations per bucket (upper bounds inclusive, plus +Inf) and their sum."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: Sequence[int]) -> None:
        self.bounds = tuple(bounds)
        #: One count per bound, then the +Inf bucket (not cumulative).
        self.counts = [0] * (len(self.bounds) + 1)
        #: Sum of the observed values.
        self.total = 0

    def observe(self, value: int) -> None:
        """Count one observation of ``value``."""
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def observe_many(self, value: int, times: int) -> None:
        """Count ``times`` observations of ``value``."""
        self.counts[bisect_left(self.bounds, value)] += times
        self.total += value * times

    @property
    def count(self) -> int:
        """How many observations there were."""
        return sum(self.counts)

    def cumulative(self) -> list[int]:
        """The cumulative count at each bound, then the total (Prometheus' ``le`` buckets)."""
        out: list[int] = []
        running = 0
        for n in self.counts:
            running += n
            out.append(running)
        return out

    def merge(self, other: Histogram) -> None:
        """Add ``other``'s observations (same bounds) to this one (aggregating processes)."""
        if other.bounds != self.bounds:
            raise ValueError("cannot merge histograms with different bucket bounds")
        for i, n in enumerate(other.counts):
            self.counts[i] += n
        self.total += other.total
