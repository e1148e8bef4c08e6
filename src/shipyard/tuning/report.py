"""The tuning report: ``tune-report.json`` (built here, once, from the typed results), the
``report.json`` of a published variant, and the table ``shipyard tune`` prints. The HTML page is
:mod:`~shipyard.tuning.html`.

``tune-report.json`` (schema ``shipyard.tune/1``) holds the goal, the budget used, the hardware,
the variants (made, skipped or rejected, with the accuracy guard's figures), every candidate
tried (settings, the model.toml keys it changes, figures per concurrency, its score, whether it
is on the Pareto front, a finalist, the winner), the Pareto front of every measured point
(throughput vs p99), the winner with the reason, the decision and what was written.
"""

from __future__ import annotations

import datetime
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from shipyard import __version__
from shipyard.hardware import HardwareReport
from shipyard.tuning.baseline import Baseline, settings_changes
from shipyard.tuning.decide import Decision
from shipyard.tuning.explore import Exploration, Trial
from shipyard.tuning.publish import Publication
from shipyard.tuning.search import Objective, Score, pareto_front
from shipyard.tuning.settings import TuneSettings
from shipyard.tuning.variants import OPENVINO, Variant

__all__ = ["SCHEMA", "build_report", "print_tune", "version_report"]

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


def _goal(settings: TuneSettings) -> dict[str, Any]:
    levels = settings.levels()
    shown = ", ".join(map(str, levels))
    if settings.slo_p99_ms is None:
        objective = f"the lowest p99 latency (geometric mean over concurrencies {shown})"
    else:
        objective = (
            f"the highest throughput whose p99 <= {settings.slo_p99_ms:g} ms, at any of"
            f" concurrencies {shown}"
        )
    return {
        "objective": objective,
        "slo_p99_ms": settings.slo_p99_ms,
        "concurrency": list(levels),
        "duration_s": settings.duration_s,
        "warmup_s": settings.warmup_s,
        "encoding": "binary" if settings.binary else "json",
        "input": None if settings.input_file is None else str(settings.input_file),
        "margin": settings.margin,
        "load": "closed loop, `shipyard bench`'s HTTP generator in its own process",
    }


def _winner(
    settings: TuneSettings, base: Baseline, exploration: Exploration, decision: Decision
) -> dict[str, Any]:
    objective = settings.objective
    winner = decision.winner
    return {
        "id": winner.id,
        "label": winner.candidate.label(),
        "candidate": winner.candidate.to_dict(),
        "score": _score_dict(objective.score(winner.points), objective),
        "points": _points(winner),
        "changes": settings_changes(winner.candidate, base),
        "kept_current_settings": winner.id == exploration.baseline.id,
        "noise": decision.noise,
        "margin": decision.margin,
        "why": decision.why,
    }


def _created(now: datetime.datetime) -> str:
    return now.isoformat(timespec="seconds")


def build_report(
    *,
    name: str,
    version: int,
    settings: TuneSettings,
    hardware: HardwareReport,
    base: Baseline,
    exploration: Exploration,
    decision: Decision,
    publication: Publication,
    now: datetime.datetime,
) -> dict[str, Any]:
    """``tune-report.json`` of a finished run (``version``: the version tuned)."""
    objective = settings.objective
    items = [
        ((t.id, p.concurrency), p.rps, float(p.p99_ms))
        for t in exploration.trials
        for p in t.points or []
        if p.ok and p.p99_ms is not None
    ]
    front = pareto_front(items)
    on_front = {trial_id for trial_id, _c in front}
    by_key = {key: (rps, p99) for key, rps, p99 in items}
    finalists = {t.id for t in exploration.finalists}
    candidates = [
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
            "score": _score_dict(objective.score(trial.points), objective),
            "pareto": trial.id in on_front,
            "finalist": trial.id in finalists,
            "winner": trial.id == decision.winner.id,
            "baseline": trial.id == exploration.baseline.id,
        }
        for trial in exploration.trials
    ]
    return {
        "schema": SCHEMA,
        "shipyard_version": __version__,
        "created": _created(now),
        "step": "tune",
        "model": name,
        "version": version,
        "goal": _goal(settings),
        "budget": {
            "budget_s": settings.budget_s,
            "used_s": round(exploration.elapsed_s, 1),
            "candidates": len(exploration.trials),
            "search": "converged" if exploration.converged else "stopped by the time budget",
        },
        "hardware": hardware.summary(),
        "variants": [v.to_dict() for v in exploration.variants.values()],
        "pruned_variants": exploration.pruned,
        "candidates": candidates,
        "engines": _engines(candidates),
        "pareto_front": [
            {
                "candidate": trial_id,
                "concurrency": c,
                "rps": round(by_key[(trial_id, c)][0], 3),
                "p99_ms": round(by_key[(trial_id, c)][1], 4),
            }
            for trial_id, c in front
        ],
        "met_slo": decision.met_slo,
        "winner": _winner(settings, base, exploration, decision),
        "notes": list(exploration.notes),
        "decision": publication.summary,
        "written": {
            "model_toml": bool(publication.settings),
            "settings": publication.settings,
            "version": publication.version,
        },
    }


def _engines(candidates: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The best measured candidate of each engine (ONNX Runtime, OpenVINO), best first."""
    best: dict[str, dict[str, Any]] = {}
    for row in candidates:
        engine = "OpenVINO" if row["candidate"]["provider"] == OPENVINO else "ONNX Runtime"
        score = row["score"]
        if row["status"] != "measured":
            continue
        held = best.get(engine)
        if held is None or _key(score) > _key(held["score"]):
            best[engine] = {
                "engine": engine,
                "candidate": row["id"],
                "label": row["label"],
                "score": score,
            }
    return sorted(best.values(), key=lambda e: _key(e["score"]), reverse=True)


def _key(score: dict[str, Any]) -> tuple[int, float]:
    if score["ranked_by"] == "rps":
        return (int(score["tier"]), float(score["rps"]))
    return (int(score["tier"]), -float(score["p99_ms"] or 0.0))


def version_report(
    *,
    settings: TuneSettings,
    hardware: HardwareReport,
    base: Baseline,
    exploration: Exploration,
    decision: Decision,
    variant: Variant,
    source_version: int,
    baseline_version: int,
    source_bytes: int,
    now: datetime.datetime,
) -> dict[str, Any]:
    """The ``report.json`` of the winning ``variant`` published as a new version."""
    return {
        "created": _created(now),
        "shipyard_version": __version__,
        "step": "tune",
        "optimization": {
            "source_version": source_version,
            "baseline_version": baseline_version,
            **variant.details,
        },
        "accuracy": variant.accuracy,
        "size": {"before_bytes": source_bytes, "after_bytes": variant.size_bytes},
        "tuning": {
            "goal": _goal(settings),
            "winner": _winner(settings, base, exploration, decision),
            "report": "tune-report.json in the model folder",
        },
        "hardware": hardware.summary(),
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
    for engine in report.get("engines", []):
        console.print(
            f"best on {engine['engine']}: #{engine['candidate']} {engine['label']}:"
            f" {engine['score']['summary']}",
            highlight=False,
        )
    verdict = report["met_slo"]
    if verdict is False:
        console.print(f"[red]SLO not met[/]: {report['winner']['why']}", highlight=False)
    else:
        console.print(f"[green]winner[/]: {report['winner']['why']}", highlight=False)
    console.print(f"decision: {report['decision']}")
    for note in report["notes"]:
        console.print(f"note: {note}")
