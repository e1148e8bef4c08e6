"""Which ONNX Runtime execution providers a session asks for, and what it got.

:func:`plan_providers` turns ``[onnxruntime] providers`` and ``device_id`` into the list that
``onnxruntime.InferenceSession`` takes, checked against the providers this ONNX Runtime build
has. :func:`fallback_note` compares what was asked with what the session runs on: ONNX Runtime
falls back to the CPU, with only a log line of its own, when a GPU provider cannot start (no
driver, a missing CUDA or cuDNN library, a device id past the last GPU); Shipyard reports it
(the server log and the model's warnings in ``shipyard repo list`` and the startup table).

Both are pure, so they are tested with injected provider lists on machines without a GPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from shipyard.errors import ModelLoadError

__all__ = [
    "CPU",
    "DEVICE_PROVIDERS",
    "GPU_PROVIDERS",
    "ProviderPlan",
    "fallback_note",
    "plan_providers",
]

CPU = "CPUExecutionProvider"
#: Providers that run on a GPU: I/O binding pays there, and ``device_id`` picks the device.
GPU_PROVIDERS = frozenset(
    {
        "CUDAExecutionProvider",
        "TensorrtExecutionProvider",
        "ROCMExecutionProvider",
        "MIGraphXExecutionProvider",
        "DmlExecutionProvider",
    }
)
#: Providers that take a ``device_id`` option.
DEVICE_PROVIDERS = GPU_PROVIDERS
#: Never chosen unless model.toml names them: Azure calls a remote endpoint, and TensorRT builds
#: an engine per input shape on first use (minutes), which a default must not impose.
_NOT_BY_DEFAULT = frozenset({"AzureExecutionProvider", "TensorrtExecutionProvider"})


@dataclass(frozen=True, slots=True)
class ProviderPlan:
    """What a session is created with."""

    #: Provider names, best first (what ``session.get_providers()`` is compared with).
    names: tuple[str, ...]
    #: The ``providers`` argument of ``InferenceSession``: names with their options.
    arguments: list[str | tuple[str, dict[str, Any]]]
    device_id: int

    @property
    def gpu(self) -> bool:
        """Whether the preferred provider runs on a GPU."""
        return bool(self.names) and self.names[0] in GPU_PROVIDERS


def plan_providers(
    requested: Sequence[str], available: Sequence[str], device_id: int = 0
) -> ProviderPlan:
    """The providers to ask for: ``requested`` (model.toml), else the best of ``available``.

    A GPU provider is always followed by the CPU provider, so operators the GPU provider lacks
    still run. Raises ModelLoadError when a requested provider is not in this build.
    """
    names = list(requested) or [p for p in available if p not in _NOT_BY_DEFAULT]
    missing = [p for p in names if p not in available]
    if missing:
        raise ModelLoadError(
            f"execution provider(s) {', '.join(missing)} are not in this ONNX Runtime build"
            f" (available: {', '.join(available)})"
            + (
                "; GPU providers need the onnxruntime-gpu wheel (docs/hardware.md)"
                if any(p in GPU_PROVIDERS for p in missing)
                else ""
            )
        )
    if any(p in GPU_PROVIDERS for p in names) and CPU not in names and CPU in available:
        names.append(CPU)
    arguments: list[str | tuple[str, dict[str, Any]]] = [
        (name, {"device_id": str(device_id)}) if name in DEVICE_PROVIDERS else name
        for name in names
    ]
    return ProviderPlan(tuple(names), arguments, device_id)


def fallback_note(plan: ProviderPlan, used: Sequence[str]) -> str | None:
    """Say what was asked for and not obtained (a GPU provider that did not start); else None."""
    wanted = plan.names[0] if plan.names else CPU
    if not used or used[0] == wanted:
        return None
    device = f" (device {plan.device_id})" if wanted in DEVICE_PROVIDERS else ""
    return (
        f"{wanted}{device} could not start, so ONNX Runtime runs this model on {used[0]}"
        f" instead; check the GPU driver and the CUDA/cuDNN libraries (docs/hardware.md)"
    )
