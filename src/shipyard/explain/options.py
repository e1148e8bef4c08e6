"""An explanation's parameters, read from a request and checked, with the perturbation cap.

Every parameter is optional (docs/explain.md lists them): ``method`` (``occlusion`` or
``rise`` for images), ``patch``, ``stride``, ``masks``, ``cells``, ``probability``, ``seed``,
``baseline``, ``target`` (a class index or label), ``output`` (the model output explained),
``input`` (the input explained) and ``reference`` (a text to compare an embedding with).
A bad value, an unknown parameter, or more perturbations than the model's
``[explain] max_perturbations`` is an InvalidInputError (400) that says which and why.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from shipyard.errors import InvalidInputError, brief

__all__ = ["KNOWN", "ExplainOptions", "check_count", "parse_options"]

#: The parameters an explanation takes (anything else is refused).
KNOWN = (
    "method",
    "patch",
    "stride",
    "masks",
    "cells",
    "probability",
    "seed",
    "baseline",
    "target",
    "output",
    "input",
    "reference",
)
#: Parameters of the Open Inference Protocol that an explain request may carry and ignores.
_IGNORED = ("timeout", "binary_data_output")
#: An integer in ASCII digits (str.isdigit also accepts "²", which int() refuses).
_DIGITS = re.compile(r"[0-9]+")
Method = Literal["occlusion", "rise"]


@dataclass(frozen=True, slots=True)
class ExplainOptions:
    """Checked parameters; ``None`` means "the default for this model" (docs/explain.md)."""

    method: Method = "occlusion"
    patch: int | None = None
    stride: int | None = None
    masks: int = 1000
    cells: int = 7
    probability: float = 0.5
    seed: int = 0
    baseline: float = 0.0
    target: int | str | None = None
    output: str | None = None
    input: str | None = None
    reference: str | None = None


def _query_int(value: str) -> int | str:
    """A query string's integer (ASCII digits, at most 18 of them), else the text as it was:
    ``int()`` takes "²" and refuses more than 4,300 digits, both 500s before."""
    text = value.strip()
    if _DIGITS.fullmatch(text) and len(text.lstrip("0")) <= 18:
        return int(text)
    return value


def _int(where: str, key: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, str):  # from a query string
        value = _query_int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidInputError(
            f"{where}: {key} must be an integer >= {minimum}, got {brief(value)}"
        )
    return value


def _float(where: str, key: str, value: Any) -> float:
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = float(value)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidInputError(f"{where}: {key} must be a finite number, got {brief(value)}")
    return float(value)


def _text(where: str, key: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidInputError(f"{where}: {key} must be a non-empty string, got {brief(value)}")
    return value


def parse_options(parameters: Mapping[str, Any], where: str) -> ExplainOptions:
    """Read the explanation's parameters out of a request's ``parameters``."""
    unknown = sorted(k for k in parameters if k not in KNOWN and k not in _IGNORED)
    if unknown:
        raise InvalidInputError(
            f"{where}: unknown explain parameter(s) {', '.join(unknown)}; known: {', '.join(KNOWN)}"
        )
    get = parameters.get
    method = get("method", "occlusion")
    if method not in ("occlusion", "rise"):
        raise InvalidInputError(f"{where}: method must be occlusion or rise, got {brief(method)}")
    probability = _float(where, "probability", get("probability", 0.5))
    if not 0 < probability < 1:
        raise InvalidInputError(f"{where}: probability must be in (0, 1), got {probability:g}")
    target = get("target")
    if target is not None:
        if isinstance(target, str):
            target = _query_int(target)
        if isinstance(target, str):
            target = _text(where, "target", target)
        else:
            target = _int(where, "target", target, minimum=0)
    return ExplainOptions(
        method=method,
        patch=None if get("patch") is None else _int(where, "patch", get("patch")),
        stride=None if get("stride") is None else _int(where, "stride", get("stride")),
        masks=_int(where, "masks", get("masks", 1000)),
        cells=_int(where, "cells", get("cells", 7), minimum=2),
        probability=probability,
        seed=_int(where, "seed", get("seed", 0), minimum=0),
        baseline=_float(where, "baseline", get("baseline", 0.0)),
        target=target,
        output=None if get("output") is None else _text(where, "output", get("output")),
        input=None if get("input") is None else _text(where, "input", get("input")),
        reference=(
            None if get("reference") is None else _text(where, "reference", get("reference"))
        ),
    )


def check_count(where: str, count: int, limit: int, what: str, advice: str) -> None:
    """Refuse an explanation of more than ``limit`` perturbations, saying how to fit."""
    if count > limit:
        raise InvalidInputError(
            f"{where}: this explanation needs {count} perturbations ({what}), over the model's"
            f" limit of {limit} ([explain] max_perturbations in its model.toml); {advice}"
        )
