"""The registry of named processing steps and the checked reading of their options.

Every step in ``model.toml`` names an ``op`` from :data:`STEPS`; what it does and which options
it takes are in ``docs/processing.md``. Options are read through :class:`Options`, which
refuses unknown keys and wrong types with a :class:`~shipyard.errors.ConfigError` that names
the step, so a mistake fails the model's load with a reason in the repository index.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from pathlib import Path
from typing import TypeVar

from shipyard.config import StepConfig
from shipyard.errors import ConfigError
from shipyard.types import DataType

__all__ = ["IMAGE_STEPS", "OUTPUT_STEPS", "STEPS", "TEXT_STEPS", "Options", "model_file"]

_T = TypeVar("_T")

#: Steps of a ``[[preprocess]]`` entry that turns images into a tensor, in the order allowed.
IMAGE_STEPS = ("decode_image", "resize", "scale", "normalize", "layout", "cast")
#: Steps of a ``[[preprocess]]`` entry that turns text into token tensors.
TEXT_STEPS = ("tokenize",)
#: Steps of a ``[[postprocess]]`` entry.
OUTPUT_STEPS = ("softmax", "argmax", "topk", "mean_pool", "l2_normalize")
#: Every step, by op name, with where it may appear.
STEPS: dict[str, str] = {
    **dict.fromkeys(IMAGE_STEPS, "preprocess"),
    **dict.fromkeys(TEXT_STEPS, "preprocess"),
    **dict.fromkeys(OUTPUT_STEPS, "postprocess"),
}


def unknown_step(step: StepConfig, where: str, allowed: Collection[str]) -> ConfigError:
    """The error for a step whose op is unknown here (or belongs to the other side)."""
    if step.op in STEPS and step.op not in allowed:
        return ConfigError(
            f"{where}: step {step.op!r} belongs in [[{STEPS[step.op]}]], not here; "
            f"steps allowed here: {', '.join(allowed)}"
        )
    return ConfigError(f"{where}: unknown step {step.op!r}; known steps: {', '.join(allowed)}")


class Options:
    """A step's options, read with checks; every error names the step."""

    def __init__(self, step: StepConfig, where: str, allowed: Collection[str]) -> None:
        self.step = step
        self.where = f"{where} ({step.op})"
        self._values = dict(step.options)
        unknown = sorted(set(self._values) - set(allowed))
        if unknown:
            known = ", ".join(sorted(allowed)) or "none"
            raise ConfigError(
                f"{self.where}: unknown option(s) {', '.join(unknown)}; allowed: {known}"
            )

    def error(self, message: str) -> ConfigError:
        """A ConfigError about this step."""
        return ConfigError(f"{self.where}: {message}")

    def has(self, key: str) -> bool:
        """Whether the step sets ``key``."""
        return key in self._values

    def integer(self, key: str, default: int | None = None, minimum: int = 1) -> int:
        """An integer option >= ``minimum``; required when ``default`` is None."""
        value = self._values.get(key, default)
        if value is None:
            raise self.error(f"needs {key} = <integer>")
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.error(f"{key} must be an integer >= {minimum}, got {value!r}")
        return value

    def number(self, key: str, default: float | None = None) -> float:
        """A finite number option; required when ``default`` is None."""
        value = self._values.get(key, default)
        if value is None:
            raise self.error(f"needs {key} = <number>")
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise self.error(f"{key} must be a finite number, got {value!r}")
        return float(value)

    def numbers(self, key: str, default: tuple[float, ...] | None = None) -> tuple[float, ...]:
        """A non-empty array of finite numbers; required when ``default`` is None."""
        value = self._values.get(key, default)
        if value is None:
            raise self.error(f"needs {key} = [<number>, ...]")
        if not isinstance(value, tuple) or not value or not all(_finite(v) for v in value):
            raise self.error(f"{key} must be a non-empty array of finite numbers, got {value!r}")
        return tuple(float(v) for v in value)

    def choice(self, key: str, choices: tuple[_T, ...], default: _T | None = None) -> _T:
        """One of ``choices``; required when ``default`` is None."""
        value = self._values.get(key, default)
        if value is None:
            raise self.error(f"needs {key} = one of {_listing(choices)}")
        for choice in choices:
            if type(value) is type(choice) and value == choice:
                return choice
        raise self.error(f"{key} must be one of {_listing(choices)}, got {value!r}")

    def string(self, key: str, default: str | None = None) -> str:
        """A non-empty string option; required when ``default`` is None."""
        value = self._values.get(key, default)
        if value is None:
            raise self.error(f'needs {key} = "..."')
        if not isinstance(value, str) or not value:
            raise self.error(f"{key} must be a non-empty string, got {value!r}")
        return value

    def datatype(self, key: str) -> DataType:
        """A V2 datatype name other than BYTES."""
        name = self.string(key)
        try:
            datatype = DataType.parse(name)
        except ValueError as exc:
            raise self.error(str(exc)) from None
        if datatype in (DataType.BYTES, DataType.BOOL):
            raise self.error(f"{key} must be a numeric datatype, got {name}")
        return datatype


def _finite(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


def _listing(choices: tuple[object, ...]) -> str:
    return ", ".join(repr(c).lower() if isinstance(c, bool) else repr(c) for c in choices)


def model_file(model_dir: Path, name: str, what: str, where: str) -> Path:
    """Resolve ``name`` inside the model folder; refuse paths that leave it or do not exist."""
    path = (model_dir / name).resolve()
    root = model_dir.resolve()
    if root not in path.parents:
        raise ConfigError(f"{where}: {what} {name!r} must be a file inside the model folder")
    if not path.is_file():
        raise ConfigError(f"{where}: {what} {name!r} not found (looked for {path})")
    return path
