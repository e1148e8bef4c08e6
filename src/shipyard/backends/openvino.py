"""The OpenVINO backend: an ONNX file or OpenVINO IR (``model.xml`` + ``model.bin``) compiled by
OpenVINO for one device (``[openvino] device``, CPU by default).

Precision is explicit. OpenVINO's CPU plugin computes in bf16 by default on CPUs with AMX or
AVX-512 BF16, which changes results (by ~5e-4 on the test CNN); Shipyard always passes an
``INFERENCE_PRECISION_HINT``: the one model.toml asks for, else the one a version's IR was made
and accuracy-guarded for by ``shipyard optimize --quantize bf16`` (recorded in the IR's runtime
info, :data:`PRECISION_KEY`), else ``f32``; and it reads back what the compiled model runs
with (:attr:`OpenVinoBackend.precision`).

Threads follow ``[openvino] intra_op_threads`` like ONNX Runtime's: "auto" times one batch-1
execution on one thread and applies :func:`~shipyard.backends.threads.choose_threads`. Each
instance is compiled for one stream with the latency hint and no CPU pinning, so instances x
threads mean the same as with ONNX Runtime. An instance owns one infer request, which is not
thread-safe; the batcher never runs two batches on one instance, and a lock guards it anyway.

Two limits of OpenVINO's CPU plugin, both documented in docs/model-config.md: it computes
INT64 tensors in 32 bits (values outside the int32 range are refused with 400 rather than
silently wrapped) and FP64 in FP32. BYTES (string) tensors are not served by this backend.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from shipyard.backends.threads import ThreadChoice, choose_threads, time_execution, usable_cores
from shipyard.config import ModelConfig
from shipyard.errors import InternalError, InvalidInputError, ModelLoadError
from shipyard.sampling import example_shape, random_tensor
from shipyard.types import Array, DataType, TensorSpec

__all__ = ["INSTALL_HINT", "PRECISION_KEY", "OpenVinoBackend", "load_openvino", "stamped_precision"]

#: Where ``shipyard optimize`` records, in an IR's runtime info, the precision it guarded.
PRECISION_KEY = ["shipyard", "inference_precision"]

INSTALL_HINT = "pip install 'shipyard[openvino]'"

#: OpenVINO element type names → datatypes.
_OV_TYPES = {
    "boolean": DataType.BOOL,
    "u8": DataType.UINT8,
    "u16": DataType.UINT16,
    "u32": DataType.UINT32,
    "u64": DataType.UINT64,
    "i8": DataType.INT8,
    "i16": DataType.INT16,
    "i32": DataType.INT32,
    "i64": DataType.INT64,
    "f16": DataType.FP16,
    "f32": DataType.FP32,
    "f64": DataType.FP64,
}
_INT32 = np.iinfo(np.int32)


def load_openvino() -> Any:
    """Import the ``openvino`` package, or explain how to install it."""
    try:
        import openvino
    except ImportError as exc:
        raise ModelLoadError(f"the openvino backend needs OpenVINO: {INSTALL_HINT}") from exc
    return openvino


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    # OpenVINO prefixes its messages with "Exception from src/...cpp:NN:"; keep the reason.
    useful = [line for line in lines if not line.startswith(("Exception from", "Check '"))]
    return (useful or lines or [type(exc).__name__])[0][:300]


def _spec(port: Any) -> TensorSpec:
    name = port.get_any_name()
    type_name = port.get_element_type().get_type_name()
    datatype = _OV_TYPES.get(type_name)
    if datatype is None:
        raise ModelLoadError(
            f"tensor {name!r} has type {type_name}, which the openvino backend cannot serve"
            + (
                ' (strings: serve the model with backend = "onnxruntime")'
                if type_name == "string"
                else ""
            )
        )
    shape = port.get_partial_shape()
    if shape.rank.is_dynamic:
        return TensorSpec(name, datatype, ())
    dims = tuple(d.get_length() if d.is_static else -1 for d in shape)
    return TensorSpec(name, datatype, dims)


class OpenVinoBackend:
    """A model compiled by OpenVINO, with one infer request (one per instance; not shared)."""

    platform = "openvino"

    def __init__(self, path: Path, config: ModelConfig, core: Any | None = None) -> None:
        """Read and compile ``path`` (model.xml or model.onnx) under ``config``'s settings."""
        openvino = load_openvino()
        self._core = core or openvino.Core()
        self._options = config.openvino
        try:
            self._model = self._core.read_model(str(path))
        except (RuntimeError, ValueError) as exc:
            raise ModelLoadError(f"OpenVINO cannot read {path.name}: {_first_line(exc)}") from exc
        #: The precision the IR was made and guarded for (``shipyard optimize``), if any.
        self.stamped = stamped_precision(self._model)
        self.inputs = tuple(_spec(p) for p in self._model.inputs)
        self.outputs = tuple(_spec(p) for p in self._model.outputs)
        self._int64_in = [s.name for s in self.inputs if s.datatype is DataType.INT64]
        self._lock = threading.Lock()
        wanted = self._options.intra_op_threads
        self._compile(1 if wanted == "auto" else wanted)
        #: The intra-op threads this instance runs with, and why.
        self.threads = (
            ThreadChoice(wanted, None, "set in model.toml")
            if wanted != "auto"
            else choose_threads(self._cost_ms(), usable_cores(), config.instance_count)
        )
        if wanted == "auto" and self.threads.threads != 1:
            self._compile(self.threads.threads)

    def _compile(self, threads: int) -> None:
        options = self._options
        properties: dict[str, Any] = {
            "INFERENCE_PRECISION_HINT": options.inference_precision or self.stamped or "f32",
            "PERFORMANCE_HINT": "LATENCY",
        }
        if options.device.upper().startswith("CPU"):
            properties |= {
                "INFERENCE_NUM_THREADS": threads,
                "NUM_STREAMS": 1,
                "ENABLE_CPU_PINNING": False,
            }
        try:
            compiled = self._core.compile_model(self._model, options.device, properties)
            self._request = compiled.create_infer_request()
        except (RuntimeError, ValueError, TypeError) as exc:
            raise ModelLoadError(
                f"OpenVINO cannot compile the model for {options.device}: {_first_line(exc)}"
            ) from exc
        self._compiled = compiled
        self._ports = {
            spec.name: port for spec, port in zip(self.outputs, compiled.outputs, strict=True)
        }
        #: The precision the compiled model computes in, as OpenVINO reports it ("f32"...).
        self.precision = _precision_name(compiled)

    def _cost_ms(self) -> float | None:
        """One batch-1 execution on random inputs, timed (None: the model rejects them)."""
        rng = np.random.default_rng(0)
        feed = {
            spec.name: random_tensor(spec.datatype, example_shape(spec, 1), rng)
            for spec in self.inputs
        }
        try:
            return time_execution(lambda: self._request.infer(feed))
        except Exception:  # the model's own limits (ids out of range...): no figure
            return None

    def run(self, inputs: Mapping[str, Array], outputs: Sequence[str]) -> list[Array]:
        """Run one inference (OpenVINO releases the GIL); copy the ``outputs`` out."""
        feed = {}
        for spec in self.inputs:
            array = inputs.get(spec.name)
            if array is None:
                raise InvalidInputError(f"missing input {spec.name!r}")
            if spec.shape and (
                array.ndim != len(spec.shape)
                or any(s not in (-1, d) for s, d in zip(spec.shape, array.shape, strict=True))
            ):  # OpenVINO does not check static dims itself: it would read past the data
                raise InvalidInputError(
                    f"input {spec.name!r}: shape {list(array.shape)} does not match the"
                    f" model's {list(spec.shape)}"
                )
            # OpenVINO misreads non-contiguous arrays (a strided view keeps its base's shape).
            feed[spec.name] = np.ascontiguousarray(array)
        for name in self._int64_in:
            array = feed[name]
            if array.size and (array.min() < _INT32.min or array.max() > _INT32.max):
                raise InvalidInputError(
                    f"input {name!r}: INT64 values outside the int32 range; OpenVINO's CPU"
                    " plugin computes INT64 in 32 bits (serve this model with backend ="
                    ' "onnxruntime" for the full range)'
                )
        try:
            ports = [self._ports[name] for name in outputs]
        except KeyError as exc:
            raise InvalidInputError(f"the model has no output {exc.args[0]!r}") from exc
        with self._lock:
            try:
                self._request.infer(feed)
            except (RuntimeError, ValueError, TypeError) as exc:
                message = _first_line(exc)
                about_input = any(w in message.lower() for w in ("shape", "incompatible", "dim"))
                if isinstance(exc, RuntimeError) and not about_input:
                    raise InternalError(f"OpenVINO failed: {message}") from exc
                raise InvalidInputError(f"the model rejected the input: {message}") from exc
            return [np.array(self._request.get_tensor(port).data) for port in ports]

    def close(self) -> None:
        """Drop the compiled model and its request; OpenVINO frees them with the last reference."""
        del self._request
        del self._compiled


def stamped_precision(model: Any) -> str | None:
    """The precision ``shipyard optimize`` recorded in ``model``'s runtime info, if any."""
    if not model.has_rt_info(PRECISION_KEY):
        return None
    value = str(model.get_rt_info(PRECISION_KEY).astype(str))
    return value if value in ("f32", "bf16", "f16") else None


def _precision_name(compiled: Any) -> str:
    try:
        value = compiled.get_property("INFERENCE_PRECISION_HINT")
    except RuntimeError:  # a device without the property (e.g. some NPUs)
        return "unknown"
    name = str(getattr(value, "get_type_name", lambda: value)())
    return {"bf16": "bf16", "f16": "f16", "f32": "f32"}.get(name, name)
