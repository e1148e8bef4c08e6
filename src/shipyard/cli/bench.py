"""``shipyard bench URL``: load-test a model on any Open Inference Protocol server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.console import Console

from shipyard.cli.common import console, fail
from shipyard.errors import ShipyardError

__all__ = ["bench_command"]


@click.command("bench")
@click.argument("url")
@click.option("--model", required=True, help="Model name on the server.")
@click.option(
    "--version", "model_version", default=None, help="Model version [default: the server's]."
)
@click.option(
    "--protocol",
    type=click.Choice(["http", "grpc"]),
    default=None,
    help="[default: grpc for grpc:// URLs, else http]",
)
@click.option("--binary", is_flag=True, help="HTTP: binary tensors in and out instead of JSON.")
@click.option(
    "--concurrency",
    default=None,
    metavar="N[,N...]",
    help="Requests in flight (closed loop), or the max outstanding with --rate "
    "[default: 1,8,64; 64 with --rate].",
)
@click.option("--rate", default=None, metavar="R[,R...]", help="Open loop: requests/s.")
@click.option(
    "--tick",
    type=float,
    default=0.0,
    show_default=True,
    metavar="MS",
    help="Open loop: wake at most every MS ms and send what is due; 0 sends each request at "
    "its time, which keeps a core busy at thousands of req/s.",
)
@click.option("--duration", type=float, default=10.0, show_default=True, help="Seconds per row.")
@click.option("--warmup", type=float, default=1.0, show_default=True, help="Seconds not recorded.")
@click.option(
    "--input",
    "arrays_file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="A .npz whose arrays, named after the inputs, are sent as they are.",
)
@click.option("--shape", "shapes", multiple=True, metavar="NAME:DIMS", help="e.g. input:1,1,28,28.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of a table.")
def bench_command(
    url: str,
    model: str,
    model_version: str | None,
    protocol: str | None,
    concurrency: str | None,
    rate: str | None,
    shapes: tuple[str, ...],
    as_json: bool,
    **options: Any,
) -> None:
    """Load-test MODEL on any Open Inference Protocol server at URL (see docs/bench.md)."""
    import json

    from shipyard.loadgen.bench import BenchPlan, run_bench
    from shipyard.loadgen.inputs import parse_shapes
    from shipyard.loadgen.report import bench_table, error_lines

    def numbers(text: str, kind: type[int] | type[float], flag: str) -> tuple[Any, ...]:
        try:
            return tuple(kind(part) for part in text.split(","))
        except ValueError:
            fail(f"{flag} {text!r}: expected comma-separated numbers, e.g. 1,8,64")

    rates = numbers(rate, float, "--rate") if rate else ()
    levels = numbers(concurrency, int, "--concurrency") if concurrency else None
    if protocol is None:
        protocol = "grpc" if url.startswith("grpc://") else "http"
    elif protocol == "http" and url.startswith("grpc://"):
        fail(f"{url} is a gRPC URL; pass --protocol grpc or an http:// URL")
    status = Console(stderr=True, highlight=False)
    try:
        plan = BenchPlan(
            url=url,
            model=model,
            version=model_version,
            protocol=protocol,
            concurrency=levels or ((64,) if rates else (1, 8, 64)),
            rates=rates,
            duration_s=options["duration"],
            warmup_s=options["warmup"],
            tick_ms=options["tick"],
            binary=options["binary"],
            arrays_file=options["arrays_file"],
            shapes=parse_shapes(shapes),
        )
        with status.status("connecting...") as spinner:
            result = run_bench(plan, progress=lambda text: spinner.update(f"{text}..."))
    except ShipyardError as exc:
        fail(exc.message)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
        return
    console.print(bench_table(result))
    for line in error_lines(result):
        console.print(line, markup=False)
