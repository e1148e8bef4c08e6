"""``shipyard keys new``: make an API key, print it once and the line for the key file."""

from __future__ import annotations

import re

import click

from shipyard.cli.common import console, fail
from shipyard.server.auth import Role, hash_key, new_key

__all__ = ["keys"]

#: A key's name: what logs show for its calls.
_NAME = re.compile(r"[A-Za-z0-9_.@-]{1,64}")


@click.group()
def keys() -> None:
    """Make API keys for `shipyard serve --api-keys FILE`."""


@keys.command("new")
@click.option("--name", required=True, help="Who the key is for (letters, digits, _.@-).")
@click.option(
    "--role",
    "roles",
    multiple=True,
    required=True,
    type=click.Choice([role.value for role in Role]),
    help="What the key may do (repeatable): infer, admin or metrics.",
)
def new_command(name: str, roles: tuple[str, ...]) -> None:
    """Print a new key once, and the [[key]] table to add to the key file.

    The file stores only the key's SHA-256, so the key itself cannot be shown again.
    """
    if not _NAME.fullmatch(name):
        fail(f"--name {name!r}: use 1 to 64 letters, digits, '_', '.', '@' or '-'")
    key = new_key()
    listed = ", ".join(f'"{role}"' for role in dict.fromkeys(roles))
    console.print(f"New API key for {name!r}. It is shown only now: give it to its holder.")
    console.print()
    console.print(f"  {key}", markup=False)
    console.print()
    console.print("Add this to the key file (shipyard serve --api-keys FILE), then restart:")
    console.print()
    console.print(
        f'[[key]]\nname = "{name}"\nsha256 = "{hash_key(key)}"\nroles = [{listed}]',
        markup=False,
    )
