"""The tuner's decision: which trial wins, whether it met the SLO, and why, in one sentence.

The winner is the best of the finalists (or of every measured trial when there was no time to
measure finalists twice): the highest throughput within the SLO, or the lowest p99 without one.
It replaces the current settings only when it beats them by more than the margin, the same
rule as ``shipyard optimize``'s speed guard: the margin is the larger of ``--margin`` (the
smallest gain worth a change) and the **noise measured** on this machine, the largest
difference between the two rounds of any finalist (the current settings included). Without a
second round the noise is unknown and ``--margin`` stands in, which the reason says.
"""

from __future__ import annotations

from dataclasses import dataclass

from shipyard.tuning.explore import Exploration, Trial
from shipyard.tuning.search import Objective, Score, rank
from shipyard.tuning.settings import TuneSettings

__all__ = ["Decision", "decide"]


@dataclass(frozen=True, slots=True)
class Decision:
    """The winner of an :class:`~shipyard.tuning.explore.Exploration` and the reason."""

    winner: Trial
    #: The best trial found; not the winner when it did not beat the baseline by the margin.
    best: Trial
    #: Whether the current settings stay because nothing beat them by the margin.
    kept_baseline: bool
    #: Whether the winner meets the SLO (``None``: no SLO was given).
    met_slo: bool | None
    #: One paragraph for people: why this trial won, against what.
    why: str
    #: The noise measured between the finalists' two rounds (a fraction; ``None``: unknown).
    noise: float | None = None
    #: The margin the winner had to beat the current settings by: max(--margin, noise).
    margin: float = 0.0


def decide(exploration: Exploration, settings: TuneSettings) -> Decision:
    """Choose the winner of ``exploration`` for ``settings``' goal and margin."""
    objective = settings.objective
    baseline = exploration.baseline
    pool = list(exploration.finalists) or [t for t in exploration.trials if t.points is not None]
    best = _best(objective, pool) or baseline
    noise = measured_noise(objective, exploration.finalists)
    margin = max(settings.margin, noise or 0.0)
    keep = best.id != baseline.id and not objective.better(
        objective.score(best.points), objective.score(baseline.points), margin
    )
    winner = baseline if keep else best
    met = None if settings.slo_p99_ms is None else objective.score(winner.points).tier == 1
    why = _why(exploration, settings, winner, best, keep, met, noise, margin)
    return Decision(winner, best, keep, met, why, noise, margin)


def measured_noise(objective: Objective, trials: tuple[Trial, ...]) -> float | None:
    """The largest relative difference between two rounds of the same trial, on the ranked
    figure (``None`` when no trial was measured twice in the same tier)."""
    spreads = []
    for trial in trials:
        if len(trial.rounds) < 2:
            continue
        first, second = (objective.score(points) for points in trial.rounds[:2])
        if first.tier != second.tier or first.tier < 0:
            continue
        ratio = Objective.relative(first, second)
        spreads.append(max(ratio, 1 / ratio) - 1 if ratio > 0 else float("inf"))
    return max(spreads) if spreads else None


def _best(objective: Objective, trials: list[Trial]) -> Trial | None:
    """The best-scoring of ``trials`` (the first on a tie; ``None`` for none)."""
    order = rank({t.id: objective.score(t.points) for t in trials})
    return next((t for t in trials if t.id == order[0]), None) if order else None


def _why(
    exploration: Exploration,
    settings: TuneSettings,
    winner: Trial,
    best: Trial,
    kept: bool,
    met: bool | None,
    noise: float | None,
    margin: float,
) -> str:
    objective = settings.objective

    def score(trial: Trial) -> Score:
        return objective.score(trial.points)

    baseline = exploration.baseline
    ws, bs = score(winner), score(baseline)
    finalist_ids = {t.id for t in exploration.finalists}
    averaged = " (averaged over two rounds)" if winner.id in finalist_ids else ""
    if met is False:
        return (
            f"No candidate met p99 <= {settings.slo_p99_ms:g} ms at any measured concurrency"
            f" ({', '.join(map(str, settings.levels()))}). The closest is #{winner.id}"
            f" ({winner.candidate.label()}): lowest p99 {ws.p99_ms:.3g} ms at concurrency"
            f" {ws.concurrency} ({ws.rps:,.0f} req/s){averaged}."
        )
    if kept:
        other = score(best)
        if noise is None:
            basis = f"the {margin:.0%} margin (the noise was not measured: no second round)"
        else:
            basis = (
                f"the {margin:.0%} margin (noise between the finalists' two rounds:"
                f" {noise:.1%}; --margin {settings.margin:.0%})"
            )
        return (
            f"No candidate beat the current settings by more than {basis}: the best other,"
            f" #{best.id} ({best.candidate.label()}), reached {other.describe()} against the"
            f" current {bs.describe()}; nothing needs to change."
        )
    if settings.slo_p99_ms is None:
        goal = "the lowest p99 latency"
    else:
        goal = f"the highest throughput within p99 <= {settings.slo_p99_ms:g} ms"
    text = f"#{winner.id} ({winner.candidate.label()}) has {goal}: {ws.describe()}{averaged}"
    if winner.id != baseline.id:
        if bs.tier == ws.tier:
            ratio = Objective.relative(ws, bs)
            text += f", {ratio:.2f}x better than the current settings ({bs.describe()})"
        elif bs.tier == 0 and settings.slo_p99_ms is not None:
            text += f"; the current settings miss the SLO (lowest p99 {bs.p99_ms:.3g} ms)"
        changed = winner.candidate.differences(baseline.candidate)
        text += ". Changed: " + ", ".join(f"{d} {a} -> {b}" for d, (a, b) in changed.items())
    others = {
        t.id: score(t) for t in exploration.trials if t.points is not None and t.id != winner.id
    }
    order = rank(others)
    if order:
        runner = exploration.trial(order[0])
        text += (
            f". Runner-up: #{runner.id} ({runner.candidate.label()}), {score(runner).describe()}"
        )
    return text + "."
