"""``shipyard repo``: inspect a model repository, and push one to an object store."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from shipyard.cli.common import console, fail, print_model_table
from shipyard.config import ServerConfig
from shipyard.errors import ShipyardError

__all__ = ["repo"]


@click.group()
def repo() -> None:
    """Inspect a model repository, or push one to an object store."""


_CACHE_DIR = click.option(
    "--cache-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Local cache for a store URL [default: ~/.cache/shipyard/repositories].",
)


@repo.command("list")
@click.argument("repository")
@_CACHE_DIR
@click.option(
    "--allow-python-models",
    is_flag=True,
    help="Load Python models too (runs their model.py and Python steps, as serve does).",
)
def repo_list(repository: str, cache_dir: Path | None, allow_python_models: bool) -> None:
    """Load every model in REPOSITORY (a folder or s3://... URL) and print their table."""
    from shipyard.server.app import describe_repository

    try:
        flags = {
            "repository": repository,
            "cache_dir": cache_dir,
            "allow_python_models": allow_python_models,
        }
        config = ServerConfig.resolve(env={}, flags=flags)
        rows = asyncio.run(describe_repository(config))
    except ShipyardError as exc:
        fail(exc.message)
    print_model_table(rows)


@repo.command("push")
@click.argument("local", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.argument("url")
@click.option("--model", "models", multiple=True, help="Push only this model (repeatable).")
def repo_push(local: Path, url: str, models: tuple[str, ...]) -> None:
    """Upload the local repository LOCAL to the store URL, each version's marker last.

    Versions the store already holds with the same files are skipped; credentials come from
    the standard AWS environment and config.
    """
    from shipyard.repository.stores import push_repository

    try:
        pushed = push_repository(local, url, models)
    except ShipyardError as exc:
        fail(exc.message)
    for name, versions in pushed.items():
        done = ", ".join(map(str, versions)) or "nothing new"
        console.print(f"{name}: {done} -> {url.rstrip('/')}/{name}")
