"""PyTorch sources: ``torch.export`` programs (.pt2), TorchScript files, ``module.py:factory``.

Export goes through ``torch.onnx.export``: the dynamo (``torch.export``-based) exporter by
default, the legacy TorchScript exporter with ``--exporter legacy``. TorchScript files can only
go through the legacy exporter, which is then chosen automatically. Every ``-1`` dimension of the
``--input`` signature is exported as dynamic (the batch axis by default); a ``.pt2`` program keeps
the dynamic dimensions it was exported with.
"""

from __future__ import annotations

import importlib.util
import io
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx

from shipyard.convert.base import Converted, converter_error, quiet, require
from shipyard.convert.detect import Source
from shipyard.convert.signature import INPUT_FORMAT, onnx_signature
from shipyard.convert.validate import random_inputs
from shipyard.errors import ConfigError, ConversionError
from shipyard.types import Array, DataType, JSONObject, TensorSpec

__all__ = ["Exporter", "convert_torch"]

Exporter = Literal["dynamo", "legacy"]
_EXAMPLE_BATCH = 2  # not 1: torch.export specializes dimensions of size 0 and 1


def _error(message: str, step: str, hint: str = "") -> ConversionError:
    return ConversionError(message, step=step, framework="torch", hint=hint)


def _load_factory(path: Path, factory: str, weights: Path | None) -> Any:
    torch = sys.modules["torch"]
    try:
        spec = importlib.util.spec_from_file_location(f"_shipyard_source_{path.stem}", path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot import {path}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        make = getattr(module, factory)
        with quiet():
            model = make()
    except Exception as exc:
        raise converter_error(
            "load", "torch", exc, f"check that {path}:{factory}() runs and returns an nn.Module"
        ) from exc
    if not isinstance(model, torch.nn.Module):
        raise _error(
            f"{path}:{factory}() returned a {type(model).__name__}, not a torch.nn.Module",
            "load",
            "make the factory return the model",
        )
    if weights is not None:
        try:
            with quiet():
                state = torch.load(weights, map_location="cpu", weights_only=True)
                model.load_state_dict(state)
        except Exception as exc:
            raise converter_error(
                "load weights",
                "torch",
                exc,
                f"{weights} must be a state dict saved with torch.save(model.state_dict())"
                " for this module",
            ) from exc
    return model


def _exported_signature(program: Any, overrides: tuple[TensorSpec, ...]) -> tuple[TensorSpec, ...]:
    """Input specs read from a torch.export program (symbolic dims → -1)."""
    torch = sys.modules["torch"]
    names = list(program.graph_signature.user_inputs)
    nodes = {n.name: n for n in program.graph.nodes if n.op == "placeholder"}
    specs = []
    for name in names:
        value = nodes[name].meta.get("val")
        if not isinstance(value, torch.Tensor):
            raise _error(f"input {name!r} of the program is not a tensor", "signature")
        shape = tuple(d if isinstance(d, int) else -1 for d in value.shape)
        dtype = torch.empty((), dtype=value.dtype).numpy().dtype
        specs.append(TensorSpec(name, DataType.from_numpy(dtype), shape))
    if overrides:
        if len(overrides) != len(specs):
            raise _error(
                f"the program takes {len(specs)} input(s), --input gave {len(overrides)}",
                "signature",
            )
        specs = [
            TensorSpec(o.name, found.datatype, found.shape)
            for o, found in zip(overrides, specs, strict=True)
        ]
    return tuple(specs)


def _flatten(value: Any) -> list[Array]:
    if isinstance(value, dict):
        return [a for v in value.values() for a in _flatten(v)]
    if isinstance(value, list | tuple):
        return [a for v in value for a in _flatten(v)]
    return [np.asarray(value.detach().cpu().numpy())]


def _reference(model: Any, names: list[str]) -> Any:
    torch = sys.modules["torch"]

    def run(feed: Mapping[str, Array]) -> list[Array]:
        args = [torch.from_numpy(np.ascontiguousarray(feed[name])) for name in names]
        with torch.no_grad():
            return _flatten(model(*args))

    return run


def _export(
    model: Any,
    args: tuple[Any, ...],
    inputs: tuple[TensorSpec, ...],
    output_names: list[str],
    exporter: Exporter,
    opset: int | None,
    program: bool,
) -> onnx.ModelProto:
    torch = sys.modules["torch"]
    names = [s.name for s in inputs]
    if exporter == "dynamo":
        dynamic = None
        if not program:
            dim = torch.export.Dim.DYNAMIC
            dynamic = tuple(
                {i: dim for i, d in enumerate(s.shape) if d == -1} or None for s in inputs
            )
        result = torch.onnx.export(
            model,
            args,
            input_names=names,
            output_names=output_names,
            opset_version=opset,
            dynamo=True,
            dynamic_shapes=dynamic,
        )
        return result.model_proto  # type: ignore[no-any-return]
    axes = {s.name: [i for i, d in enumerate(s.shape) if d == -1] for s in inputs}
    if all(s.shape and s.shape[0] == -1 for s in inputs):
        axes.update({name: [0] for name in output_names})
    buffer = io.BytesIO()
    torch.onnx.export(
        model,
        args,
        buffer,
        input_names=names,
        output_names=output_names,
        opset_version=opset,
        dynamo=False,
        dynamic_axes={k: v for k, v in axes.items() if v},
    )
    return onnx.load_from_string(buffer.getvalue())


def convert_torch(
    source: Source,
    input_overrides: tuple[TensorSpec, ...],
    opset: int | None,
    weights: Path | None,
    exporter: Exporter | None,
) -> Converted:
    """Load a PyTorch source and export it to ONNX with a dynamic batch axis."""
    torch = require("torch", "torch", "torch")
    if source.torch_kind == "exported":
        try:
            with quiet():
                program = torch.export.load(str(source.path))
        except Exception as exc:
            raise converter_error(
                "load", "torch", exc, f"{source.path} must be saved with torch.export.save()"
            ) from exc
        inputs = _exported_signature(program, input_overrides)
        model = program.module()
    else:
        if source.torch_kind == "factory":
            model = _load_factory(source.path, source.factory or "", weights)
        else:
            try:
                with quiet():
                    model = torch.jit.load(str(source.path), map_location="cpu")
            except Exception as exc:
                raise converter_error(
                    "load", "torch", exc, f"{source.path} must be saved with torch.jit.save()"
                ) from exc
        if not input_overrides:
            raise _error(
                "PyTorch modules do not declare their input shapes",
                "signature",
                f"pass one --input per forward() argument: {INPUT_FORMAT}",
            )
        inputs = input_overrides
        program = None
    if weights is not None and source.torch_kind != "factory":
        raise _error("--weights applies to module.py:factory sources only", "load weights")
    if program is None:
        model.eval()
    chosen: Exporter = exporter or ("legacy" if source.torch_kind == "torchscript" else "dynamo")
    names = [s.name for s in inputs]
    example = random_inputs(inputs, np.random.default_rng(0), batch=_EXAMPLE_BATCH)
    reference = _reference(model, names)
    try:
        with quiet():
            outputs = reference(example)
    except Exception as exc:
        raise converter_error(
            "run source model",
            "torch",
            exc,
            f"the model rejects inputs shaped like the signature; check --input ({INPUT_FORMAT})",
        ) from exc
    output_names = ["output"] if len(outputs) == 1 else [f"output{i}" for i in range(len(outputs))]
    if chosen == "dynamo":
        require("onnxscript", "torch", "torch")
    args = tuple(torch.from_numpy(np.ascontiguousarray(example[n])) for n in names)
    target = program if program is not None else model
    try:
        with quiet() as printed:
            onnx_model = _export(
                target, args, inputs, output_names, chosen, opset, program is not None
            )
    except Exception as exc:
        hint = (
            "try --exporter legacy, or change the unsupported operation in the model"
            if chosen == "dynamo"
            else "the operation has no ONNX equivalent at this opset: try a newer --opset,"
            " or change that operation in the model"
        )
        raise converter_error(
            f"export ({chosen} exporter)", "torch", exc, hint, printed.getvalue()
        ) from exc
    try:
        found_inputs, found_outputs = onnx_signature(onnx_model)
    except ConfigError as exc:
        raise _error(exc.message, "signature") from exc
    details: JSONObject = {
        "exporter": chosen,
        "source_kind": source.torch_kind,
        "opset": next(
            (o.version for o in onnx_model.opset_import if o.domain in ("", "ai.onnx")), 0
        ),
    }
    static = [
        f"{spec.name}[{i}]"
        for spec, got in zip(inputs, found_inputs, strict=False)
        for i, (want, have) in enumerate(zip(spec.shape, got.shape, strict=False))
        if want == -1 and have != -1
    ]
    if static:
        details["static_dims"] = list(static)
    return Converted(onnx_model, found_inputs, found_outputs, reference, details)
