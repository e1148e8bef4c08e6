"""The TensorFlow Lite backend: a LiteRT (``ai-edge-litert``) interpreter per model instance.

The signature (names, datatypes, shapes with -1 for dynamic dims) comes from the interpreter's
first signature (``serving_default`` for models from ``shipyard convert``), or from its input
and output tensors for a model without one. A LiteRT interpreter is not thread-safe: each
instance owns one, and the batcher never runs two batches on one instance at once (a lock
guards the interpreter all the same). A batch whose shape differs from the last one resizes the
inputs (``resize_tensor_input``) and re-plans the tensors; a model whose dims are fixed
rejects other shapes with a clear error. Models quantized with float inputs and outputs (what
``shipyard convert --quantize int8`` writes) are served as FP32; a model with integer-typed,
quantized inputs is served with those integer datatypes.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from shipyard.config import ModelConfig
from shipyard.errors import InternalError, InvalidInputError, ModelLoadError
from shipyard.types import Array, DataType, TensorSpec

__all__ = ["INSTALL_HINT", "TfliteBackend"]

INSTALL_HINT = "pip install 'shipyard[tflite]'"


def _interpreter_class() -> Any:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as exc:
        raise ModelLoadError(
            f"the tflite backend needs LiteRT (ai-edge-litert): {INSTALL_HINT}"
        ) from exc
    return Interpreter


def _spec(name: str, detail: Mapping[str, Any]) -> TensorSpec:
    dtype = np.dtype(detail["dtype"])
    try:
        datatype = DataType.from_numpy(dtype)
    except ValueError as exc:
        raise ModelLoadError(
            f"tensor {name!r} has type {dtype}, which Shipyard cannot serve"
        ) from exc
    shape = detail.get("shape_signature")
    if shape is None or len(shape) != len(detail["shape"]):
        shape = detail["shape"]
    return TensorSpec(name, datatype, tuple(int(d) if d >= 0 else -1 for d in shape))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class TfliteBackend:
    """A LiteRT interpreter running a ``.tflite`` model (one per instance; not shared)."""

    platform = "tensorflow_lite"

    def __init__(self, model: Path | bytes, config: ModelConfig, num_threads: int = 1) -> None:
        """Load ``model`` (a .tflite file, or its bytes); ``config`` is the model's settings."""
        interpreter_class = _interpreter_class()
        label = model.name if isinstance(model, Path) else "the model"
        try:
            if isinstance(model, Path):
                interpreter = interpreter_class(model_path=str(model), num_threads=num_threads)
            else:
                interpreter = interpreter_class(model_content=model, num_threads=num_threads)
            signatures = interpreter.get_signature_list()
            if signatures:
                runner = interpreter.get_signature_runner(next(iter(signatures)))
                ins = dict(runner.get_input_details())
                outs = dict(runner.get_output_details())
                del runner  # it holds the interpreter, which then refuses to re-plan
            else:
                ins = {d["name"]: d for d in interpreter.get_input_details()}
                outs = {d["name"]: d for d in interpreter.get_output_details()}
            interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            first_line = (
                str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            )
            raise ModelLoadError(f"LiteRT cannot load {label}: {first_line}") from exc
        self._interpreter = interpreter
        self._lock = threading.Lock()
        self._in_index = {name: int(d["index"]) for name, d in ins.items()}
        self._out_index = {name: int(d["index"]) for name, d in outs.items()}
        self._shapes: dict[str, tuple[int, ...]] = {
            name: tuple(int(x) for x in d["shape"]) for name, d in ins.items()
        }
        self.inputs = tuple(_spec(name, d) for name, d in ins.items())
        self.outputs = tuple(_spec(name, d) for name, d in outs.items())

    def run(self, inputs: Mapping[str, Array], outputs: Sequence[str]) -> list[Array]:
        """Resize the inputs when the batch shape changed, invoke, copy the outputs out."""
        with self._lock:
            interpreter = self._interpreter
            try:
                feed = [
                    (index, np.ascontiguousarray(inputs[n])) for n, index in self._in_index.items()
                ]
                wanted = [self._out_index[n] for n in outputs]
            except KeyError as exc:
                raise InvalidInputError(f"the model has no tensor {exc.args[0]!r}") from exc
            shapes = {n: tuple(int(d) for d in inputs[n].shape) for n in self._in_index}
            if shapes != self._shapes:
                try:
                    for name, index in self._in_index.items():
                        interpreter.resize_tensor_input(index, list(shapes[name]), strict=True)
                    interpreter.allocate_tensors()
                except (ValueError, RuntimeError) as exc:
                    self._shapes = {}  # re-plan on the next call
                    raise InvalidInputError(
                        f"the model cannot take input shapes {shapes}: {_first_line(exc)}"
                    ) from exc
                self._shapes = shapes
            try:
                for index, array in feed:
                    interpreter.set_tensor(index, array)
                interpreter.invoke()
                return [np.array(interpreter.get_tensor(index)) for index in wanted]
            except ValueError as exc:
                raise InvalidInputError(
                    f"the model rejected the input: {_first_line(exc)}"
                ) from exc
            except RuntimeError as exc:
                raise InternalError(f"LiteRT failed: {_first_line(exc)}") from exc

    def close(self) -> None:
        """Drop the interpreter; LiteRT frees it when the last reference goes."""
        del self._interpreter
