"""Keras 3 sources (``.keras`` files), on the torch backend so that TensorFlow is not needed.

``KERAS_BACKEND=torch`` is set before Keras is first imported (a process that already imported
Keras with another backend is refused: the backend cannot change after import). The model is
loaded with ``safe_mode`` (no arbitrary code from the file), called once on example inputs, and
exported with Keras's own ONNX export (``model.export(path, format="onnx")``), which keeps a
dynamic batch axis. The graph's outputs are renamed after the model's ``output_names``. The
parity reference is ``model.predict``.

Functional models are exported as they are. A ``Sequential`` or subclassed model (which has
no ``output_names``), or one whose saved inputs fix the batch size (a model built by ``fit``
on the torch backend records the training batch), is first wrapped in a functional model on
inputs with a free batch axis, named as the model's inputs (or ``--input``). A subclassed
model's class is code: its file must be named with ``custom_objects`` (``--custom-objects
FILE.py``), which is imported (run) before the model loads; it registers the classes with
``@keras.saving.register_keras_serializable`` or lists them in a ``CUSTOM_OBJECTS`` dict.

``--to tflite`` needs TensorFlow: the file is re-loaded in a child process on the
``tensorflow`` backend, written as a SavedModel (signature ``serving_default``, outputs named
after ``output_names``) and handed to the TFLite converter; the parity reference is still
``model.predict`` on the torch backend.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from shipyard.convert.base import Arrays, Converted, converter_error, quiet, require
from shipyard.convert.signature import merge_specs, onnx_signature
from shipyard.convert.tflite_target import (
    NamedReference,
    Quantize,
    TfliteModel,
    litert_model,
    saved_model_to_tflite,
)
from shipyard.convert.validate import load_sample, random_inputs
from shipyard.errors import ConfigError, ConversionError
from shipyard.types import Array, DataType, TensorSpec

__all__ = ["convert_keras", "keras_to_tflite"]

_EXAMPLE_BATCH = 2
_EXPORT_TIMEOUT_S = 600
#: Run in a child process with KERAS_BACKEND=tensorflow: .keras file → SavedModel. argv: the
#: .keras file, the SavedModel folder, the custom-objects file or "", then NAME:shape:dtype
#: per input, and the output names (after "--").
_SAVED_MODEL_SCRIPT = """
import runpy
import sys
import keras
import tensorflow as tf

args = sys.argv[1:]
split = args.index("--")
path, target, custom = args[:3]
custom_objects = runpy.run_path(custom).get("CUSTOM_OBJECTS") if custom else None
model = keras.saving.load_model(path, compile=False, custom_objects=custom_objects)
specs = []
for text in args[3:split]:
    name, dims, dtype = text.split(":")
    shape = [None] + [int(d) for d in dims.split(",")[1:]]
    specs.append(tf.TensorSpec(shape, dtype, name=name))
names = args[split + 1:]


def serve(*args):
    outputs = model(list(args) if len(args) > 1 else args[0], training=False)
    if isinstance(outputs, dict):
        outputs = [outputs[name] for name in names]
    if not isinstance(outputs, (list, tuple)):
        outputs = [outputs]
    return dict(zip(names, outputs))


