"""Where settings come from, and the checks every raw value goes through.

Server settings resolve as defaults < config file (its ``[server]`` table) < environment
(``SHIPYARD_<FIELD>``) < command-line flags (:func:`layered`); model settings come from
``model.toml`` alone. Unknown keys are errors wherever they come from, so a typo never silently
falls back to a default.
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from shipyard.errors import ConfigError

__all__ = ["check_bool", "check_int", "check_keys", "check_number", "check_table", "layered"]


def check_keys(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    """Raise ConfigError naming the keys of ``table`` that are not ``allowed``."""
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}"
        )


#: How the environment spells a switch (``SHIPYARD_UI=0``), case-insensitively.
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def check_bool(value: Any, where: str) -> bool:
    """Return ``value`` as a bool: a bool, or a string from the environment (``1``/``0``,
    ``true``/``false``, ``yes``/``no``, ``on``/``off``); anything else raises ConfigError."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise ConfigError(f"{where} must be true or false (or 1/0, yes/no, on/off), got {value!r}")


def check_int(value: Any, where: str, minimum: int = 0) -> int:
    """Return ``value`` if it is an integer (not a bool) >= ``minimum``, else raise ConfigError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{where} must be an integer >= {minimum}, got {value!r}")
    return value


def check_number(value: Any, where: str, minimum: float = 0.0) -> float:
    """Return ``value`` as a float if it is a finite number (not a bool) >= ``minimum``."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < minimum
    ):
        raise ConfigError(f"{where} must be a number >= {minimum:g}, got {value!r}")
    return float(value)


def check_table(value: Any, where: str) -> Mapping[str, Any]:
    """Return ``value`` if it is a table (a mapping), else raise ConfigError."""
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} must be a table, got {value!r}")
    return value


def layered(
    names: Iterable[str],
    file: Path | None = None,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Merge the raw values of ``names``: ``file``'s [server] table < ``SHIPYARD_*`` < ``flags``.

    ``env`` defaults to ``os.environ``; flags that are ``None`` were not given. The values are
    returned as found (strings from the environment); the caller coerces and checks them.
    """
    values: dict[str, Any] = {}
    if file is not None:
        try:
            parsed = tomllib.loads(file.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{file}: cannot read server config: {exc}") from exc
        server = check_table(parsed.get("server", {}), f"{file}: [server]")
        values.update(server)
    environ = os.environ if env is None else env
    for name in names:
        key = f"SHIPYARD_{name.upper()}"
        if key in environ:
            values[name] = environ[key]
    values.update({k: v for k, v in (flags or {}).items() if v is not None})
    return values
