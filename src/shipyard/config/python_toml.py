"""The Python parts of ``model.toml``: the ``[python]`` table and Python step functions.

Split from :mod:`shipyard.config.model_toml`, which calls these while it reads a file.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from shipyard.config.model import PythonConfig
from shipyard.config.resolve import check_int, check_keys, check_number, check_table
from shipyard.errors import ConfigError

__all__ = ["frozen", "python_config", "python_function"]


def frozen(value: Any) -> Any:
    """``value`` with its arrays and tables made tuples (hashable, as the configs are)."""
    if isinstance(value, list):
        return tuple(frozen(v) for v in value)
    if isinstance(value, Mapping):
        return tuple((k, frozen(v)) for k, v in value.items())
    return value


_FUNCTION = re.compile(r"[A-Za-z_][A-Za-z0-9_]*:[A-Za-z_][A-Za-z0-9_]*")


def python_function(value: Any, where: str) -> str:
    """Check a step's ``function``: ``"module:name"`` of the version folder."""
    if not isinstance(value, str) or not _FUNCTION.fullmatch(value):
        raise ConfigError(
            f'{where} must be "module:name" (a module of the version folder and a function or '
            f"PythonModel class in it), got {value!r}"
        )
    return value


def _plain(value: Any) -> bool:
    if isinstance(value, list):
        return all(_plain(v) for v in value)
    return isinstance(value, bool | int | float | str)


def python_config(value: Any) -> PythonConfig:
    """Check the ``[python]`` table: worker processes, settings and limits."""
    table = check_table(value, "python")
    check_keys(table, {f.name for f in dataclasses.fields(PythonConfig)}, "python")
    default = PythonConfig()
    settings = check_table(table.get("settings", {}), "python.settings")
    for key, item in settings.items():
        if not _plain(item):
            raise ConfigError(
                f"python.settings.{key}: a setting is a number, a string, a boolean or an "
                f"array of them, got {item!r}"
            )
    return PythonConfig(
        workers=check_int(table.get("workers", default.workers), "python.workers", 1),
        settings=tuple((k, frozen(v)) for k, v in settings.items()),
        start_timeout_s=check_number(
            table.get("start_timeout_s", default.start_timeout_s), "python.start_timeout_s", 1.0
        ),
        shared_memory_bytes=check_int(
            table.get("shared_memory_bytes", default.shared_memory_bytes),
            "python.shared_memory_bytes",
        ),
    )
