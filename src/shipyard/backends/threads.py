"""How many intra-op threads a model gets when ``model.toml`` says ``intra_op_threads = "auto"``.

The rule, measured on the model itself when it loads: time one batch-1 execution on a single
thread (after warm-up, the median of a few runs on random inputs of the model's signature; a
first, cold run already past ten times the threshold settles it at once, so a model that
takes seconds does not take many more to load).

- A cheap model (under :data:`HEAVY_MS` per execution, e.g. the MNIST CNN at ~0.1 ms) keeps
  **one** thread: its cost is comparable to the event loop's own work per request (~0.15 ms of
  CPU to parse, validate, batch and answer on the reference machine), so the loop needs the
  other cores more than the model does.
- A compute-bound model (ResNet-18 at ~80 ms, MiniLM at ~5 ms) dwarfs that per-request cost:
  it gets the cores this process may use (:func:`usable_cores`) divided among its
  instances (``instance_count``), so instances x threads never exceed the cores. Under
  ``shipyard serve --workers N`` each worker's share is its cores divided by N
  (:data:`CORES_ENV`, set by the supervisor), so workers x threads never exceed them either.

``shipyard tune`` measures thread counts under real load and writes an explicit number, which
always wins over "auto". When the execution cannot be timed (the model rejects random inputs,
e.g. BYTES inputs), the model keeps one thread and the reason says why.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from shipyard.errors import ConfigError

__all__ = [
    "CORES_ENV",
    "HEAVY_MS",
    "ThreadChoice",
    "choose_threads",
    "time_execution",
    "usable_cores",
]

#: The environment variable that caps the cores this process may use: a positive integer
#: (``--workers`` gives each worker its share; a container with a CPU quota may set it).
CORES_ENV = "SHIPYARD_CORES"
#: A batch-1 execution at least this long (ms, one thread) counts as compute-bound: over ten
#: times the event loop's per-request cost.
HEAVY_MS = 2.0
#: Untimed runs before timing, and timed runs (their median is the cost).
WARMUP_RUNS = 2
TIMED_RUNS = 5
#: A first (cold) run this many times :data:`HEAVY_MS` decides without more runs.
CLEARLY_HEAVY = 10


@dataclass(frozen=True, slots=True)
class ThreadChoice:
    """The intra-op threads chosen for one instance, and why (logged at load)."""

    threads: int
    #: One batch-1 execution on one thread (ms); None when it could not be timed.
    cost_ms: float | None
    reason: str


def usable_cores() -> int:
    """The cores this process may run on (``os.sched_getaffinity``), at most :data:`CORES_ENV`.

    Raises ConfigError when :data:`CORES_ENV` is set to anything but a positive integer.
    """
    try:
        cores = max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        cores = max(1, os.cpu_count() or 1)
    cap = os.environ.get(CORES_ENV, "").strip()
    if not cap:
        return cores
    if not (cap.isascii() and cap.isdigit() and int(cap) > 0):
        raise ConfigError(f"{CORES_ENV} must be a positive integer (a count of cores), got {cap!r}")
    return min(cores, int(cap))


def time_execution(
    run: Callable[[], object], clock: Callable[[], float] = time.perf_counter
) -> float:
    """The median time of one call of ``run`` in ms, after :data:`WARMUP_RUNS` calls; or the
    first call's time when it is clearly heavy (:data:`CLEARLY_HEAVY`). ``clock`` in s."""

    def _ms(run: Callable[[], object]) -> float:
        start = clock()
        run()
        return (clock() - start) * 1000

    cold = _ms(run)
    if cold >= CLEARLY_HEAVY * HEAVY_MS:
        return cold
    for _ in range(WARMUP_RUNS - 1):
        run()
    samples = []
    for _ in range(TIMED_RUNS):
        samples.append(_ms(run))
    return sorted(samples)[len(samples) // 2]


def choose_threads(cost_ms: float | None, cores: int, instances: int) -> ThreadChoice:
    """Apply the module's rule to a measured ``cost_ms`` (None: could not be timed)."""
    if cost_ms is None:
        return ThreadChoice(1, None, "1 thread: one execution could not be timed")
    share = max(1, cores // max(1, instances))
    if cost_ms < HEAVY_MS or share == 1:
        why = (
            f"1 thread: one batch-1 execution takes {cost_ms:.3g} ms (< {HEAVY_MS:g} ms), so"
            " the event loop needs the other cores"
            if cost_ms < HEAVY_MS
            else f"1 thread: {cores} core(s) for {instances} instance(s)"
        )
        return ThreadChoice(1, cost_ms, why)
    return ThreadChoice(
        share,
        cost_ms,
        f"{share} threads: one batch-1 execution takes {cost_ms:.3g} ms on one thread"
        f" (>= {HEAVY_MS:g} ms: compute-bound); {cores} cores / {instances} instance(s)",
    )
