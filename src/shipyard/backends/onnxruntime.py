"""The ONNX Runtime backend.

A failed run is the client's fault only when ONNX Runtime raises ``InvalidArgument`` (its
check of the feed against the model: names, datatypes, ranks, fixed dimensions): that is
InvalidInputError (400). Anything else the model raises while it runs (``Fail``,
``RuntimeException``, ...) is the model's own failure: InternalError (500), whatever its
message says.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from shipyard.backends.providers import ProviderPlan, fallback_note, plan_providers
from shipyard.backends.threads import ThreadChoice, choose_threads, time_execution, usable_cores
from shipyard.config import ModelConfig
from shipyard.errors import InternalError, InvalidInputError, ModelLoadError
from shipyard.sampling import example_shape, random_tensor
from shipyard.types import Array, DataType, TensorSpec

__all__ = ["OnnxRuntimeBackend"]

log = logging.getLogger(__name__)

#: Providers whose device memory I/O binding addresses as "cuda" (auto I/O binding).
_CUDA_BINDING = ("CUDAExecutionProvider", "TensorrtExecutionProvider")

_ORT_TYPES = {
    "tensor(bool)": DataType.BOOL,
    "tensor(uint8)": DataType.UINT8,
    "tensor(uint16)": DataType.UINT16,
    "tensor(uint32)": DataType.UINT32,
    "tensor(uint64)": DataType.UINT64,
    "tensor(int8)": DataType.INT8,
    "tensor(int16)": DataType.INT16,
    "tensor(int32)": DataType.INT32,
    "tensor(int64)": DataType.INT64,
    "tensor(float16)": DataType.FP16,
    "tensor(float)": DataType.FP32,
    "tensor(double)": DataType.FP64,
    "tensor(string)": DataType.BYTES,
}
_LEVELS = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}


class _NodeArg(Protocol):
    """What ONNX Runtime tells of a model input or output (``onnxruntime.NodeArg``)."""

    name: str
    type: str
    shape: list[int | str | None] | None


def _spec(arg: _NodeArg) -> TensorSpec:
    datatype = _ORT_TYPES.get(arg.type)
    if datatype is None:
        raise ModelLoadError(
            f"tensor {arg.name!r} has type {arg.type}, which Shipyard cannot serve"
        )
    shape = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in (arg.shape or ()))
    return TensorSpec(arg.name, datatype, shape)


class OnnxRuntimeBackend:
    """An ``onnxruntime.InferenceSession`` with Shipyard's session options."""

    platform = "onnx_onnxv1"

    def __init__(self, path: Path, config: ModelConfig) -> None:
        import onnxruntime as ort
        from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument

        self._bad_input: type[Exception] = InvalidArgument
        #: Shared by every run of this instance; :meth:`abort` sets its terminate flag.
        self._run_options = ort.RunOptions()
        wanted = config.onnxruntime.intra_op_threads
        self._session, plan = self._open(path, config, 1 if wanted == "auto" else wanted)
        #: The providers the session runs on, best first (the CPU after a GPU one).
        self.providers: tuple[str, ...] = tuple(self._session.get_providers())
        note = fallback_note(plan, self.providers)
        #: What loading found worth a warning (a GPU provider that fell back to the CPU).
        self.notes: tuple[str, ...] = (note,) if note else ()
        if note:
            log.warning("%s: %s", path, note)
        binding = config.onnxruntime.io_binding
        gpu = bool(plan.names) and plan.names[0] in _CUDA_BINDING and note is None
        #: Whether run() binds inputs and outputs (auto: when a GPU provider runs the model).
        self.io_binding = gpu if binding == "auto" else binding
        self._device = ("cuda" if gpu else "cpu", plan.device_id if gpu else 0)
        self._describe()
        #: The intra-op threads this instance runs with, and why.
        self.threads = (
            ThreadChoice(wanted, None, "set in model.toml")
            if wanted != "auto"
            else (choose_threads(self._cost_ms(), usable_cores(), config.instance_count))
        )
        if wanted == "auto" and self.threads.threads != 1:
            self._session, _ = self._open(path, config, self.threads.threads)

    def _describe(self) -> None:
        self.inputs = tuple(_spec(a) for a in self._session.get_inputs())
        self.outputs = tuple(_spec(a) for a in self._session.get_outputs())
        self._strings_in = {s.name for s in self.inputs if s.datatype is DataType.BYTES}
        self._strings_out = {s.name for s in self.outputs if s.datatype is DataType.BYTES}

    def _cost_ms(self) -> float | None:
        """One batch-1 execution on random inputs, timed (None: the model rejects them)."""
        if self._strings_in:
            return None
        rng = np.random.default_rng(0)
        feed = {
            spec.name: random_tensor(spec.datatype, example_shape(spec, 1), rng)
            for spec in self.inputs
        }
        names = [spec.name for spec in self.outputs]
        try:
            return time_execution(lambda: self._session.run(names, feed))
        except Exception:  # the model's own limits (ids out of range...): no figure
            return None

    @staticmethod
    def _open(path: Path, config: ModelConfig, intra_op_threads: int) -> tuple[Any, ProviderPlan]:
        import onnxruntime as ort

        options = ort.SessionOptions()
        opts = config.onnxruntime
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = opts.inter_op_threads
        if opts.execution_mode == "parallel":
            options.execution_mode = ort.ExecutionMode.ORT_PARALLEL
        options.graph_optimization_level = getattr(
            ort.GraphOptimizationLevel, _LEVELS[opts.graph_optimization_level]
        )
        spin = "1" if opts.allow_spinning else "0"
        options.add_session_config_entry("session.intra_op.allow_spinning", spin)
        options.add_session_config_entry("session.inter_op.allow_spinning", spin)
        options.log_severity_level = 3
        plan = plan_providers(opts.providers, ort.get_available_providers(), opts.device_id)
        try:
            return ort.InferenceSession(str(path), options, providers=plan.arguments), plan
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph/... types
            raise ModelLoadError(
                f"ONNX Runtime cannot load {path.name}: {_first_line(exc)}"
            ) from exc

    def run(self, inputs: Mapping[str, Array], outputs: Sequence[str]) -> list[Array]:
        """Run the session (releases the GIL while ONNX Runtime computes)."""
        feed: Mapping[str, Array] = inputs
        if self._strings_in:
            feed = dict(inputs)
            for name in self._strings_in:
                feed[name] = _bytes_to_str(name, inputs[name])
        results: list[Array]
        try:
            if self.io_binding and not self._strings_in and not self._strings_out:
                results = self._run_bound(feed, outputs)
            else:
                results = self._session.run(list(outputs), feed, self._run_options)
        except self._bad_input as exc:
            raise InvalidInputError(f"the model rejected the input: {_first_line(exc)}") from exc
        except Exception as exc:
            raise InternalError(f"ONNX Runtime failed: {_first_line(exc)}") from exc
        if self._strings_out:
            for i, name in enumerate(outputs):
                if name in self._strings_out:
                    results[i] = _str_to_bytes(results[i])
        return results

    def _run_bound(self, feed: Mapping[str, Array], outputs: Sequence[str]) -> list[Array]:
        """Run with I/O binding: each input is copied to the device once, straight from its
        array, and ONNX Runtime allocates the outputs on the device, copied out once."""
        binding = self._session.io_binding()
        for name, array in feed.items():
            binding.bind_cpu_input(name, np.ascontiguousarray(array))
        device, device_id = self._device
        for name in outputs:
            binding.bind_output(name, device, device_id)
        self._session.run_with_iobinding(binding, self._run_options)
        results: list[Array] = binding.copy_outputs_to_cpu()
        return results

    def abort(self) -> None:
        """End the run in progress (it raises); this instance runs nothing after it."""
        self._run_options.terminate = True

    def close(self) -> None:
        """Drop the session; ONNX Runtime frees it when the last reference goes."""
        del self._session


def _first_line(exc: Exception) -> str:
    """The first line of an ONNX Runtime error (the rest is its C++ context), or its type."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _bytes_to_str(name: str, array: Array) -> Array:
    out = np.empty(array.shape, dtype=object)
    flat_in, flat_out = array.reshape(-1), out.reshape(-1)
    try:
        for i, item in enumerate(flat_in):
            flat_out[i] = item.decode("utf-8") if isinstance(item, bytes) else str(item)
    except UnicodeDecodeError as exc:
        raise InvalidInputError(
            f"input {name!r}: the model takes text; element {i} is not valid UTF-8"
        ) from exc
    return out


def _str_to_bytes(array: Array) -> Array:
    out = np.empty(array.shape, dtype=object)
    flat_in, flat_out = array.reshape(-1), out.reshape(-1)
    for i, item in enumerate(flat_in):
        flat_out[i] = item.encode("utf-8") if isinstance(item, str) else bytes(item)
    return out