archive = keras.export.ExportArchive()
archive.track(model)
archive.add_endpoint("serving_default", serve, input_signature=specs)
archive.write_out(target, verbose=False)
"""


def _error(message: str, step: str, hint: str = "") -> ConversionError:
    return ConversionError(message, step=step, framework="keras", hint=hint)


def _keras() -> Any:
    """Import Keras on the torch backend (or fail with one line)."""
    if "keras" not in sys.modules:
        os.environ["KERAS_BACKEND"] = "torch"
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # Keras imports TF when present
    require("torch", "keras", "keras")
    with quiet():
        keras = require("keras", "keras", "keras")
    backend = keras.backend.backend()
    if backend != "torch":
        raise _error(
            f"Keras was imported with the {backend} backend before Shipyard could choose torch",
            "import",
            "set KERAS_BACKEND=torch before importing keras",
        )
    return keras


def _custom_objects(path: Path | None) -> dict[str, Any] | None:
    """Run ``path`` (the user's own module) so that its Keras classes register; return its
    ``CUSTOM_OBJECTS`` dict when it has one."""
    if path is None:
        return None
    if not path.is_file():
        raise _error(f"{path} does not exist", "load", "pass the .py file that defines the classes")
    import runpy

    try:
        namespace = runpy.run_path(str(path), run_name="shipyard_keras_custom_objects")
    except Exception as exc:
        raise converter_error("load custom objects", "keras", exc, f"fix {path}") from exc
    found = namespace.get("CUSTOM_OBJECTS")
    return dict(found) if isinstance(found, Mapping) else None


def _is_functional(model: Any) -> bool:
    return type(model).__name__ == "Functional"


class _Model:
    """A loaded Keras model: its signature and a by-name reference (``predict``)."""

    def __init__(
        self, path: Path, overrides: tuple[TensorSpec, ...], custom_objects: Path | None = None
    ) -> None:
        keras = _keras()
        objects = _custom_objects(custom_objects)
        try:
            with quiet():
                loaded = keras.saving.load_model(
                    str(path), compile=False, safe_mode=True, custom_objects=objects
                )
        except Exception as exc:
            raise converter_error(
                "load",
                "keras",
                exc,
                f"{path} must be a Keras 3 file saved with model.save('model.keras'); custom"
                " layers and subclassed models need their classes: pass --custom-objects"
                " FILE.py (registered with keras.saving.register_keras_serializable)",
            ) from exc
        self.inputs = self._signature(path, loaded, overrides)
        fixed_batch = any(
            t.shape and t.shape[0] is not None for t in getattr(loaded, "inputs", None) or []
        )
        if _is_functional(loaded) and not fixed_batch:
            self.model = loaded
        else:
            self.model = self._wrap(keras, loaded)
        self.output_names = [str(n) for n in self.model.output_names]

    def _signature(
        self, path: Path, model: Any, overrides: tuple[TensorSpec, ...]
    ) -> tuple[TensorSpec, ...]:
        """The inputs, batch axis free: from the model's inputs, else from ``--input``."""
        tensors = list(getattr(model, "inputs", None) or [])
        if not tensors:
            if overrides and all(spec.datatype is not None for spec in overrides):
                return tuple(TensorSpec(s.name, s.datatype, (-1, *s.shape[1:])) for s in overrides)
            raise _error(
                f"{path} holds a model that was never built, so its inputs are unknown",
                "signature",
                "build it with keras.Input(...) (or call it once) before saving, or give its"
                " inputs with --input NAME:DATATYPE:DIMS",
            )
        specs = []
        for tensor in tensors:
            try:
                datatype = DataType.from_numpy(np.dtype(str(tensor.dtype)))
            except (TypeError, ValueError) as exc:
                raise _error(f"input {tensor.name!r}: {exc}", "signature") from exc
            # Keras's first axis is always the batch, even when fit() recorded its size.
            shape = (-1, *(-1 if d is None else int(d) for d in tuple(tensor.shape)[1:]))
            specs.append(TensorSpec(str(tensor.name), datatype, shape))
        try:
            return merge_specs(specs, overrides)
        except ConfigError as exc:
            raise _error(exc.message, "signature") from exc

    def _wrap(self, keras: Any, model: Any) -> Any:
        """A functional model that calls ``model`` on inputs with a free batch axis."""
        try:
            with quiet():
                symbolic = [
                    keras.Input(
                        shape=spec.shape[1:], dtype=spec.datatype.numpy.name, name=spec.name
                    )
                    for spec in self.inputs
                ]
                outputs = model(symbolic[0] if len(symbolic) == 1 else symbolic, training=False)
                return keras.Model(symbolic, outputs, name=model.name)
        except Exception as exc:
            raise converter_error(
                "build a functional model",
                "keras",
                exc,
                "the model cannot be called on inputs shaped like its signature; check --input",
            ) from exc

    def predict(self, feed: Mapping[str, Array]) -> dict[str, Array]:
        """Run ``model.predict`` on named inputs; return the outputs by name."""
        args = [np.ascontiguousarray(feed[spec.name]) for spec in self.inputs]
        result = self.model.predict(args[0] if len(args) == 1 else args, verbose=0)
        if isinstance(result, dict):
            return {name: np.asarray(result[name]) for name in self.output_names}
        values = result if isinstance(result, list | tuple) else [result]
        return {
            name: np.asarray(value) for name, value in zip(self.output_names, values, strict=True)
        }

    def call_once(self) -> None:
        """Run the model on example inputs (export needs a model that has been called)."""
        example = random_inputs(self.inputs, np.random.default_rng(0), batch=_EXAMPLE_BATCH)
        try:
            with quiet():
                self.predict(example)
        except Exception as exc:
            raise converter_error(
                "run source model",
                "keras",
                exc,
                "the model rejects inputs shaped like its own signature; check --input",
            ) from exc


def _rename_outputs(model: onnx.ModelProto, names: list[str]) -> None:
    """Rename the graph's outputs to ``names`` (where no other tensor has the name yet)."""
    graph = model.graph
    if len(graph.output) != len(names):
        return
    taken = {n for node in graph.node for n in (*node.input, *node.output)}
    taken |= {v.name for v in graph.input} | {i.name for i in graph.initializer}
    for value, new in zip(graph.output, names, strict=True):
        old = value.name
        if old == new or new in taken:
            continue
        for node in graph.node:
            node.output[:] = [new if n == old else n for n in node.output]
            node.input[:] = [new if n == old else n for n in node.input]
        value.name = new
        taken.add(new)


def convert_keras(
    path: Path,
    input_overrides: tuple[TensorSpec, ...],
    opset: int | None,
    custom_objects: Path | None = None,
) -> Converted:
    """Load a ``.keras`` file on the torch backend and export it with Keras's ONNX export."""
    source = _Model(path, input_overrides, custom_objects)
    source.call_once()
    with tempfile.TemporaryDirectory(prefix="shipyard-keras-") as tmp:
        target = Path(tmp) / "model.onnx"
        try:
            with quiet() as printed:
                source.model.export(str(target), format="onnx", verbose=False, opset_version=opset)
                model = onnx.load(str(target))
        except Exception as exc:
            raise converter_error(
                "export (Keras ONNX export)",
                "keras",
                exc,
                "the model uses an operation the torch ONNX exporter cannot express; try"
                " another --opset, or change that layer",
                printed.getvalue(),
            ) from exc
    _rename_outputs(model, source.output_names)
    try:
        found_inputs, outputs = onnx_signature(model)
        inputs = merge_specs(found_inputs, input_overrides)
    except ConfigError as exc:
        raise _error(exc.message, "signature") from exc
    input_names = [spec.name for spec in inputs]
    output_names = [spec.name for spec in outputs]
    by_position = output_names != source.output_names

    def reference(feed: Mapping[str, Array]) -> list[Array]:
        renamed = {s.name: feed[n] for s, n in zip(source.inputs, input_names, strict=True)}
        found = source.predict(renamed)
        if by_position:
            return list(found.values())
        return [found[name] for name in output_names]

    opset_used = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    keras = sys.modules["keras"]
    details = {"exporter": f"keras {keras.__version__} (torch backend)", "opset": opset_used}
    return Converted(model, inputs, outputs, reference, details)


def _saved_model(path: Path, target: Path, source: _Model, custom_objects: Path | None) -> None:
    """Write the .keras file as a SavedModel, in a child process on the tensorflow backend."""
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"}
    specs = [
        f"{s.name}:{','.join(map(str, s.shape))}:{s.datatype.numpy.name}" for s in source.inputs
    ]
    args = [str(path), str(target), str(custom_objects or ""), *specs, "--", *source.output_names]
    try:
        done = subprocess.run(
            [sys.executable, "-c", _SAVED_MODEL_SCRIPT, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=_EXPORT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise converter_error("export SavedModel (tensorflow backend)", "keras", exc, "") from exc
    if done.returncode != 0:
        lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
        last = lines[-1] if lines else f"exit code {done.returncode}"
        hint = (
            "pip install 'shipyard[tensorflow]'"
            if "No module named 'tensorflow'" in last
            else "the model must load on Keras's tensorflow backend too (standard layers do)"
        )
        raise ConversionError(
            last[:240],
            step="export SavedModel (tensorflow backend)",
            framework="keras",
            hint=hint,
            detail=done.stderr,
        )


def keras_to_tflite(
    path: Path,
    input_overrides: tuple[TensorSpec, ...],
    quantize: Quantize,
    sample: Path | None,
    custom_objects: Path | None = None,
) -> TfliteModel:
    """Convert a ``.keras`` file to TFLite; the reference is ``predict`` on the torch backend."""
    source = _Model(path, input_overrides, custom_objects)
    source.call_once()
    calibration: Arrays | None = None
    if sample is not None and quantize == "int8":
        calibration = load_sample(sample, source.inputs)
    with tempfile.TemporaryDirectory(prefix="shipyard-keras-") as tmp:
        saved = Path(tmp) / "saved_model"
        _saved_model(path, saved, source, custom_objects)
        data, details = saved_model_to_tflite(
            saved, "serving_default", "keras", quantize, calibration
        )
    reference: NamedReference = source.predict
    keras = sys.modules["keras"]
    details["source"] = f"keras {keras.__version__} (reference: torch backend)"
    return litert_model(data, "keras", reference, details)
