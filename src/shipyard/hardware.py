"""What this machine can run a model on: CPU, memory, GPUs, execution providers, precisions.

:func:`probe` reads ``/proc/cpuinfo`` and ``/proc/meminfo`` (Linux; elsewhere the standard
library's coarser view), asks ONNX Runtime which execution providers its build has, and looks
for GPUs through NVML (``nvidia-ml-py``), OpenVINO devices and LiteRT, each only when its
package is importable. Nothing is imported or read until :func:`probe` is called. For every
provider the report lists the precisions it is expected to accelerate on this hardware, which is
what ``shipyard optimize`` and the tuner choose variants from. ``shipyard hw`` prints it.

The JSON form (:meth:`HardwareReport.to_dict`) is versioned by :data:`SCHEMA`; its keys only
grow within a version.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import platform
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shipyard.types import JSONObject

__all__ = [
    "SCHEMA",
    "CpuInfo",
    "GpuInfo",
    "HardwareReport",
    "Int8Kernels",
    "ProviderInfo",
    "int8_kernels",
    "int8_mismatch",
    "parse_cpuinfo",
    "parse_meminfo",
    "probe",
    "provider_info",
    "this_cpu",
]

SCHEMA = "shipyard.hardware/1"

#: /proc/cpuinfo flag → the name shown, for the instruction sets that change what runs fast.
_X86_FEATURES = {
    "avx2": "AVX2",
    "fma": "FMA",
    "f16c": "F16C",
    "avx512f": "AVX-512F",
    "avx512bw": "AVX-512BW",
    "avx512_vnni": "AVX-512 VNNI",
    "avx512_bf16": "AVX-512 BF16",
    "avx512_fp16": "AVX-512 FP16",
    "avx_vnni": "AVX-VNNI",
    "amx_tile": "AMX-TILE",
    "amx_int8": "AMX-INT8",
    "amx_bf16": "AMX-BF16",
    "amx_fp16": "AMX-FP16",
}
_ARM_FEATURES = {
    "asimd": "NEON",
    "asimdhp": "NEON FP16",
    "asimddp": "DOTPROD",
    "i8mm": "I8MM",
    "bf16": "BF16",
    "sve": "SVE",
    "sve2": "SVE2",
    "sme": "SME",
}
#: ARM ``CPU implementer``/``CPU part`` pairs → core name (only common server/SBC cores).
_ARM_PARTS = {
    ("0x41", "0xd08"): "Arm Cortex-A72",
    ("0x41", "0xd0b"): "Arm Cortex-A76",
    ("0x41", "0xd0c"): "Arm Neoverse-N1",
    ("0x41", "0xd40"): "Arm Neoverse-V1",
    ("0x41", "0xd49"): "Arm Neoverse-N2",
    ("0x41", "0xd4f"): "Arm Neoverse-V2",
    ("0x41", "0xd8e"): "Arm Neoverse-N3",
    ("0x61", "0x000"): "Apple",
    ("0xc0", "0xac3"): "Ampere-1",
}
#: Features that make int8 matrix products fast (several int8 MACs per instruction).
_INT8_DOT = ("AMX-INT8", "AVX-512 VNNI", "AVX-VNNI", "DOTPROD", "I8MM")
_BF16 = ("AMX-BF16", "AVX-512 BF16", "BF16")
#: x86 features with which ONNX Runtime's u8 x s8 kernels accumulate in 32 bits (VPDPBUSD, AMX
#: tiles). Without them, x86 kernels add pairs of u8 x s8 products into 16 bits (VPMADDUBSW),
#: which saturates when weights use the full int8 range.
_X86_INT8_EXACT = ("AMX-INT8", "AVX-512 VNNI", "AVX-VNNI")
_X86_ARCHITECTURES = ("x86_64", "amd64", "i386", "i686", "x86")

_GPU_PROVIDERS = {
    "CUDAExecutionProvider",
    "TensorrtExecutionProvider",
    "ROCMExecutionProvider",
    "MIGraphXExecutionProvider",
    "DmlExecutionProvider",
    "WebGpuExecutionProvider",
}


@dataclass(frozen=True, slots=True)
class CpuInfo:
    """The CPU: model, cores and the instruction sets that matter for inference."""

    model: str
    architecture: str
    physical_cores: int | None
    logical_cores: int
    #: Display names from :data:`_X86_FEATURES` / :data:`_ARM_FEATURES`, in that order.
    features: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class GpuInfo:
    """One GPU as NVML (or another driver library) reports it."""

    name: str
    memory_bytes: int | None = None
    compute_capability: str | None = None
    driver: str | None = None
    source: str = "nvml"


@dataclass(frozen=True, slots=True)
class ProviderInfo:
    """An ONNX Runtime execution provider of the installed build and what it accelerates."""

    name: str
    device: str
    precisions: tuple[str, ...]
    notes: str = ""


@dataclass(frozen=True, slots=True)
class HardwareReport:
    """Everything :func:`probe` found; ``*_note`` fields say plainly what is absent and why."""

    cpu: CpuInfo
    memory_total_bytes: int | None
    memory_available_bytes: int | None
    onnxruntime_version: str
    providers: tuple[ProviderInfo, ...]
    gpus: tuple[GpuInfo, ...] = ()
    gpu_note: str | None = None
    openvino_devices: tuple[str, ...] = ()
    openvino_note: str | None = None
    litert_available: bool = False
    litert_note: str | None = None

    def to_dict(self) -> JSONObject:
        """The stable JSON form (``shipyard hw --json``, report.json's ``hardware``)."""
        return {
            "schema": SCHEMA,
            "cpu": dataclasses.asdict(self.cpu) | {"features": list(self.cpu.features)},
            "memory": {
                "total_bytes": self.memory_total_bytes,
                "available_bytes": self.memory_available_bytes,
            },
            "gpus": [dataclasses.asdict(g) for g in self.gpus],
            "gpu_note": self.gpu_note,
            "onnxruntime": {
                "version": self.onnxruntime_version,
                "providers": [
                    dataclasses.asdict(p) | {"precisions": list(p.precisions)}
                    for p in self.providers
                ],
            },
            "openvino": {"devices": list(self.openvino_devices), "note": self.openvino_note},
            "litert": {"available": self.litert_available, "note": self.litert_note},
            "int8_kernels": dataclasses.asdict(int8_kernels(self.cpu)),
        }

    def summary(self) -> JSONObject:
        """The short form stored with a measurement: enough to tell two machines apart."""
        return {
            "cpu": self.cpu.model,
            "architecture": self.cpu.architecture,
            "physical_cores": self.cpu.physical_cores,
            "logical_cores": self.cpu.logical_cores,
            "features": list(self.cpu.features),
            "memory_total_bytes": self.memory_total_bytes,
            "gpus": [g.name for g in self.gpus],
            "onnxruntime": self.onnxruntime_version,
            "providers": [p.name for p in self.providers],
            "int8_kernels": int8_kernels(self.cpu).family,
        }


@dataclass(frozen=True, slots=True)
class Int8Kernels:
    """The kind of int8 matrix kernels ONNX Runtime runs on a CPU, for choosing int8 weights.

    ``family`` is one of ``x86-vnni`` (VNNI or AMX: exact 32-bit accumulation), ``x86-no-vnni``
    (AVX2/AVX-512 without VNNI: pairs of u8 x s8 products summed into 16 bits, which
    saturates with full-range weights), ``arm`` or ``other``.
    """

    family: str
    #: What decided the family, for reports: "AVX2 without VNNI/AMX".
    description: str
    #: Whether full-range int8 weights can saturate the 16-bit sums (use 7-bit weights).
    saturates: bool


def int8_kernels(cpu: CpuInfo) -> Int8Kernels:
    """Return which int8 kernels ONNX Runtime uses on ``cpu`` (see :class:`Int8Kernels`)."""
    arch = cpu.architecture.lower()
    if "NEON" in cpu.features or arch in ("aarch64", "arm64") or arch.startswith("arm"):
        dot = [f for f in cpu.features if f in ("DOTPROD", "I8MM")]
        return Int8Kernels("arm", f"ARM {', '.join(dot) or 'NEON'}", saturates=False)
    if arch in _X86_ARCHITECTURES or "AVX2" in cpu.features:
        exact = [f for f in cpu.features if f in _X86_INT8_EXACT]
        if exact:
            return Int8Kernels("x86-vnni", f"x86 with {', '.join(exact)}", saturates=False)
        widest = next((f for f in ("AVX-512BW", "AVX2") if f in cpu.features), "SSE")
        return Int8Kernels("x86-no-vnni", f"x86 {widest} without VNNI/AMX", saturates=True)
    return Int8Kernels("other", f"{cpu.architecture or 'unknown'} CPU", saturates=False)


def int8_mismatch(recorded: Mapping[str, Any], cpu: CpuInfo) -> str | None:
    """Say why an int8 model made for ``recorded`` kernels may misbehave on ``cpu``; else None.

    ``recorded`` is the ``int8`` entry an optimization report stores: ``family``,
    ``description`` and ``reduce_range`` (7-bit weights).
    """
    here = int8_kernels(cpu)
    family = recorded.get("family")
    if not isinstance(family, str) or family == here.family:
        return None
    made_for = recorded.get("description", family)
    if here.saturates and not recorded.get("reduce_range", False):
        return (
            f"quantized with full-range int8 weights for {made_for}; this CPU ({here.description})"
            " saturates them, so accuracy may drop: re-run shipyard optimize on this machine"
        )
    if recorded.get("reduce_range", False) and not here.saturates:
        return (
            f"quantized with 7-bit weights for {made_for}; this CPU ({here.description}) could"
            " use the full int8 range: re-run shipyard optimize here for better accuracy"
        )
    return (
        f"quantized and timed on {made_for}, served on {here.description}: its accuracy and"
        " speed were not measured on this kind of CPU"
    )


def this_cpu() -> CpuInfo:
    """This machine's CPU from ``/proc/cpuinfo`` (cheap: no provider, GPU or runtime probe)."""
    machine = platform.machine()
    text = _read("/proc/cpuinfo")
    if text.strip():
        return parse_cpuinfo(text, machine)
    return CpuInfo(platform.processor() or machine or "unknown", machine, None, os.cpu_count() or 1)


def _blocks(text: str) -> list[dict[str, str]]:
    blocks: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if current:
                blocks.append(current)
                current = {}
            continue
        key, sep, value = line.partition(":")
        if sep:
            current[key.strip().lower()] = value.strip()
    if current:
        blocks.append(current)
    return blocks


def parse_cpuinfo(text: str, machine: str = "") -> CpuInfo:
    """Parse ``/proc/cpuinfo`` text (x86 ``flags`` or ARM ``Features``) into a :class:`CpuInfo`.

    ``machine`` (``platform.machine()``) names the architecture when the text does not.
    """
    blocks = _blocks(text)
    processors = [b for b in blocks if "processor" in b] or blocks
    first = processors[0] if processors else {}
    flags = set(first.get("flags", "").split())
    arm_features = set(first.get("features", "").split())
    if flags:
        architecture = machine or "x86_64"
        features = tuple(name for flag, name in _X86_FEATURES.items() if flag in flags)
    else:
        architecture = machine or ("aarch64" if arm_features else "unknown")
        features = tuple(name for flag, name in _ARM_FEATURES.items() if flag in arm_features)
    model = first.get("model name") or first.get("hardware") or ""
    if not model and "cpu part" in first:
        key = (first.get("cpu implementer", "").lower(), first["cpu part"].lower())
        model = _ARM_PARTS.get(key, f"ARM implementer {key[0]} part {key[1]}")
    if not model:
        model = blocks[-1].get("model", "") if blocks else ""
    logical = len([b for b in blocks if "processor" in b]) or (os.cpu_count() or 1)
    cores = {(b.get("physical id", "0"), b["core id"]) for b in processors if "core id" in b}
    if cores:
        physical: int | None = len(cores)
    elif arm_features:
        physical = logical  # ARM server and SBC cores have no SMT
    else:
        physical = None
    return CpuInfo(model or "unknown", architecture, physical, logical, features)


def parse_meminfo(text: str) -> tuple[int | None, int | None]:
    """Return (MemTotal, MemAvailable) in bytes from ``/proc/meminfo`` text."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            scale = 1024 if len(parts) > 1 and parts[1].lower() == "kb" else 1
            values[key.strip()] = int(parts[0]) * scale
    return values.get("MemTotal"), values.get("MemAvailable")


def provider_info(name: str, cpu: CpuInfo, gpus: Sequence[GpuInfo] = ()) -> ProviderInfo:
    """What ``name`` runs on and the precisions it is expected to accelerate on this machine."""
    int8_dot = [f for f in cpu.features if f in _INT8_DOT]
    bf16 = [f for f in cpu.features if f in _BF16]
    if name == "CPUExecutionProvider":
        precisions = ["fp32", "int8"]
        if int8_dot:
            notes = f"int8 fast ({', '.join(int8_dot)})"
        else:
            notes = "int8 without VNNI/DOTPROD: smaller, rarely faster"
        if bf16:
            precisions.append("bf16")
            notes += f"; bf16 ISA ({', '.join(bf16)}), few ONNX Runtime bf16 kernels"
        return ProviderInfo(name, "cpu", tuple(precisions), notes + "; no fast fp16")
    if name in ("CUDAExecutionProvider", "TensorrtExecutionProvider"):
        precisions = ["fp32", "fp16", "int8"]
        majors = [_major(g.compute_capability) for g in gpus]
        if any(m is not None and m >= 8 for m in majors):
            precisions.append("bf16")
        notes = "tensor cores for fp16/int8 from compute capability 7.0"
        if name == "TensorrtExecutionProvider":
            notes += "; engines are built per GPU model on first load"
        return ProviderInfo(name, "gpu", tuple(precisions), notes)
    if name in ("ROCMExecutionProvider", "MIGraphXExecutionProvider"):
        return ProviderInfo(name, "gpu", ("fp32", "fp16", "int8"), "AMD GPU")
    if name in ("DmlExecutionProvider", "WebGpuExecutionProvider"):
        return ProviderInfo(name, "gpu", ("fp32", "fp16"), "any DirectX 12 / WebGPU GPU")
    if name == "OpenVINOExecutionProvider":
        precisions = ["fp32", "fp16", "int8"] + (["bf16"] if bf16 else [])
        return ProviderInfo(name, "cpu/gpu/npu", tuple(precisions), "Intel CPU, iGPU and NPU")
    if name == "DnnlExecutionProvider":
        precisions = ["fp32", "int8"] + (["bf16"] if bf16 else [])
        return ProviderInfo(name, "cpu", tuple(precisions), "oneDNN kernels")
    if name == "XnnpackExecutionProvider":
        fp16 = "NEON FP16" in cpu.features
        return ProviderInfo(
            name, "cpu", ("fp32", "fp16", "int8") if fp16 else ("fp32", "int8"), "mobile CPUs"
        )
    if name == "CoreMLExecutionProvider":
        return ProviderInfo(name, "gpu/npu", ("fp32", "fp16"), "Apple Neural Engine and GPU")
    if name in ("QNNExecutionProvider", "NnapiExecutionProvider", "RknpuExecutionProvider"):
        return ProviderInfo(name, "npu", ("int8", "fp16"), "mobile NPU; int8 QDQ models")
    if name in ("VitisAIExecutionProvider", "CANNExecutionProvider"):
        return ProviderInfo(name, "npu", ("int8", "fp16"), "accelerator card")
    if name == "AzureExecutionProvider":
        return ProviderInfo(name, "remote", (), "calls a remote endpoint; not used for serving")
    return ProviderInfo(name, "unknown", ("fp32",), "not known to Shipyard")


def _major(capability: str | None) -> int | None:
    if not capability:
        return None
    head = capability.split(".")[0]
    return int(head) if head.isdigit() else None


def _nvml_gpus() -> tuple[list[GpuInfo], str | None]:
    """GPUs through NVML when ``nvidia-ml-py`` is importable; else ([], why not)."""
    if importlib.util.find_spec("pynvml") is None:
        return [], "NVML is not available (nvidia-ml-py is not installed)"
    # Imported by name: an optional package without type stubs.
    pynvml: Any = importlib.import_module("pynvml")
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # NVMLError_LibraryNotFound / DriverNotLoaded / ...
        return [], f"NVML could not start ({exc}): no NVIDIA driver"
    try:
        driver = pynvml.nvmlSystemGetDriverVersion()
        gpus = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(handle)
            gpus.append(
                GpuInfo(
                    name=str(pynvml.nvmlDeviceGetName(handle)),
                    memory_bytes=int(pynvml.nvmlDeviceGetMemoryInfo(handle).total),
                    compute_capability=f"{major}.{minor}",
                    driver=str(driver),
                )
            )
        return gpus, None if gpus else "NVML found no NVIDIA GPU"
    except Exception as exc:
        return [], f"NVML failed: {exc}"
    finally:
        pynvml.nvmlShutdown()


def _gpu_note(providers: Sequence[str], gpus: Sequence[GpuInfo], nvml_note: str | None) -> str:
    gpu_providers = [p for p in providers if p in _GPU_PROVIDERS]
    if gpus:
        if gpu_providers:
            return ""
        return (
            f"{len(gpus)} GPU(s) found, but this ONNX Runtime build has no GPU provider:"
            " install onnxruntime-gpu to use them"
        )
    if gpu_providers:
        return (
            f"no GPU found: ONNX Runtime has {', '.join(gpu_providers)}, but"
            f" {nvml_note or 'no device was reported'}"
        )
    return "no GPU found: this ONNX Runtime build has no GPU provider (CPU only)" + (
        f" and {nvml_note}" if nvml_note else ""
    )


def _openvino() -> tuple[tuple[str, ...], str | None]:
    if importlib.util.find_spec("openvino") is None:
        return (), "OpenVINO not installed (pip install 'shipyard[openvino]')"
    try:
        openvino: Any = importlib.import_module("openvino")
        core = openvino.Core()
        devices = []
        for device in core.available_devices:
            full = core.get_property(device, "FULL_DEVICE_NAME")
            try:  # what the device computes fast: FP32, BF16, FP16, INT8...
                caps = list(core.get_property(device, "OPTIMIZATION_CAPABILITIES"))
            except RuntimeError:
                caps = []
            shown = [c for c in caps if c in ("FP32", "BF16", "FP16", "INT8")]
            devices.append(f"{device}: {full}" + (f" ({', '.join(shown)})" if shown else ""))
        return tuple(devices), None if devices else "OpenVINO found no device"
    except Exception as exc:
        return (), f"OpenVINO failed to list devices: {exc}"


def _litert() -> tuple[bool, str]:
    for module in ("ai_edge_litert", "tflite_runtime"):
        if importlib.util.find_spec(module) is not None:
            return True, f"{module} installed: fp32, int8 and fp16 .tflite models on the CPU"
    return False, "LiteRT not installed (pip install ai-edge-litert)"


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def probe(
    *,
    cpuinfo_text: str | None = None,
    meminfo_text: str | None = None,
    providers: Sequence[str] | None = None,
    gpu_probe: Callable[[], tuple[list[GpuInfo], str | None]] | None = None,
) -> HardwareReport:
    """Probe this machine. Each keyword replaces one source (for tests and other machines)."""
    import onnxruntime

    if cpuinfo_text is None:
        cpu = this_cpu()
    elif cpuinfo_text.strip():
        cpu = parse_cpuinfo(cpuinfo_text, platform.machine())
    else:  # an injected empty text: what macOS and Windows (no /proc) give
        machine = platform.machine()
        cpu = CpuInfo(
            platform.processor() or machine or "unknown", machine, None, os.cpu_count() or 1
        )
    memory = parse_meminfo(_read("/proc/meminfo") if meminfo_text is None else meminfo_text)
    names = list(onnxruntime.get_available_providers() if providers is None else providers)
    gpus, nvml_note = (gpu_probe or _nvml_gpus)()
    openvino_devices, openvino_note = _openvino()
    litert, litert_note = _litert()
    return HardwareReport(
        cpu=cpu,
        memory_total_bytes=memory[0],
        memory_available_bytes=memory[1],
        onnxruntime_version=str(onnxruntime.__version__),
        providers=tuple(provider_info(name, cpu, gpus) for name in names),
        gpus=tuple(gpus),
        gpu_note=_gpu_note(names, gpus, nvml_note) or None,
        openvino_devices=openvino_devices,
        openvino_note=openvino_note,
        litert_available=litert,
        litert_note=litert_note,
    )
