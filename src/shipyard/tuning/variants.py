"""The model variants the tuner compares, each made and accuracy-guarded before it is served.

======================  ===============================================  ================
variant                 what                                             precision needed
======================  ===============================================  ================
``fp32``                the version as it is (the baseline; always in)   fp32
``optimized``           ONNX Runtime offline graph optimization          fp32
``int8-static``         QDQ int8 calibrated on ``--calibration`` data    int8
``int8-dynamic``        int8 weights, activations quantized at run time  int8
``fp16``                fp16 weights and compute (for GPU providers)     fp16
======================  ===============================================  ================

Variants come from :func:`shipyard.optimize.quantize.make_candidate` (the same tools as
``shipyard optimize``) and pass the same accuracy guard (:func:`~shipyard.optimize.versions.
guard_accuracy`: on the outputs after the model's ``[[postprocess]]``, what clients get)
against the unoptimized ancestor. A variant is skipped, with the reason, when
no execution provider here accelerates its precision (fp16 on a CPU-only machine), when it
needs data that was not given (int8-static without calibration data), when its tool fails, or
when the guard rejects it. Speed is not guarded here: the tuner measures it by serving.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from shipyard.config import ModelConfig
from shipyard.errors import ConversionError, ShipyardError
from shipyard.hardware import HardwareReport
from shipyard.optimize.data import Dataset, load_dataset, load_image_folder
from shipyard.optimize.guard import Metric
from shipyard.optimize.quantize import Method, make_candidate
from shipyard.optimize.versions import guard_accuracy, load_onnx, validation_dataset

__all__ = [
    "OPENVINO",
    "OPENVINO_VARIANTS",
    "PRECISION",
    "VARIANTS",
    "Variant",
    "VariantMaker",
    "suitable_providers",
]

VARIANTS = ("fp32", "optimized", "int8-static", "int8-dynamic", "fp16")
#: The precision each variant computes in (what a provider must accelerate to suit it).
PRECISION = {
    "fp32": "fp32",
    "optimized": "fp32",
    "int8-static": "int8",
    "int8-dynamic": "int8",
    "fp16": "fp16",
}
_METHOD: dict[str, Method] = {
    "optimized": "none",
    "int8-static": "int8-static",
    "int8-dynamic": "int8-dynamic",
    "fp16": "fp16",
}


#: The OpenVINO backend on its CPU device, searched as one more "provider" beside ONNX
#: Runtime's (``backend = "openvino"`` in model.toml when it wins).
OPENVINO = "OpenVINO"
#: The variants OpenVINO is a candidate for: the version as it is, in f32. (The ``optimized``
#: file holds ONNX Runtime's own operators; int8 and bf16 for OpenVINO go through
#: ``shipyard optimize`` on a model served by OpenVINO, whose guard then runs OpenVINO.)
OPENVINO_VARIANTS = ("fp32",)


def suitable_providers(hardware: HardwareReport, variant: str) -> tuple[str, ...]:
    """The execution providers here that accelerate ``variant``'s precision, best first.

    GPU and NPU providers come before the CPU, and :data:`OPENVINO` comes last when OpenVINO
    has a CPU device here; a provider that only calls a remote endpoint (Azure) is never used
    for serving.
    """
    precision = PRECISION[variant]
    found = [p for p in hardware.providers if p.device != "remote" and precision in p.precisions]
    found.sort(key=lambda p: p.device == "cpu")
    names = [p.name for p in found]
    if variant in OPENVINO_VARIANTS and any(d.startswith("CPU") for d in hardware.openvino_devices):
        names.append(OPENVINO)
    return tuple(names)


@dataclass(frozen=True, slots=True)
class Variant:
    """A variant as made: its file, or why there is none."""

    name: str
    status: Literal["ready", "skipped", "rejected", "failed"]
    path: Path | None = None
    reason: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    accuracy: dict[str, Any] | None = None
    size_bytes: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON form (tune-report.json's ``variants``)."""
        return {
            "name": self.name,
            "status": self.status,
            "reason": self.reason,
            "details": self.details,
            "accuracy": self.accuracy,
            "size_bytes": self.size_bytes,
            "seconds": round(self.seconds, 3),
        }


class VariantMaker:
    """Makes variants of one model file into ``workdir`` and guards their accuracy.

    The constructor loads the model and reads the data files, so bad data fails before any
    measurement (InvalidInputError, one line).
    """

    def __init__(
        self,
        source: Path,
        baseline: Path,
        config: ModelConfig,
        workdir: Path,
        *,
        calibration: Path | None = None,
        validation: Path | None = None,
        metric: Metric | None = None,
        max_drop: float = 0.01,
        model_dir: Path | None = None,
    ) -> None:
        self.source = source
        self.config = config
        self.workdir = workdir
        self.metric: Metric | None = metric
        self.max_drop = max_drop
        self.model_dir = model_dir or source.parent.parent
        self.original = load_onnx(source, config, "model")
        self.inputs = self.original.inputs
        self.outputs = self.original.outputs
        self._baseline = (
            self.original if baseline == source else load_onnx(baseline, config, "baseline")
        )

        def read(path: Path, role: str) -> Dataset:
            if path.is_dir():
                return load_image_folder(
                    path, config, self.model_dir, self.inputs, self.outputs, role
                )
            return load_dataset(path, self.inputs, role)

        self.calibration = read(calibration, "calibration") if calibration else None
        self.dataset, note = validation_dataset(validation, self.calibration, self.original, read)
        self.notes = [note] if note else []

    def close(self) -> None:
        """Release the ONNX Runtime sessions."""
        for backend in {id(b): b for b in (self.original, self._baseline)}.values():
            backend.close()

    def make(self, name: str, providers: Sequence[str]) -> Variant:
        """Make ``name`` (one of :data:`VARIANTS`); ``providers``: those that suit it here."""
        started = time.perf_counter()
        if name == "fp32":
            return Variant(
                name,
                "ready",
                self.source,
                details={"method": "as is"},
                size_bytes=self.source.stat().st_size,
            )
        if not providers:
            return Variant(
                name,
                "skipped",
                reason=f"no execution provider here accelerates {PRECISION[name]}",
            )
        if name == "int8-static" and self.calibration is None:
            return Variant(name, "skipped", reason="needs --calibration FILE.npz")
        folder = self.workdir / name
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / "model.onnx"
        try:
            details = make_candidate(
                _METHOD[name],
                self.source,
                target,
                inputs=self.inputs,
                calibration=self.calibration,
            )
            candidate = load_onnx(target, self.config, f"{name} variant")
        except ConversionError as exc:
            return Variant(name, "failed", reason=str(exc), seconds=time.perf_counter() - started)
        try:
            accuracy = guard_accuracy(
                self._baseline,
                candidate,
                self.dataset,
                model=self.original,
                config=self.config,
                model_dir=self.model_dir,
                metric=self.metric,
                max_drop=self.max_drop,
            )
        except ShipyardError as exc:
            return Variant(
                name, "failed", reason=exc.message, seconds=time.perf_counter() - started
            )
        finally:
            candidate.close()
        details.pop("note", None)
        seconds = time.perf_counter() - started
        size = target.stat().st_size
        if not accuracy["passed"]:
            reason = (
                f"rejected by the accuracy guard: {accuracy['metric']} drop"
                f" {accuracy['drop']:.4g} > {accuracy['max_drop']:g}"
            )
            return Variant(name, "rejected", None, reason, details, accuracy, size, seconds)
        return Variant(name, "ready", target, "", details, accuracy, size, seconds)
