"""The ``bf16`` candidate: the model as OpenVINO IR that computes in bf16 when served.

OpenVINO's CPU plugin computes in bf16 on CPUs with AMX or AVX-512 BF16 (about twice the
throughput of f32 there, with ~3 significant digits). Shipyard serves f32 unless asked, so
bf16 is a variant like int8: this writes ``model.xml`` + ``model.bin`` (weights kept in f32)
with ``bf16`` recorded in the IR's runtime info (:data:`~shipyard.backends.openvino.
PRECISION_KEY`), which the OpenVINO backend honours unless model.toml sets a precision; the
candidate then passes ``shipyard optimize``'s accuracy and speed guards before it is published.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shipyard.backends.openvino import PRECISION_KEY, load_openvino
from shipyard.errors import ConversionError, ModelLoadError

__all__ = ["make_bf16_ir"]


def make_bf16_ir(source: Path, target: Path) -> dict[str, Any]:
    """Write ``source`` (ONNX) as OpenVINO IR at ``target`` (model.xml), stamped bf16."""
    try:
        openvino = load_openvino()
    except ModelLoadError as exc:
        raise ConversionError(
            exc.message, step="load OpenVINO", framework="openvino", hint="install the extra"
        ) from exc
    try:
        model = openvino.convert_model(str(source))
        model.set_rt_info("bf16", PRECISION_KEY)
        openvino.save_model(model, str(target), compress_to_fp16=False)
    except (RuntimeError, ValueError) as exc:
        text = str(exc).strip()
        raise ConversionError(
            text.splitlines()[0] if text else type(exc).__name__,
            step="convert to OpenVINO IR",
            framework="openvino",
            hint="serve this model with ONNX Runtime, or try another --quantize",
            detail=text,
        ) from exc
    return {
        "format": "OpenVINO IR (model.xml + model.bin), weights in f32",
        "inference_precision": "bf16",
        "engine": f"OpenVINO {openvino.__version__}",
    }
