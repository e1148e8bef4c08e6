"""The parity report as a rich table, for ``shipyard convert``."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

__all__ = ["print_report"]

_RUNTIMES = {"onnx": "ONNX Runtime", "tflite": "LiteRT"}


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def print_report(console: Console, report: dict[str, Any]) -> None:
    """Print one row per output: errors, mismatches, top-1 agreement and the verdict."""
    parity = report["parity"]
    tol = parity["tolerances"]
    table = Table(
        title=(
            f"Parity: {report['framework']} vs {_RUNTIMES.get(str(report.get('target')), '?')}"
            f" on {parity['inputs_from']}"
            f" inputs (batch {parity['batch']}; atol {tol['atol']:g}"
            f"{' x range' if tol.get('range_relative') else ''}, rtol {tol['rtol']:g})"
        ),
        title_justify="left",
    )
    for column in ("output", "shape", "max abs err", "max rel err", "mismatched", "top-1", ""):
        table.add_column(column)
    for row in parity["outputs"]:
        top1 = row["top1_agreement"]
        table.add_row(
            f"{row['name']} {row['datatype']}",
            str(row["shape"]),
            _number(row["max_abs_error"]),
            _number(row["max_rel_error"]),
            f"{row['mismatched']}/{row['elements']}",
            "-" if top1 is None else f"{top1:.1%}",
            ("[green]ok[/]" if row["passed"] else "[red]FAIL[/]")
            + (f" ({row['note']})" if row.get("note") else ""),
        )
    console.print(table)
    verdict = "[green]parity: passed[/]" if parity["passed"] else "[red]parity: FAILED[/]"
    console.print(verdict)
