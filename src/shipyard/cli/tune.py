"""``shipyard tune REPO/NAME``: tune a model's variant and serving settings by serving them."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from shipyard.cli.common import console, fail, guard_options, split_target
from shipyard.errors import ShipyardError

__all__ = ["tune_command"]


@click.command("tune")
@click.argument("target", metavar="REPO/NAME")
@click.option("--version", "version", type=click.IntRange(1), help="Version [default: latest].")
@click.option("--slo-p99-ms", type=float, help="Latency target: p99 in ms [default: none].")
@click.option(
    "--concurrency",
    "concurrency",
    multiple=True,
    metavar="N[,N...]",
    help="Requests in flight to measure at (repeatable)"
    " [default: 1,8,64; 1,8 for a budget under 1 minute].",
)
@click.option("--budget-minutes", type=float, default=5.0, show_default=True)
@click.option(
    "--duration", type=float, default=2.0, show_default=True, help="Seconds per measured point."
)
@click.option(
    "--variants",
    default="fp32,optimized,int8-static,int8-dynamic,fp16",
    show_default=True,
    help="Model variants to compare (fp32 is always measured).",
)
@guard_options
@click.option(
    "--input",
    "input_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="A .npz of request inputs, as `shipyard bench --input`.",
)
@click.option(
    "--report-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Where tune-report.json/.html go [default: the model folder].",
)
@click.option("--force", is_flag=True, help="Write the best found even if it misses the SLO.")
@click.option("--dry-run", is_flag=True, help="Measure and report; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def tune_command(
    target: str,
    concurrency: tuple[str, ...],
    budget_minutes: float,
    duration: float,
    variants: str,
    input_file: Path | None,
    as_json: bool,
    **options: Any,
) -> None:
    """Tune REPO/NAME's variant and serving settings by serving them (see docs/tune.md)."""
    import json

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from shipyard.tuning import TuneProgress, TuneSettings, tune
    from shipyard.tuning.report import print_tune

    repo_path, name = split_target(target)
    try:
        levels = tuple(int(part) for text in concurrency for part in text.split(",") if part)
    except ValueError:
        fail(f"--concurrency {','.join(concurrency)!r}: expected integers, e.g. 1,8,64")
    status = Console(stderr=True, highlight=False)
    try:
        settings = TuneSettings(
            concurrency=levels,
            budget_s=budget_minutes * 60,
            duration_s=duration,
            variants=tuple(v.strip() for v in variants.split(",") if v.strip()),
            input_file=input_file,
            **options,
        )
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(bar_width=24),
            TimeElapsedColumn(),
            console=status,
            transient=True,
            refresh_per_second=4,
        ) as bar:
            task = bar.add_task("tuning", total=settings.budget_s)

            def show(p: TuneProgress) -> None:
                bar.update(
                    task,
                    completed=min(p.elapsed_s, p.budget_s),
                    description=f"{p.step[:70]}  [dim]best: {p.best[:60]}[/]",
                )

            result = tune(repo_path, name, settings, progress=show)
    except ShipyardError as exc:
        fail(exc.message)
    if as_json:
        click.echo(json.dumps(result.report, indent=2))
    else:
        if not console.is_terminal:
            console.width = max(console.width, 160)
        print_tune(console, result.report)
        console.print(f"report: {result.report_html}")
    if result.exit_code:
        click.echo(f"error: {result.decision.why}", err=True)
        sys.exit(result.exit_code)
