"""The tuner's search: candidates, how their measurements are scored, the Pareto front, and a
coordinate descent that never walks the full grid.

A :class:`Candidate` is one point of the joint space: model variant, execution provider,
instances, intra-op threads, ``max_batch_size``, ``max_queue_delay_us`` and preferred batch
sizes. Measuring it (:mod:`shipyard.tuning.measure`) gives one :class:`Point` per
concurrency. The :class:`Objective` turns points into a :class:`Score`:

* with an SLO: the highest throughput among the points whose p99 meets it (with no errors);
  a candidate that meets it nowhere ranks below every one that does, by its lowest p99;
* without one: the lowest p99, as the geometric mean over the concurrencies measured.

:class:`CoordinateSearch` starts from the current settings and varies one dimension at a time
around the best so far (ask with :meth:`~CoordinateSearch.propose`, answer with
:meth:`~CoordinateSearch.record`); a change is kept only when it wins by more than the noise
margin. Dominated regions are pruned: variants far behind the best at the same settings are
dropped, and dimensions that cannot matter (queue delay without batching) are not explored.
Everything here is pure; it is tested with synthetic measurements.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

__all__ = [
    "DIMENSIONS",
    "Candidate",
    "CoordinateSearch",
    "Objective",
    "Point",
    "Proposal",
    "Score",
    "Space",
    "ladder",
    "merge_rounds",
    "pareto_front",
    "rank",
]

#: The dimensions in the order the search varies them (the first matters most).
DIMENSIONS = (
    "variant",
    "provider",
    "instance_count",
    "intra_op_threads",
    "inter_op_threads",
    "max_batch_size",
    "max_queue_delay_us",
    "preferred_batch_sizes",
)
#: Dimensions whose values are ordered: walked one step at a time while it pays.
_ORDERED = {
    "instance_count",
    "intra_op_threads",
    "inter_op_threads",
    "max_batch_size",
    "max_queue_delay_us",
}
_K = TypeVar("_K")


@dataclass(frozen=True, slots=True)
class Candidate:
    """One model variant under one set of serving settings."""

    variant: str = "fp32"
    provider: str = "CPUExecutionProvider"
    instance_count: int = 1
    intra_op_threads: int = 1
    #: 0: no dynamic batching.
    max_batch_size: int = 0
    max_queue_delay_us: int = 0
    preferred_batch_sizes: tuple[int, ...] = ()
    #: 1: ONNX Runtime's sequential execution; N > 1: parallel execution on N inter-op threads.
    inter_op_threads: int = 1

    def label(self) -> str:
        """A short form for tables and progress: ``fp32 CPU x2 t1 b16 d500us p[4,8]``."""
        provider = self.provider.removesuffix("ExecutionProvider")
        text = f"{self.variant} {provider} x{self.instance_count} t{self.intra_op_threads}"
        if self.inter_op_threads > 1:
            text += f" i{self.inter_op_threads}"
        if self.max_batch_size == 0:
            return f"{text} no-batch"
        text += f" b{self.max_batch_size} d{self.max_queue_delay_us}us"
        if self.preferred_batch_sizes:
            text += f" p[{','.join(map(str, self.preferred_batch_sizes))}]"
        return text

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            **dataclasses.asdict(self),
            "preferred_batch_sizes": list(self.preferred_batch_sizes),
        }

    def differences(self, other: Candidate) -> dict[str, tuple[Any, Any]]:
        """``{dimension: (other's value, this one's)}`` for every dimension that differs."""
        return {
            dim: (getattr(other, dim), getattr(self, dim))
            for dim in DIMENSIONS
            if getattr(self, dim) != getattr(other, dim)
        }


@dataclass(frozen=True, slots=True)
class Point:
    """The load generator's figures at one concurrency."""

    concurrency: int
    rps: float
    p50_ms: float | None
    p99_ms: float | None
    errors: int = 0

    @property
    def ok(self) -> bool:
        """No request failed and at least one succeeded."""
        return self.errors == 0 and self.p99_ms is not None and self.rps > 0


