"""Make a candidate model file: graph optimization, int8 (dynamic or static QDQ), or fp16.

Every method starts from the fp32 ONNX file and writes one ``.onnx`` file; the tools are ONNX
Runtime's own (``onnxruntime.quantization``, ``onnxruntime.transformers.float16``), so no
dependency beyond the ``onnxruntime`` wheel is needed.

- ``none``: ONNX Runtime's offline graph optimization at a portable level (``basic``: only
  standard ONNX operators; ``extended``: adds fusions into ``com.microsoft`` operators that
  every ONNX Runtime build runs). ``all`` is refused: its layout changes bind the file to the
  machine that wrote it.
- ``int8-dynamic``: weights int8 (per output channel by default), activations quantized at run
  time. Suits MatMul-heavy models (transformers, MLPs); often slower for small CNNs.
- ``int8-static``: weights and activations int8 in QDQ form, activation ranges calibrated on
  data (MinMax). Keeps a CNN's speed on CPUs with VNNI while shrinking it 4x.
- ``fp16``: weights and compute in fp16, inputs and outputs kept fp32 (the signature does not
  change). Meant for GPU providers; on a CPU it is usually slower.

The int8 methods run ONNX Runtime's quantization pre-processing (symbolic shape inference and
basic optimization) first, as its documentation asks.

**Int8 weights follow the CPU** (:func:`choose_int8`). On x86 without VNNI or AMX, ONNX
Runtime's u8 x s8 kernels add pairs of products into 16 bits (``VPMADDUBSW``), which saturates
when weights use the whole int8 range; ONNX Runtime's quantization guide recommends 7-bit
weights (``reduce_range``) there. With VNNI or AMX (32-bit accumulation) and on ARM, the full
range is exact and more precise. Without saturation the integer arithmetic is exact on every
kernel, so a reduce-range model computes the same on any CPU.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from shipyard.errors import ConversionError, InvalidInputError
from shipyard.hardware import CpuInfo, int8_kernels
from shipyard.optimize.data import Dataset, batches
from shipyard.types import Array, TensorSpec

__all__ = [
    "GraphLevel",
    "Int8Choice",
    "Method",
    "ReduceRange",
    "choose_int8",
    "make_candidate",
]

#: ``bf16`` is OpenVINO's (:mod:`shipyard.optimize.openvino_ir`), not made here.
Method = Literal["none", "int8-dynamic", "int8-static", "fp16", "bf16"]
GraphLevel = Literal["basic", "extended"]
#: ``--reduce-range``: ``auto`` follows the CPU; ``on``/``off`` force 7-bit/full-range weights.
ReduceRange = Literal["auto", "on", "off"]
METHODS: tuple[str, ...] = get_args(Method)
REDUCE_RANGE: tuple[str, ...] = get_args(ReduceRange)


@dataclass(frozen=True, slots=True)
class Int8Choice:
    """The int8 weight range chosen for a CPU, and why (stored in report.json)."""

    #: 7-bit weights (ONNX Runtime's ``reduce_range``) instead of the full int8 range.
    reduce_range: bool
    #: The ``--reduce-range`` setting that led to it: auto, on or off.
    setting: str
    #: :attr:`shipyard.hardware.Int8Kernels.family` of the CPU it was made for.
    family: str
    #: That CPU's int8 kernels in words: "x86 AVX2 without VNNI/AMX".
    description: str
    #: Why, in one sentence.
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """The report's ``optimization.int8`` entry."""
        return asdict(self)


def choose_int8(setting: ReduceRange, cpu: CpuInfo) -> Int8Choice:
    """Choose 7-bit or full-range int8 weights for ``cpu`` (``auto``) or as ``setting`` says."""
    if setting not in REDUCE_RANGE:
        raise InvalidInputError(f"--reduce-range {setting!r}: use one of {', '.join(REDUCE_RANGE)}")
    kernels = int8_kernels(cpu)
    if setting == "auto":
        reduce = kernels.saturates
        reason = (
            f"7-bit weights: {kernels.description} sums int8 products in 16 bits, which"
            " saturates with full-range weights"
            if reduce
            else f"full-range weights: {kernels.description} accumulates int8 products exactly"
        )
    else:
        reduce = setting == "on"
        reason = f"{'7-bit' if reduce else 'full-range'} weights, as --reduce-range {setting} asks"
        if kernels.saturates and not reduce:
            reason += f" (this CPU, {kernels.description}, may saturate them)"
    return Int8Choice(reduce, setting, kernels.family, kernels.description, reason)


#: Samples per calibration batch (a model with a fixed first dimension gets that instead).
CALIBRATION_BATCH = 16


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence ONNX Runtime's quantization logging (it logs hints at WARNING via root)."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def _tool_error(step: str, exc: Exception, hint: str) -> ConversionError:
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    return ConversionError(
        first, step=step, framework="onnxruntime", hint=hint, detail=f"{type(exc).__name__}: {text}"
    )


def optimize_graph(source: Path, target: Path, level: GraphLevel) -> None:
    """Write ONNX Runtime's offline-optimized graph of ``source`` to ``target``."""
    import onnxruntime as ort

    if level not in ("basic", "extended"):
        raise InvalidInputError(f"graph level {level!r}: use basic or extended (portable levels)")
    options = ort.SessionOptions()
    options.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        if level == "basic"
        else ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    )
    options.optimized_model_filepath = str(target)
    options.log_severity_level = 3
    try:
        ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise _tool_error("graph optimization", exc, "check that the model loads") from exc


