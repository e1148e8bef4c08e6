"""``shipyard convert SOURCE``: convert a trained model to ONNX or TFLite and publish it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from shipyard.cli.common import console, fail
from shipyard.errors import ShipyardError

__all__ = ["convert_command"]


@click.command("convert")
@click.argument("source")
@click.option("--name", required=True, help="Model name in the repository.")
@click.option(
    "--repo",
    "repo_path",
    required=True,
    help="Repository folder or store URL (s3://bucket/prefix).",
)
@click.option(
    "--framework",
    type=click.Choice(["torch", "keras", "tensorflow", "sklearn", "onnx"]),
    help="Source framework [default: detected from SOURCE].",
)
@click.option("--to", type=click.Choice(["onnx", "tflite"]), default="onnx", show_default=True)
@click.option(
    "--quantize",
    type=click.Choice(["float32", "int8"]),
    default="float32",
    show_default=True,
    help="TFLite weights; int8 calibrates on --sample.",
)
@click.option("--input", "inputs", multiple=True, help="NAME:DATATYPE:DIMS, e.g. x:FP32:-1,4.")
@click.option("--sample", type=click.Path(path_type=Path), help="Parity inputs (.npz).")
@click.option("--opset", type=click.IntRange(7), help="ONNX opset [default: the exporter's].")
@click.option("--trust-pickle", is_flag=True, help="Allow loading pickle/joblib files.")
@click.option("--weights", type=click.Path(path_type=Path), help="State dict for a factory.")
@click.option(
    "--custom-objects",
    type=click.Path(path_type=Path),
    help="Keras: a .py file defining the model's custom classes (it is run).",
)
@click.option("--exporter", type=click.Choice(["dynamo", "legacy"]), help="PyTorch exporter.")
@click.option("--allow-mismatch", is_flag=True, help="Publish even if parity fails.")
@click.option("--atol", type=float, help="Parity abs. tol. [default: 1e-4; int8: 5% of range]")
@click.option("--rtol", type=float, help="Parity rel. tol. [default: 1e-3; int8: 0.05]")
@click.option("--verbose", is_flag=True, help="Show the full converter error.")
def convert_command(
    source: str,
    repo_path: str,
    atol: float | None,
    rtol: float | None,
    verbose: bool,
    **options: Any,
) -> None:
    """Convert SOURCE to ONNX or TFLite, check parity, publish REPO/NAME/<next version>/."""
    from shipyard.convert import Tolerances, convert
    from shipyard.convert.render import print_report
    from shipyard.convert.validate import INT8_TOLERANCES
    from shipyard.errors import ConversionError, ParityError
    from shipyard.repository.stores import publication_repository

    default = INT8_TOLERANCES if options["quantize"] == "int8" else Tolerances()
    tolerances = Tolerances(
        default.atol if atol is None else atol,
        default.rtol if rtol is None else rtol,
        default.range_relative,
    )
    try:
        with (
            publication_repository(repo_path, options["name"]) as target,
            console.status("converting...") as status,
        ):
            result = convert(
                source,
                repo=target.root,
                tolerances=tolerances,
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
        fail(str(exc))
    except ShipyardError as exc:
        fail(exc.message)
    except Exception as exc:  # a converter bug we did not anticipate: still one line
        if verbose:
            console.print_exception()
        fail(f"conversion failed: {type(exc).__name__}: {exc}; rerun with --verbose for details")
    print_report(console, result.report)
    version, where = target.describe(options["name"], result.version, result.path)
    console.print(f"published {where} (version {version})")
