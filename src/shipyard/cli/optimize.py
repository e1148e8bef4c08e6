"""``shipyard optimize REPO/NAME``: optimize a model, guard it, publish it as the next version."""

from __future__ import annotations

import sys
from typing import Any

import click

from shipyard.cli.common import console, fail, guard_options, split_location
from shipyard.errors import ShipyardError

__all__ = ["optimize_command"]


@click.command("optimize")
@click.argument("target", metavar="REPO/NAME")
@click.option("--version", "version", type=click.IntRange(1), help="Version [default: latest].")
@click.option(
    "--quantize",
    "method",
    type=click.Choice(["none", "int8-dynamic", "int8-static", "fp16", "bf16"]),
    default="none",
    show_default=True,
    help="none: graph optimization only; bf16: OpenVINO IR computing in bf16 (AMX/AVX-512 BF16).",
)
@guard_options
@click.option(
    "--objective",
    type=click.Choice(["latency", "throughput", "size"]),
    default="latency",
    show_default=True,
    help="What the candidate must be measurably better at on this machine to be published.",
)
@click.option("--force", is_flag=True, help="Publish even if not better at the objective.")
@click.option(
    "--reduce-range",
    type=click.Choice(["auto", "on", "off"]),
    default="auto",
    show_default=True,
    help="int8: 7-bit weights; auto: on x86 without VNNI/AMX, where full-range ones saturate.",
)
@click.option("--per-tensor", is_flag=True, help="Quantize weights per tensor, not per channel.")
@click.option(
    "--graph-level", type=click.Choice(["basic", "extended"]), default="extended", show_default=True
)
@click.option(
    "--bench-seconds",
    type=click.FloatRange(0.05),
    default=1.0,
    show_default=True,
    help="Seconds per benchmark phase (latency, throughput) and round.",
)
@click.option(
    "--bench-rounds",
    type=click.IntRange(1),
    default=3,
    show_default=True,
    help="Interleaved benchmark rounds; their spread is the speed guard's noise margin.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def optimize_command(
    target: str,
    per_tensor: bool,
    bench_seconds: float,
    bench_rounds: int,
    as_json: bool,
    **options: Any,
) -> None:
    """Optimize REPO/NAME, guard accuracy and speed, publish it as the next version."""
    import json

    from shipyard.errors import ConversionError
    from shipyard.optimize import BenchmarkSettings, optimize
    from shipyard.optimize.report import print_optimization
    from shipyard.repository.stores import publication_repository

    repo_path, name = split_location(target)
    settings = BenchmarkSettings(
        latency_seconds=bench_seconds, throughput_seconds=bench_seconds, rounds=bench_rounds
    )
    try:
        with (
            publication_repository(repo_path, name) as publication,
            console.status("optimizing...") as status,
        ):
            result = optimize(
                publication.root,
                name,
                per_channel=not per_tensor,
                benchmark=settings,
                progress=lambda text: status.update(f"{text}..."),
                **options,
            )
    except ConversionError as exc:
        fail(str(exc))
    except ShipyardError as exc:
        fail(exc.message)
    except Exception as exc:  # a tool bug we did not anticipate: still one line
        fail(f"optimization failed: {type(exc).__name__}: {exc}")
    if as_json:
        click.echo(json.dumps({"published": result.published, **result.report}, indent=2))
    else:
        print_optimization(console, result.report)
        if result.version is not None and result.path is not None:
            version, where = publication.describe(name, result.version, result.path)
            console.print(f"published {where} (version {version})")
    if not result.published:
        click.echo(f"error: {result.report['decision']}", err=True)
        sys.exit(1)
