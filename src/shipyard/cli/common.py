"""What every ``shipyard`` command shares: the console, one-line errors, REPO/NAME, the guard's
options and the models table."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
from rich.console import Console
from rich.table import Table

__all__ = [
    "API_KEYS_OPTION",
    "GUARD_OPTIONS",
    "TLS_CLIENT_CA_OPTION",
    "TLS_KEY_OPTION",
    "console",
    "fail",
    "guard_options",
    "print_model_table",
    "split_location",
    "split_target",
]

# soft_wrap: URLs and commands stay on one line when the output is not a terminal.
console = Console(stderr=False, highlight=False, soft_wrap=True)

_F = TypeVar("_F", bound=Callable[..., Any])

#: ``--api-keys``, ``--tls-key`` and ``--tls-client-ca``: the same files, read the same way,
#: for ``serve`` and ``ray serve`` (docs/security.md, docs/ray.md).
API_KEYS_OPTION = click.option(
    "--api-keys",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="TOML file of API keys with roles (make one with `shipyard keys new`).",
)
TLS_KEY_OPTION = click.option(
    "--tls-key", type=click.Path(path_type=Path, dir_okay=False), default=None, help="PEM key."
)
TLS_CLIENT_CA_OPTION = click.option(
    "--tls-client-ca",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="PEM CA: require client certificates it signed (mutual TLS).",
)

#: The accuracy guard's options, shared by ``optimize`` and ``tune`` (same names, same rules).
GUARD_OPTIONS = (
    click.option("--calibration", type=click.Path(path_type=Path), help="int8-static data (.npz)."),
    click.option("--validation", type=click.Path(path_type=Path), help="Guard data (.npz)."),
    click.option(
        "--metric",
        type=click.Choice(["accuracy", "top1-agreement", "cosine", "max-abs"]),
        help="Accuracy guard metric [default: accuracy with labels, else top1-agreement/cosine].",
    ),
    click.option("--max-drop", type=click.FloatRange(0), default=0.01, show_default=True),
)


def guard_options(command: _F) -> _F:
    """Add the accuracy guard's options to ``command``, in help order."""
    for option in reversed(GUARD_OPTIONS):
        command = option(command)
    return command


def fail(message: str) -> NoReturn:
    """Print ``error: message`` on stderr and exit with status 2 (bad input, nothing done)."""
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


def split_target(target: str) -> tuple[Path, str]:
    """Split ``REPO/NAME`` (a model folder in a repository) into the repository and the name."""
    repo_path, name = split_location(target)
    return Path(repo_path), name


def split_location(target: str) -> tuple[str, str]:
    """Split ``REPO/NAME`` where REPO may be a store URL (``s3://bucket/prefix/NAME``)."""
    repo_path, _, name = target.rstrip("/").rpartition("/")
    if not repo_path or not name or repo_path.endswith(":/"):
        fail(
            f"expected REPO/NAME (e.g. models/resnet or s3://bucket/models/resnet), got {target!r}"
        )
    return repo_path, name


def _shapes(specs: list[dict[str, Any]]) -> str:
    return ", ".join(f"{s['name']} {s['datatype']}{s['shape']}" for s in specs) or "-"


def print_model_table(rows: list[dict[str, Any]]) -> None:
    """Print the models table (name, versions, state, inputs, outputs), then its warnings."""
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
    if not console.is_terminal:  # logs and pipes: one line per model, not 80-column wraps
        console.width = max(console.width, 160)
    console.print(table)
    for row in rows:
        for warning in row.get("warnings", ()):
            console.print(f"[yellow]warning:[/] {row['name']} {warning}")
