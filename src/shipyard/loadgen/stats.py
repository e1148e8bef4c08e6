"""What one load measurement records and how it is summarized.

The transports call :meth:`Recorder.record` once per response, with the time the request was
*meant* to go out (the send time in a closed loop, the scheduled time in an open loop) and the
time its response was complete. Only responses completed inside the measured window count; the
latency of a request sent before the window opened (during warm-up) is left out, so warm-up
never leaks into the percentiles.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

__all__ = ["OK", "Recorder", "Summary", "percentile"]

#: The status of a successful response (HTTP 200 and gRPC OK are both recorded as this).
OK = "OK"


def percentile(ordered: Sequence[int], q: float) -> int | None:
    """The nearest-rank ``q`` quantile (0 < q <= 1) of ``ordered`` (sorted ascending).

    The smallest value such that at least ``q`` of the values are at most it: the p99 of 100
    values is the 99th smallest, of 1,000 values the 990th. ``None`` for no values.
    """
    if not 0.0 < q <= 1.0:
        raise ValueError(f"quantile {q} is not in (0, 1]")
    if not ordered:
        return None
    rank = max(1, math.ceil(q * len(ordered) - 1e-9))
    return ordered[rank - 1]


@dataclasses.dataclass(frozen=True)
class Summary:
    """The figures of one measurement (one row of ``shipyard bench``'s table).

    ``requests`` counts successful responses completed inside the window; ``errors`` counts the
    failed ones by status (an HTTP status code such as ``"503"``, a gRPC status name such as
    ``"UNAVAILABLE"``, or ``"connection"``). Latencies are in milliseconds, ``None`` when no
    request completed. ``client_cpu`` is the load generator's own CPU time over wall time
    (1.0 = one core busy). In an open loop ``rate`` is the offered rate and ``missed`` counts
    scheduled requests that never went out because ``max_outstanding`` were in flight until
    the window closed. ``errors_outside`` counts failed responses that completed outside the
    window (warm-up, drain): in no other figure, but not lost from sight.
    """

    concurrency: int
    duration_s: float
    requests: int
    rps: float
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    mean_ms: float | None
    errors: dict[str, int]
    first_error: str
    client_cpu: float
    rate: float | None = None
    missed: int = 0
    errors_outside: int = 0

    @property
    def error_count(self) -> int:
        """All failed responses, whatever their status."""
        return sum(self.errors.values())

    def to_dict(self) -> dict[str, Any]:
        """The summary as JSON-ready values (``error_count`` included)."""
        return {**dataclasses.asdict(self), "error_count": self.error_count}


class Recorder:
    """Collects the outcome of every response of one measurement window.

    Per response it appends one integer (or bumps one counter), so recording costs far less
    than the request it records.
    """

    def __init__(self, start_ns: int, end_ns: int) -> None:
        self.start_ns = start_ns
        self.end_ns = end_ns
        self.latencies: list[int] = []
        self.requests = 0
        self.errors: dict[str, int] = {}
        self.first_error = ""
        self.errors_outside = 0

    def record(self, intended_ns: int, done_ns: int, status: str, detail: str = "") -> None:
        """Record one response; outside the window only a failure is counted, apart."""
        if not self.start_ns <= done_ns <= self.end_ns:
            if status != OK:
                self.errors_outside += 1
            return
        if status == OK:
            self.requests += 1
            if intended_ns >= self.start_ns:
                self.latencies.append(done_ns - intended_ns)
            return
        self.errors[status] = self.errors.get(status, 0) + 1
        if not self.first_error:
            self.first_error = f"{status}: {detail}" if detail else status

    def summary(
        self,
        concurrency: int,
        client_cpu: float,
        rate: float | None = None,
        missed: int = 0,
    ) -> Summary:
        """The figures of the window, latencies sorted once here."""
        ordered = sorted(self.latencies)
        duration_s = (self.end_ns - self.start_ns) / 1e9

        def ms(value: float | None) -> float | None:
            return None if value is None else value / 1e6

        return Summary(
            concurrency=concurrency,
            duration_s=duration_s,
            requests=self.requests,
            rps=self.requests / duration_s if duration_s > 0 else 0.0,
            p50_ms=ms(percentile(ordered, 0.50)),
            p90_ms=ms(percentile(ordered, 0.90)),
            p99_ms=ms(percentile(ordered, 0.99)),
            max_ms=ms(ordered[-1] if ordered else None),
            mean_ms=ms(sum(ordered) / len(ordered) if ordered else None),
            errors=dict(sorted(self.errors.items())),
            first_error=self.first_error,
            client_cpu=client_cpu,
            rate=rate,
            missed=missed,
            errors_outside=self.errors_outside,
        )
