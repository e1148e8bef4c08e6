"""The ``shipyard`` command: parse arguments, call the library, print the result."""

from __future__ import annotations

import asyncio
import gc
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from shipyard import __version__
from shipyard.config import LOG_LEVELS, ServerConfig
from shipyard.errors import ShipyardError
from shipyard.log import configure_logging

__all__ = ["main"]

console = Console(stderr=False, highlight=False)


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


def _shapes(specs: list[dict[str, Any]]) -> str:
    return ", ".join(f"{s['name']} {s['datatype']}{s['shape']}" for s in specs) or "-"


def print_model_table(rows: list[dict[str, Any]]) -> None:
    """Print the models table (name, versions, state, inputs, outputs)."""
    table = Table(title="Models", title_justify="left")
    for column in ("name", "versions", "state", "inputs", "outputs"):
        table.add_column(column)
    for row in rows:
        state = row["state"] if not row.get("reason") else f"{row['state']}: {row['reason']}"
        table.add_row(
            row["name"],
            ", ".join(row["versions"]) or "-",
            state,
            _shapes(row["inputs"]),
            _shapes(row["outputs"]),
        )
    console.print(table)


@click.group()
@click.version_option(__version__, prog_name="shipyard")
def main() -> None:
    """Shipyard: serve trained models over the Open Inference Protocol (KServe V2)."""


@main.command()
@click.argument("repository", type=click.Path(path_type=Path))
@click.option("--host", default=None, help="Address to listen on [default: 127.0.0.1].")
@click.option(
    "--http-port", type=int, default=None, help="HTTP port; 0 picks a free one [default: 8000]."
)
@click.option(
    "--grpc-port", type=int, default=None, help="gRPC port; 0 turns gRPC off [default: 8001]."
)
@click.option("--model", "models", multiple=True, help="Load only this model (repeatable).")
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="A TOML file with a [server] table.",
)
@click.option(
    "--max-request-bytes", type=int, default=None, help="Largest request body [default: 64 MiB]."
)
@click.option(
    "--drain-timeout",
    "drain_timeout_s",
    type=float,
    default=None,
    help="Seconds in-flight requests get on shutdown [default: 30].",
)
@click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS),
    default=None,
    help="Log verbosity [default: info].",
)
def serve(repository: Path, config_file: Path | None, **flags: Any) -> None:
    """Serve every model in REPOSITORY over HTTP and gRPC until SIGINT/SIGTERM."""
    from shipyard.server.app import ShipyardServer

    flags["models"] = flags["models"] or None
    try:
        config = ServerConfig.resolve(config_file, flags={"repository": repository, **flags})
    except ShipyardError as exc:
        _fail(exc.message)
    configure_logging(config.log_level)

    def ready(info: Any) -> None:
        console.print(f"Shipyard {__version__} serving {config.repository}")
        console.print(
            f"  HTTP  {info.http_url}   (Open Inference Protocol v2, metrics at /metrics)"
        )
        if info.grpc_url:
            console.print(f"  gRPC  {info.grpc_url}   (inference.GRPCInferenceService)")
        print_model_table(info.models)
        name = next((r["name"] for r in info.models if r["versions"]), "<model>")
        console.print(f"Try: curl {info.http_url}/v2/models/{name}")
        console.print("Press Ctrl-C to stop.")
        # What is loaded by now lives as long as the process: keep it out of the cyclic GC's
        # scans, or each full collection walks it again, stalling requests for tens of ms
        # under load (benchmarks/RESULTS.md, "Where the time goes").
        gc.freeze()

    server = ShipyardServer(config)
    try:
        _run(server.serve(on_ready=ready))
    except ShipyardError as exc:
        _fail(exc.message)
    except KeyboardInterrupt:
        pass


@main.group()
def repo() -> None:
    """Inspect a model repository."""


@repo.command("list")
@click.argument("repository", type=click.Path(path_type=Path))
def repo_list(repository: Path) -> None:
    """Load every model in REPOSITORY (without serving) and print their table."""
    from shipyard.server.app import describe_repository

    try:
        rows = asyncio.run(describe_repository(ServerConfig(repository=repository)))
    except ShipyardError as exc:
        _fail(exc.message)
    print_model_table(rows)


@main.command("convert")
@click.argument("source")
@click.option("--name", required=True, help="Model name in the repository.")
@click.option("--repo", "repo_path", required=True, type=click.Path(path_type=Path))
@click.option(
    "--framework",
    type=click.Choice(["torch", "keras", "tensorflow", "sklearn", "onnx"]),
    help="Source framework [default: detected from SOURCE].",
)
@click.option("--to", type=click.Choice(["onnx", "tflite"]), default="onnx", show_default=True)
@click.option("--input", "inputs", multiple=True, help="NAME:DATATYPE:DIMS, e.g. x:FP32:-1,4.")
@click.option("--sample", type=click.Path(path_type=Path), help="Parity inputs (.npz).")
@click.option("--opset", type=click.IntRange(7), help="ONNX opset [default: the exporter's].")
@click.option("--trust-pickle", is_flag=True, help="Allow loading pickle/joblib files.")
@click.option("--weights", type=click.Path(path_type=Path), help="State dict for a factory.")
@click.option("--exporter", type=click.Choice(["dynamo", "legacy"]), help="PyTorch exporter.")
@click.option("--allow-mismatch", is_flag=True, help="Publish even if parity fails.")
@click.option("--atol", type=float, default=1e-4, show_default=True, help="Parity abs. tol.")
@click.option("--rtol", type=float, default=1e-3, show_default=True, help="Parity rel. tol.")
@click.option("--verbose", is_flag=True, help="Show the full converter error.")
def convert_command(
    source: str, repo_path: Path, atol: float, rtol: float, verbose: bool, **options: Any
) -> None:
    """Convert SOURCE to ONNX, check parity, publish REPO/NAME/<next version>/."""
    from shipyard.convert import Tolerances, convert
    from shipyard.convert.render import print_report
    from shipyard.errors import ConversionError, ParityError

    try:
        with console.status("converting...") as status:
            result = convert(
                source,
                repo=repo_path,
                tolerances=Tolerances(atol, rtol),
                progress=lambda text: status.update(f"{text}..."),
                **options,
            )
    except ParityError as exc:
        print_report(console, exc.report)
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except ConversionError as exc:
        if verbose and exc.detail:
            click.echo(exc.detail, err=True)
        _fail(str(exc))
    except ShipyardError as exc:
        _fail(exc.message)
    except Exception as exc:  # a converter bug we did not anticipate: still one line
        if verbose:
            console.print_exception()
        _fail(f"conversion failed: {type(exc).__name__}: {exc}; rerun with --verbose for details")
    print_report(console, result.report)
    console.print(f"published {result.path} (version {result.version})")


def _run(coro: Any) -> None:
    """Run ``coro`` on uvloop when it is installed, else on asyncio's default loop."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
    else:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(coro)