def _preprocess(source: Path, target: Path) -> None:
    from onnxruntime.quantization.shape_inference import quant_pre_process

    # When symbolic shape inference gives up, ONNX Runtime dumps sym_shape_infer_temp.onnx and
    # a <uuid>.data file into the current directory: run it from the scratch folder instead.
    # (chdir is process-wide: acceptable in this offline step, whose paths are all absolute.)
    source, target = source.resolve(), target.resolve()
    try:
        with _quiet(), contextlib.chdir(target.parent):
            quant_pre_process(str(source), str(target))
    except Exception:
        try:  # symbolic shape inference fails on some graphs; ONNX's own inference may not
            with _quiet():
                quant_pre_process(str(source), str(target), skip_symbolic_shape=True)
        except Exception as exc:
            raise _tool_error(
                "quantization pre-processing", exc, "check that the model has valid shapes"
            ) from exc


#: Operators whose int8 form pays off; any other operator that produces a graph output stays
#: in float, so outputs (softmax probabilities, regressions) keep their full resolution.
_HEAVY_OPS = {"Conv", "ConvTranspose", "MatMul", "Gemm"}


def _float_output_nodes(path: Path) -> list[str]:
    """Name every node of ``path`` (in place) and return the light ones producing outputs."""
    import onnx

    model = onnx.load(str(path))
    outputs = {o.name for o in model.graph.output}
    excluded = []
    for i, node in enumerate(model.graph.node):
        if not node.name:
            node.name = f"shipyard_{node.op_type}_{i}"
        if outputs.intersection(node.output) and node.op_type not in _HEAVY_OPS:
            excluded.append(node.name)
    onnx.save(model, str(path))
    return excluded


class _Reader:
    """An ``onnxruntime.quantization.CalibrationDataReader`` over a :class:`Dataset`."""

    def __init__(self, dataset: Dataset, specs: Sequence[TensorSpec]) -> None:
        self._feeds = list(batches(dataset.arrays, CALIBRATION_BATCH, specs))
        self._iter = iter(self._feeds)

    def get_next(self) -> dict[str, Array] | None:
        return next(self._iter, None)

    def __len__(self) -> int:
        return len(self._feeds)

    def rewind(self) -> None:
        self._iter = iter(self._feeds)


def make_candidate(
    method: Method,
    source: Path,
    target: Path,
    *,
    inputs: Sequence[TensorSpec],
    calibration: Dataset | None = None,
    per_channel: bool = True,
    graph_level: GraphLevel = "extended",
    reduce_range: bool = False,
) -> dict[str, Any]:
    """Write ``method``'s candidate of ``source`` to ``target``; return what was done (report).

    ``reduce_range``: int8 weights in 7 bits (see :func:`choose_int8`).

    Raises InvalidInputError for missing calibration data and ConversionError (with ONNX
    Runtime's message) when a tool fails.
    """
    if method not in METHODS or method == "bf16":
        raise InvalidInputError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")
    work = target.parent
    done: dict[str, Any] = {"method": method}
    if method == "none":
        optimize_graph(source, target, graph_level)
        done["graph_optimization_level"] = graph_level
        return done
    if method == "fp16":
        return done | _fp16(source, target)
    pre = work / "preprocessed.onnx"
    _preprocess(source, pre)
    done["preprocessing"] = "onnxruntime quant_pre_process (shape inference, basic optimization)"
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static

    if method == "int8-dynamic":
        try:
            with _quiet():
                quantize_dynamic(
                    str(pre),
                    str(target),
                    per_channel=per_channel,
                    reduce_range=reduce_range,
                    weight_type=QuantType.QInt8,
                )
        except Exception as exc:
            raise _tool_error(
                "int8-dynamic quantization", exc, "try --quantize int8-static"
            ) from exc
        return done | {
            "weights": "int8 (7-bit range)" if reduce_range else "int8",
            "activations": "dynamic uint8",
            "per_channel": per_channel,
        }
    if calibration is None:
        raise InvalidInputError("--quantize int8-static needs --calibration FILE.npz")
    reader = _Reader(calibration, inputs)
    if len(reader) == 0:
        raise InvalidInputError(
            f"calibration data {calibration.origin} has fewer samples than one model batch"
        )
    keep_float = _float_output_nodes(pre)
    try:
        with _quiet():
            quantize_static(
                str(pre),
                str(target),
                reader,
                quant_format=QuantFormat.QDQ,
                per_channel=per_channel,
                reduce_range=reduce_range,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=keep_float,
            )
    except Exception as exc:
        raise _tool_error(
            "int8-static quantization", exc, "check the calibration data against the model"
        ) from exc
    return done | {
        "format": "QDQ",
        "weights": "int8 (7-bit range)" if reduce_range else "int8",
        "activations": "int8",
        "per_channel": per_channel,
        "kept_in_float": keep_float,
        "calibration": {
            "from": calibration.origin,
            "samples": calibration.size,
            "method": "MinMax",
        },
    }


def _fp16(source: Path, target: Path) -> dict[str, Any]:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    try:
        model = onnx.load(str(source))
        with _quiet():
            half = convert_float_to_float16(model, keep_io_types=True)
        onnx.save(half, str(target))
    except Exception as exc:
        raise _tool_error("fp16 conversion", exc, "keep the model in fp32") from exc
    return {
        "weights": "fp16",
        "compute": "fp16",
        "inputs_outputs": "fp32 (unchanged signature)",
        "note": "fp16 is for GPU providers; on a CPU it is usually slower than fp32",
    }