@dataclass(frozen=True, slots=True)
class Score:
    """How good a candidate is; compare two with :meth:`Objective.better`.

    ``tier``: 1 meets the goal (the SLO, or no errors without one), 0 measured but does not,
    -1 nothing usable. ``metric`` says what ranks candidates within a tier: ``rps`` (higher
    wins) or ``p99`` (lower wins). ``rps``/``p99_ms``/``concurrency`` are the operating point
    (``concurrency`` is ``None`` for the geometric mean of p99 over every concurrency).
    """

    tier: int
    metric: Literal["rps", "p99"]
    rps: float
    p99_ms: float
    concurrency: int | None

    @property
    def value(self) -> float:
        """The ranked figure, higher is better."""
        return self.rps if self.metric == "rps" else -self.p99_ms

    def sort_key(self) -> tuple[int, float]:
        """Ascending order puts the worst first."""
        return (self.tier, self.value)

    def describe(self) -> str:
        """``4,312 req/s at c8 (p99 6.1 ms)`` or ``p99 3.2 ms (geometric mean), 4,312 req/s``."""
        if self.tier < 0:
            return "no successful request"
        if self.concurrency is None:
            return f"p99 {self.p99_ms:.3g} ms (geometric mean), up to {self.rps:,.0f} req/s"
        return f"{self.rps:,.0f} req/s at concurrency {self.concurrency} (p99 {self.p99_ms:.3g} ms)"


_NOTHING = Score(-1, "rps", 0.0, math.inf, None)


@dataclass(frozen=True, slots=True)
class Objective:
    """The goal: the highest throughput within ``slo_p99_ms``, or the lowest p99 without one."""

    slo_p99_ms: float | None = None

    def score(self, points: Sequence[Point] | None) -> Score:
        """Score one candidate's points (``None``: it could not be measured)."""
        good = [p for p in points or () if p.ok]
        if not good:
            return _NOTHING
        if self.slo_p99_ms is not None:
            meeting = [p for p in good if p.p99_ms is not None and p.p99_ms <= self.slo_p99_ms]
            if meeting:
                best = max(meeting, key=lambda p: (p.rps, -(p.p99_ms or 0.0)))
                return Score(1, "rps", best.rps, float(best.p99_ms or 0.0), best.concurrency)
            lowest = min(good, key=lambda p: (p.p99_ms or math.inf, -p.rps))
            return Score(0, "p99", lowest.rps, float(lowest.p99_ms or 0.0), lowest.concurrency)
        all_ok = len(good) == len(points or ())
        p99s = [max(float(p.p99_ms or 0.0), 1e-6) for p in good]
        geomean = math.exp(sum(math.log(v) for v in p99s) / len(p99s))
        return Score(1 if all_ok else 0, "p99", max(p.rps for p in good), geomean, None)

    @staticmethod
    def relative(a: Score, b: Score) -> float:
        """How many times better ``a`` is than ``b`` on the ranked figure (same tier)."""
        if a.metric == "rps" and b.metric == "rps":
            return a.rps / b.rps if b.rps > 0 else math.inf
        return b.p99_ms / a.p99_ms if a.p99_ms > 0 else math.inf

    def better(self, a: Score, b: Score, margin: float = 0.0) -> bool:
        """Whether ``a`` beats ``b`` by more than ``margin`` (a fraction; a higher tier always).

        A p99 is noisier than a throughput, so a comparison on p99 needs twice the margin.
        """
        if a.tier != b.tier:
            return a.tier > b.tier
        if a.tier < 0:
            return False
        needed = margin * (2 if a.metric == "p99" or b.metric == "p99" else 1)
        return self.relative(a, b) > 1.0 + needed


def merge_rounds(rounds: Sequence[Sequence[Point]]) -> list[Point]:
    """Average repeated measurements of one candidate, concurrency by concurrency."""
    by_concurrency: dict[int, list[Point]] = {}
    for points in rounds:
        for point in points:
            by_concurrency.setdefault(point.concurrency, []).append(point)

    def mean(values: Sequence[float | None]) -> float | None:
        known = [v for v in values if v is not None]
        return sum(known) / len(known) if known else None

    return [
        Point(
            c,
            sum(p.rps for p in ps) / len(ps),
            mean([p.p50_ms for p in ps]),
            mean([p.p99_ms for p in ps]),
            sum(p.errors for p in ps),
        )
        for c, ps in sorted(by_concurrency.items())
    ]


