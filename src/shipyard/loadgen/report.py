"""``shipyard bench``'s table: one row per measurement, errors by status, its own CPU."""

from __future__ import annotations

from rich import box
from rich.table import Table

from shipyard.loadgen.bench import BenchResult
from shipyard.loadgen.stats import Summary

__all__ = ["bench_table", "error_lines"]


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _errors(row: Summary) -> str:
    return ", ".join(f"{status}: {count}" for status, count in row.errors.items()) or "0"


def bench_table(result: BenchResult) -> Table:
    """The rows of ``result`` as a rich table."""
    plan = result.plan
    shapes = ", ".join(f"{n} {d.value}{list(a.shape)}" for n, d, a in result.inputs)
    title = (
        f"{result.target} model {plan.model}"
        + (f" version {plan.version}" if plan.version else "")
        + f", {plan.protocol} {plan.encoding}, {shapes}; {plan.duration_s:g} s per row after "
        f"{plan.warmup_s:g} s warm-up"
    )
    open_loop = bool(plan.rates)
    caption = "latency in ms; CPU: the load generator's own (client CPU, 100% = one core)"
    if open_loop:
        caption += "; max out.: the max outstanding requests; missed: scheduled, never sent"
    table = Table(
        title=title,
        title_justify="left",
        caption=caption,
        caption_justify="left",
        box=box.SIMPLE_HEAD,
    )
    columns = ["max out.", "rate/s"] if open_loop else ["conc."]
    columns += ["requests", "req/s", "p50", "p90", "p99", "max", "errors"]
    columns += ["missed"] if open_loop else []
    columns += ["CPU"]
    for column in columns:
        table.add_column(column, justify="left" if column == "errors" else "right")
    for row in result.rows:
        cells = [str(row.concurrency)]
        cells += [f"{row.rate:g}"] if open_loop and row.rate else []
        cells += [f"{row.requests:,}", f"{row.rps:,.0f}", _ms(row.p50_ms), _ms(row.p90_ms)]
        cells += [_ms(row.p99_ms), _ms(row.max_ms), _errors(row)]
        cells += [f"{row.missed:,}"] if open_loop else []
        cells += [f"{row.client_cpu:.0%}"]
        table.add_row(*cells)
    return table


def error_lines(result: BenchResult) -> list[str]:
    """The first error of each row that had any, for the lines under the table."""
    return [
        f"concurrency {row.concurrency}: first error: {row.first_error[:300]}"
        for row in result.rows
        if row.first_error
    ]
