"""``shipyard repo``: inspect a model repository."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from shipyard.cli.common import fail, print_model_table
from shipyard.config import ServerConfig
from shipyard.errors import ShipyardError

__all__ = ["repo"]


@click.group()
def repo() -> None:
    """Inspect a model repository."""


@repo.command("list")
@click.argument("repository", type=click.Path(path_type=Path))
@click.option(
    "--allow-python-models",
    is_flag=True,
    help="Load Python models too (runs their model.py and Python steps, as serve does).",
)
def repo_list(repository: Path, allow_python_models: bool) -> None:
    """Load every model in REPOSITORY (without serving) and print their table."""
    from shipyard.server.app import describe_repository

    config = ServerConfig(repository=repository, allow_python_models=allow_python_models)
    try:
        rows = asyncio.run(describe_repository(config))
    except ShipyardError as exc:
        fail(exc.message)
    print_model_table(rows)
