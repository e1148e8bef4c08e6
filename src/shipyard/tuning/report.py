"""The tuning report: ``tune-report.json`` (built here), the table ``shipyard tune`` prints, and
the sentence that says why the winner won. The HTML page is :mod:`~shipyard.tuning.html`.

``tune-report.json`` (schema ``shipyard.tune/1``) holds the goal, the budget used, the hardware,
the variants (made, skipped or rejected, with the accuracy guard's figures), every candidate
tried (settings, the model.toml keys it changes, figures per concurrency, its score, whether it
is on the Pareto front, a finalist, the winner), the Pareto front of every measured point
(throughput vs p99), the winner with the reason, the decision and what was written.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Console
from rich.table import Table

from shipyard.hardware import HardwareReport
from shipyard.tuning.search import Objective, Score, pareto_front, rank
from shipyard.tuning.variants import Variant

if TYPE_CHECKING:
    from shipyard.tuning.tune import Trial, _Baseline, _Tuner

__all__ = ["SCHEMA", "build_report", "print_tune"]

SCHEMA = "shipyard.tune/1"


def _score_dict(score: Score, objective: Objective) -> dict[str, Any]:
    return {
        "meets_goal": score.tier == 1,
        "tier": score.tier,
        "ranked_by": score.metric,
        "rps": round(score.rps, 3),
        "p99_ms": None if score.tier < 0 else round(score.p99_ms, 4),
        "concurrency": score.concurrency,
        "summary": score.describe(),
        "slo_p99_ms": objective.slo_p99_ms,
    }


def _points(trial: Trial) -> list[dict[str, Any]]:
    return [
        {
            "concurrency": p.concurrency,
            "rps": round(p.rps, 3),
            "p50_ms": None if p.p50_ms is None else round(p.p50_ms, 4),
            "p99_ms": None if p.p99_ms is None else round(p.p99_ms, 4),
            "errors": p.errors,
        }
        for p in trial.points or []
    ]


def _goal(tuner: _Tuner) -> dict[str, Any]:
    settings = tuner.settings
    levels = ", ".join(map(str, tuner.levels))
    if settings.slo_p99_ms is None:
        objective = f"the lowest p99 latency (geometric mean over concurrencies {levels})"
    else:
        objective = (
            f"the highest throughput whose p99 <= {settings.slo_p99_ms:g} ms, at any of"
            f" concurrencies {levels}"
        )
    return {
        "objective": objective,
        "slo_p99_ms": settings.slo_p99_ms,
        "concurrency": list(tuner.levels),
        "duration_s": settings.duration_s,
        "warmup_s": settings.warmup_s,
        "encoding": "binary" if settings.binary else "json",
        "input": None if settings.input_file is None else str(settings.input_file),
        "margin": settings.margin,
        "load": "closed loop, `shipyard bench`'s HTTP generator in its own process",
    }


def _why(tuner: _Tuner, winner: Trial, best: Trial, kept: bool, met: bool | None) -> str:
    score = tuner.score
    settings = tuner.settings
    baseline = tuner.trials[0]
    ws, bs = score(winner), score(baseline)
    averaged = " (averaged over two rounds)" if winner.id in tuner.finalists else ""
    if met is False:
        return (
            f"No candidate met p99 <= {settings.slo_p99_ms:g} ms at any measured concurrency"
            f" ({', '.join(map(str, tuner.levels))}). The closest is #{winner.id}"
            f" ({winner.candidate.label()}): lowest p99 {ws.p99_ms:.3g} ms at concurrency"
            f" {ws.concurrency} ({ws.rps:,.0f} req/s){averaged}."
        )
    if kept:
        other = score(best)
        return (
            f"No candidate beat the current settings by more than the {settings.margin:.0%}"
            f" noise margin: the best other, #{best.id} ({best.candidate.label()}), reached"
            f" {other.describe()} against the current {bs.describe()}; nothing needs to change."
        )
    if settings.slo_p99_ms is None:
        goal = "the lowest p99 latency"
    else:
        goal = f"the highest throughput within p99 <= {settings.slo_p99_ms:g} ms"
    text = f"#{winner.id} ({winner.candidate.label()}) has {goal}: {ws.describe()}{averaged}"
    if winner is not baseline:
        if bs.tier == ws.tier:
            ratio = Objective.relative(ws, bs)
            text += f", {ratio:.2f}x better than the current settings ({bs.describe()})"
        elif bs.tier == 0 and settings.slo_p99_ms is not None:
            text += f"; the current settings miss the SLO (lowest p99 {bs.p99_ms:.3g} ms)"
        changed = winner.candidate.differences(baseline.candidate)
        text += ". Changed: " + ", ".join(f"{d} {a} -> {b}" for d, (a, b) in changed.items())
    measured = {t.id: score(t) for t in tuner.trials if t.points is not None and t is not winner}
    order = rank(measured)
    if order:
        runner = tuner.trials[order[0] - 1]
        text += (
            f". Runner-up: #{runner.id} ({runner.candidate.label()}), {score(runner).describe()}"
        )
    return text + "."


def build_report(
    *,
    tuner: _Tuner,
    base: _Baseline,
    winner: Trial,
    best: Trial,
    kept_baseline: bool,
    met_slo: bool | None,
    variants: dict[str, Variant],
    hardware: HardwareReport,
    version: int,
    notes: Sequence[str],
) -> dict[str, Any]:
    """The JSON report (the decision and what was written are added by the caller)."""
    from shipyard import __version__
    from shipyard.tuning.tune import settings_changes

    items = [
        ((t.id, p.concurrency), p.rps, float(p.p99_ms))
        for t in tuner.trials
        for p in t.points or []
        if p.ok and p.p99_ms is not None
    ]
    front = pareto_front(items)
    on_front = {trial_id for trial_id, _c in front}
    by_key = {key: (rps, p99) for key, rps, p99 in items}
    candidates = []
    for trial in tuner.trials:
        candidates.append(
            {
                "id": trial.id,
                "label": trial.candidate.label(),
                "explored": trial.dimension,
                "candidate": trial.candidate.to_dict(),
                "changes": settings_changes(trial.candidate, base),
                "status": "measured" if trial.points is not None else "failed",
                "reason": trial.reason,
                "first_error": trial.first_error,
                "rounds": len(trial.rounds),
                "seconds": round(trial.seconds, 2),
                "points": _points(trial),
                "score": _score_dict(tuner.score(trial), tuner.objective),
                "pareto": trial.id in on_front,
                "finalist": trial.id in tuner.finalists,
                "winner": trial is winner,
                "baseline": trial.id == 1,
            }
        )
    used = tuner.elapsed()
    return {
        "schema": SCHEMA,
        "shipyard_version": __version__,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "step": "tune",
        "model": tuner.name,
        "version": version,
        "goal": _goal(tuner),
        "budget": {
            "budget_s": tuner.settings.budget_s,
            "used_s": round(used, 1),
            "candidates": len(tuner.trials),
            "search": "converged" if tuner.converged else "stopped by the time budget",
        },
        "hardware": hardware.summary(),
        "variants": [v.to_dict() for v in variants.values()],
        "pruned_variants": tuner.pruned,
        "candidates": candidates,
        "pareto_front": [
            {
                "candidate": trial_id,
                "concurrency": c,
                "rps": round(by_key[(trial_id, c)][0], 3),
                "p99_ms": round(by_key[(trial_id, c)][1], 4),
            }
            for trial_id, c in front
        ],
        "met_slo": met_slo,
        "winner": {
            "id": winner.id,
            "label": winner.candidate.label(),
            "candidate": winner.candidate.to_dict(),
            "score": _score_dict(tuner.score(winner), tuner.objective),
            "points": _points(winner),
            "changes": settings_changes(winner.candidate, base),
            "kept_current_settings": winner.id == 1,
            "why": _why(tuner, winner, best, kept_baseline, met_slo),
        },
        "notes": [
            *notes,
            "inter_op_threads is not searched: ONNX Runtime uses it only in its parallel"
            " execution mode, which Shipyard does not enable",
        ],
    }


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if value < 100 else f"{value:.0f}"


def print_tune(console: Console, report: dict[str, Any]) -> None:
    """The candidates table, the variants, the winner and why, the decision."""
    goal = report["goal"]
    levels = goal["concurrency"]
    table = Table(
        title=(
            f"{report['model']} v{report['version']}: {len(report['candidates'])} candidates in"
            f" {report['budget']['used_s']:.0f} s ({report['budget']['search']});"
            f" goal: {goal['objective']}"
        ),
        title_justify="left",
        caption="per concurrency: req/s | p99 ms.  * winner, P Pareto front, F measured twice",
        caption_justify="left",
        box=box.SIMPLE_HEAD,
    )
    table.add_column("#", justify="right")
    table.add_column("candidate")
    table.add_column("explored")
    for level in levels:
        table.add_column(f"c{level}", justify="right")
    table.add_column("")
    for row in report["candidates"]:
        cells = [str(row["id"]), row["label"], row["explored"]]
        points = {p["concurrency"]: p for p in row["points"]}
        for level in levels:
            p = points.get(level)
            if p is None:
                cells.append("-")
            else:
                err = f" E{p['errors']}" if p["errors"] else ""
                cells.append(f"{p['rps']:,.0f} | {_ms(p['p99_ms'])}{err}")
        marks = ("*" if row["winner"] else "") + ("P" if row["pareto"] else "")
        marks += "F" if row["finalist"] else ""
        if row["status"] == "failed":
            marks = f"failed: {row['reason'][:80]}"
        table.add_row(*cells, marks, style="bold" if row["winner"] else None)
    console.print(table)
    for variant in report["variants"]:
        if variant["status"] != "ready":
            console.print(f"variant {variant['name']}: {variant['status']}: {variant['reason']}")
    for name, why in report["pruned_variants"].items():
        console.print(f"variant {name}: dropped from the search: {why}")
    verdict = report["met_slo"]
    if verdict is False:
        console.print(f"[red]SLO not met[/]: {report['winner']['why']}", highlight=False)
    else:
        console.print(f"[green]winner[/]: {report['winner']['why']}", highlight=False)
    console.print(f"decision: {report['decision']}")
    for note in report["notes"]:
        console.print(f"note: {note}")