def pareto_front(items: Sequence[tuple[_K, float, float]]) -> list[_K]:
    """The keys of ``(key, throughput, p99)`` items that no other item beats on both figures.

    An item is dominated when another has at least its throughput and at most its p99, and is
    strictly better on one of them. Returned in ascending throughput.
    """
    ordered = sorted(items, key=lambda item: (-item[1], item[2]))
    front: list[_K] = []
    best_p99 = math.inf
    for key, _rps, p99 in ordered:  # from the highest throughput down
        if p99 < best_p99:
            front.append(key)
            best_p99 = p99
    return front[::-1]


def ladder(values: Sequence[int], current: int) -> tuple[int, ...]:
    """``values`` with ``current`` added, sorted and unique."""
    return tuple(sorted({*values, current}))


@dataclass(frozen=True, slots=True)
class Space:
    """The values each dimension may take on this machine, for this model."""

    #: Variants that exist (made and accuracy-guarded), in preference order.
    variants: tuple[str, ...]
    #: For each variant, the providers that suit its precision (first: preferred).
    providers: Mapping[str, tuple[str, ...]]
    instance_count: tuple[int, ...]
    intra_op_threads: tuple[int, ...]
    #: ``(0,)`` when the model's first dimension is fixed (no batching possible).
    max_batch_size: tuple[int, ...]
    max_queue_delay_us: tuple[int, ...]
    #: ``(1,)``: sequential execution only.
    inter_op_threads: tuple[int, ...] = (1,)

    def values(self, dimension: str, around: Candidate) -> tuple[Any, ...]:
        """The values ``dimension`` may take when the others are as in ``around``."""
        if dimension == "variant":
            return self.variants
        if dimension == "provider":
            return self.providers.get(around.variant, (around.provider,))
        if dimension == "preferred_batch_sizes":
            top = around.max_batch_size
            powers = tuple(2**i for i in range(1, 16) if 2**i <= top)
            options = [around.preferred_batch_sizes, (), powers, (top,)]
            if top >= 4:
                options.append((top // 2, top))
            return tuple(dict.fromkeys(o for o in options if all(b <= top for b in o)))
        values: tuple[Any, ...] = getattr(self, dimension)
        return values

    def relevant(self, dimension: str, candidate: Candidate) -> bool:
        """Whether varying ``dimension`` can change anything for ``candidate``."""
        if dimension in ("max_queue_delay_us", "preferred_batch_sizes"):
            return candidate.max_batch_size >= 2
        if dimension == "max_batch_size":
            return len(self.max_batch_size) > 1
        return len(self.values(dimension, candidate)) > 1

    def normalize(self, candidate: Candidate, start: Candidate) -> Candidate:
        """Make ``candidate`` valid; settings that cannot matter take ``start``'s values.

        So two candidates that would run identically compare equal and are measured once.
        """
        providers = self.providers.get(candidate.variant, ())
        if providers and candidate.provider not in providers:
            candidate = dataclasses.replace(candidate, provider=providers[0])
        if candidate.max_batch_size < 2:
            return dataclasses.replace(
                candidate,
                max_queue_delay_us=start.max_queue_delay_us,
                preferred_batch_sizes=start.preferred_batch_sizes,
            )
        kept = tuple(b for b in candidate.preferred_batch_sizes if b <= candidate.max_batch_size)
        return dataclasses.replace(candidate, preferred_batch_sizes=kept)


@dataclass(frozen=True, slots=True)
class Proposal:
    """A candidate to measure next and the dimension being explored (``start``, ``variant``...)."""

    candidate: Candidate
    dimension: str


@dataclass
class CoordinateSearch:
    """Coordinate descent with a noise margin, over a :class:`Space`, from ``start``.

    Each pass visits the dimensions in :data:`DIMENSIONS` order. Ordered dimensions are walked
    one step up (then, if that did not pay, one step down) from the best value so far, and
    keep walking while each step wins by more than ``margin`` (crossing up to ``patience``
    steps that are neither better nor clearly worse, so a plateau does not stop the walk).
    Unordered ones (variant, provider, preferred sizes) try every value. Passes repeat until
    one changes nothing or ``max_passes`` is reached. After the variants have been compared,
    any variant whose figure is below ``prune_below`` times the best one's at the same
    settings is dropped.
    """

    space: Space
    objective: Objective
    start: Candidate
    margin: float = 0.03
    prune_below: float = 0.5
    max_passes: int = 3
    #: Steps an ordered walk takes across a plateau (no better, not clearly worse).
    patience: int = 1
    scores: dict[Candidate, Score] = field(default_factory=dict)
    #: Variants dropped from the search, with the reason.
    pruned: dict[str, str] = field(default_factory=dict)
    converged: bool = False
    best: Candidate = field(init=False)
    _walk: Iterator[Proposal] = field(init=False, repr=False)
    _pending: Candidate | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.start = self.space.normalize(self.start, self.start)
        self.best = self.start
        self._walk = self._search()

    # -- ask / tell ---------------------------------------------------------------------

    def propose(self) -> Proposal | None:
        """The next candidate to measure, or ``None`` when the search has converged."""
        if self._pending is not None:
            raise RuntimeError("record() the last proposal before asking for another")
        proposal = next(self._walk, None)
        if proposal is not None:
            self._pending = proposal.candidate
        return proposal

    def record(self, candidate: Candidate, score: Score) -> None:
        """The score of a proposed (or any other) candidate."""
        self.scores[candidate] = score
        if candidate == self._pending:
            self._pending = None

    @property
    def best_score(self) -> Score:
        """The score of :attr:`best` (the worst possible before anything was measured)."""
        return self.scores.get(self.best, _NOTHING)

    # -- the walk -------------------------------------------------------------------------

    def _with(self, **change: Any) -> Candidate:
        return self.space.normalize(dataclasses.replace(self.best, **change), self.start)

    def _beats(self, candidate: Candidate) -> bool:
        score = self.scores.get(candidate, _NOTHING)
        return self.objective.better(score, self.best_score, self.margin)

    def _loses(self, candidate: Candidate) -> bool:
        score = self.scores.get(candidate, _NOTHING)
        return self.objective.better(self.best_score, score, self.margin)

    def _search(self) -> Iterator[Proposal]:
        if self.start not in self.scores:
            yield Proposal(self.start, "start")
        for _ in range(self.max_passes):
            before = self.best
            for dimension in DIMENSIONS:
                if self.space.relevant(dimension, self.best):
                    yield from self._dimension(dimension)
            if self.best == before:
                self.converged = True
                return

    def _dimension(self, dimension: str) -> Iterator[Proposal]:
        if dimension not in _ORDERED:
            tried = []
            for value in self.space.values(dimension, self.best):
                if dimension == "variant" and value in self.pruned:
                    continue
                candidate = self._with(**{dimension: value})
                if candidate not in self.scores:
                    yield Proposal(candidate, dimension)
                tried.append(candidate)
            winner = max(tried, key=lambda c: self.scores.get(c, _NOTHING).sort_key())
            if winner != self.best and self._beats(winner):
                self.best = winner
            if dimension == "variant":
                self._prune(tried)
            return
        values = self.space.values(dimension, self.best)
        here = getattr(self.best, dimension)
        index = values.index(here) if here in values else 0
        for step in (1, -1):
            moved, flat = False, 0
            at = index + step
            while 0 <= at < len(values):
                candidate = self._with(**{dimension: values[at]})
                if candidate != self.best and candidate not in self.scores:
                    yield Proposal(candidate, dimension)
                if candidate != self.best and self._beats(candidate):
                    self.best, moved, flat = candidate, True, 0
                elif flat < self.patience and not self._loses(candidate):
                    flat += 1  # a plateau: look one step further before giving up
                else:
                    break
                at += step
            if moved:
                return

    def _prune(self, compared: Sequence[Candidate]) -> None:
        best = self.best_score
        if best.tier < 0:
            return
        for candidate in compared:
            score = self.scores.get(candidate, _NOTHING)
            if candidate.variant == self.best.variant or candidate.variant in self.pruned:
                continue
            if score.tier < best.tier:
                self.pruned[candidate.variant] = f"{score.describe()}; the best meets the goal"
            elif score.tier == best.tier and (
                self.objective.relative(score, best) < self.prune_below
            ):
                ratio = self.objective.relative(best, score)
                self.pruned[candidate.variant] = (
                    f"{ratio:.2f}x behind {self.best.variant} at the same settings"
                )


def rank(scores: Mapping[_K, Score]) -> list[_K]:
    """Keys of ``scores`` from the best to the worst (ties keep their order)."""
    return sorted(scores, key=lambda k: scores[k].sort_key(), reverse=True)
