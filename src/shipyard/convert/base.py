"""What every source module hands the pipeline, and how it reports a converter's failure.

A source module (``onnx_source``, ``sklearn_source``, ``torch_source``) turns a model into a
:class:`Converted`: the ONNX model, its signature, and a *reference* function that runs the
source model in its own framework, which the parity check compares against.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import re
import traceback
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import ModuleType

import numpy as np
import onnx

from shipyard.errors import ConversionError
from shipyard.types import Array, JSONObject, TensorSpec

__all__ = ["Arrays", "Converted", "Reference", "converter_error", "quiet", "require"]

Arrays = dict[str, Array]
#: Runs the source model on named inputs; returns its outputs in the converted model's order.
Reference = Callable[[Mapping[str, Array]], list[Array]]

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_LOGGERS = ("torch", "torch.onnx", "torch.export", "torch._dynamo", "onnxscript", "skl2onnx")


@dataclass(slots=True)
class Converted:
    """An ONNX model converted from a source model, ready for the parity check."""

    model: onnx.ModelProto
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    reference: Reference
    #: Facts worth recording in report.json (exporter used, opset, notes).
    details: JSONObject = field(default_factory=dict)


def require(module: str, extra: str, framework: str) -> ModuleType:
    """Import ``module`` or raise a one-line ConversionError naming the pip install to run."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConversionError(
            f"{module} is not installed",
            step="import",
            framework=framework,
            hint=f"pip install 'shipyard[{extra}]'",
            detail=str(exc),
        ) from exc


def _first_line(exc: BaseException) -> str:
    """The most specific one-line reason in an exception chain."""
    chain: list[BaseException] = [exc]
    while (cause := chain[-1].__cause__ or chain[-1].__context__) is not None and len(chain) < 8:
        chain.append(cause)
    for candidate in reversed(chain):
        for line in _ANSI.sub("", str(candidate)).splitlines():
            line = line.strip()
            if line:
                text = f"{type(candidate).__name__}: {line}"
                return text if len(text) <= 240 else text[:237] + "..."
    return type(exc).__name__


def converter_error(
    step: str, framework: str, exc: BaseException, hint: str, captured: str = ""
) -> ConversionError:
    """Wrap a converter's exception as one clear line; the full text goes to ``detail``."""
    detail = "".join(traceback.format_exception(exc))
    if captured:
        detail = f"{captured.rstrip()}\n{detail}"
    return ConversionError(
        _first_line(exc), step=step, framework=framework, hint=hint, detail=_ANSI.sub("", detail)
    )


@contextlib.contextmanager
def quiet() -> Iterator[io.StringIO]:
    """Silence converters' prints, warnings and log lines; yield what they printed."""
    buffer = io.StringIO()
    levels = {name: logging.getLogger(name).level for name in _LOGGERS}
    try:
        for name in _LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(buffer),
            contextlib.redirect_stderr(buffer),
            np.errstate(all="ignore"),
        ):
            warnings.simplefilter("ignore")
            yield buffer
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
