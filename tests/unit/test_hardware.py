"""Tests for shipyard.hardware: /proc parsers on real-format fixtures, precisions, the probe."""

from __future__ import annotations

import json

import onnxruntime
import pytest
from click.testing import CliRunner

from shipyard.cli import main
from shipyard.hardware import (
    SCHEMA,
    CpuInfo,
    GpuInfo,
    int8_kernels,
    int8_mismatch,
    parse_cpuinfo,
    parse_meminfo,
    probe,
    provider_info,
)
from tests.cpus import AMX_XEON, ARM_N1, AVX2_EPYC, CPUS, VNNI_XEON

_X86_FLAGS = (
    "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr"
    " sse sse2 ss ht syscall nx pdpe1gb rdtscp lm constant_tsc rep_good nopl xtopology"
    " nonstop_tsc cpuid tsc_known_freq pni pclmulqdq ssse3 fma cx16 pcid sse4_1 sse4_2 x2apic"
    " movbe popcnt aes xsave avx f16c rdrand hypervisor lahf_lm abm 3dnowprefetch fsgsbase"
    " bmi1 avx2 smep bmi2 erms invpcid avx512f avx512dq rdseed adx smap clflushopt clwb"
    " avx512cd avx512bw avx512vl xsaveopt xsavec xgetbv1 xsaves avx512_vnni md_clear"
    " arch_capabilities"
)


def _x86_block(processor: int, core: int) -> str:
    return (
        f"processor\t: {processor}\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 85\n"
        "model name\t: Intel(R) Xeon(R) Platinum 8275CL CPU @ 3.00GHz\nstepping\t: 7\n"
        f"physical id\t: 0\nsiblings\t: 4\ncore id\t\t: {core}\ncpu cores\t: 2\n"
        f"flags\t\t: {_X86_FLAGS}\nbogomips\t: 5999.99\n"
    )


# An AWS c5 (Cascade Lake) vCPU view: 2 cores with hyper-threading, AVX-512 VNNI.
X86_CPUINFO = "\n".join(_x86_block(p, c) for p, c in ((0, 0), (1, 1), (2, 0), (3, 1)))

# A Graviton2 (Neoverse-N1): no "model name", identified by implementer/part.
ARM_N1_CPUINFO = "\n".join(
    f"processor\t: {i}\nBogoMIPS\t: 243.75\n"
    "Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid"
    " asimdrdm lrcpc dcpop asimddp ssbs\n"
    "CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x3\n"
    "CPU part\t: 0xd0c\nCPU revision\t: 1\n"
    for i in range(4)
)

# A Graviton3 (Neoverse-V1) with SVE, I8MM and BF16.
ARM_V1_CPUINFO = (
    "processor\t: 0\nBogoMIPS\t: 2100.00\n"
    "Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid"
    " asimdrdm jscvt fcma lrcpc dcpop sha3 sm3 sm4 asimddp sha512 sve asimdfhm dit uscat"
    " ilrcpc flagm ssbs paca pacg dcpodp svei8mm svebf16 i8mm bf16 dgh rng\n"
    "CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x1\n"
    "CPU part\t: 0xd40\nCPU revision\t: 1\n"
)

MEMINFO = "MemTotal:       16203140 kB\nMemFree:         9061400 kB\nMemAvailable:   14114296 kB\n"


def test_parse_x86_cpuinfo_with_avx512_vnni() -> None:
    """x86 text: model name, SMT-aware core counts and the AVX-512/VNNI features are found."""
    cpu = parse_cpuinfo(X86_CPUINFO, "x86_64")
    assert cpu.model == "Intel(R) Xeon(R) Platinum 8275CL CPU @ 3.00GHz"
    assert (cpu.physical_cores, cpu.logical_cores) == (2, 4)
    assert cpu.architecture == "x86_64"
    assert cpu.features == ("AVX2", "FMA", "F16C", "AVX-512F", "AVX-512BW", "AVX-512 VNNI")


def test_parse_arm_cpuinfo_neoverse_n1() -> None:
    """ARM text without a model name: the core is named from implementer/part; NEON, DOTPROD."""
    cpu = parse_cpuinfo(ARM_N1_CPUINFO, "aarch64")
    assert cpu.model == "Arm Neoverse-N1"
    assert (cpu.physical_cores, cpu.logical_cores) == (4, 4)
    assert cpu.features == ("NEON", "NEON FP16", "DOTPROD")


def test_parse_arm_cpuinfo_sve_i8mm_bf16() -> None:
    """ARM text with SVE, I8MM and BF16 lists them; the architecture defaults to aarch64."""
    cpu = parse_cpuinfo(ARM_V1_CPUINFO)
    assert cpu.model == "Arm Neoverse-V1"
    assert cpu.architecture == "aarch64"
    assert {"SVE", "I8MM", "BF16", "DOTPROD"} <= set(cpu.features)
    assert "SVE2" not in cpu.features


def test_parse_meminfo_in_bytes() -> None:
    """MemTotal and MemAvailable are read in kB and returned in bytes."""
    assert parse_meminfo(MEMINFO) == (16203140 * 1024, 14114296 * 1024)
    assert parse_meminfo("") == (None, None)


def test_cpu_precisions_follow_the_isa() -> None:
    """VNNI makes int8 'fast'; without it int8 is flagged; bf16 only with a BF16 feature."""
    vnni = provider_info("CPUExecutionProvider", parse_cpuinfo(X86_CPUINFO))
    assert vnni.precisions == ("fp32", "int8")
    assert "int8 fast (AVX-512 VNNI)" in vnni.notes
    plain = provider_info("CPUExecutionProvider", CpuInfo("old", "x86_64", 4, 8, ("AVX2",)))
    assert "rarely faster" in plain.notes
    graviton3 = provider_info("CPUExecutionProvider", parse_cpuinfo(ARM_V1_CPUINFO))
    assert graviton3.precisions == ("fp32", "int8", "bf16")


def test_gpu_path_with_injected_providers() -> None:
    """GPU logic with an injected provider list and NVML result (no GPU on the test machine)."""
    h100 = GpuInfo("NVIDIA H100 80GB HBM3", 80 * 2**30, "9.0", "550.54")
    report = probe(
        cpuinfo_text=X86_CPUINFO,
        meminfo_text=MEMINFO,
        providers=["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
        gpu_probe=lambda: ([h100], None),
    )
    assert report.gpu_note is None
    assert report.gpus == (h100,)
    cuda = {p.name: p for p in report.providers}["CUDAExecutionProvider"]
    assert cuda.device == "gpu"
    assert cuda.precisions == ("fp32", "fp16", "int8", "bf16")
    t4 = GpuInfo("Tesla T4", 16 * 2**30, "7.5")
    older = probe(providers=["CUDAExecutionProvider"], gpu_probe=lambda: ([t4], None))
    assert "bf16" not in older.providers[0].precisions


def test_gpu_absent_is_said_plainly_for_each_cause() -> None:
    """A GPU provider without a device, and a GPU without a GPU provider, are both explained."""
    no_device = probe(
        providers=["CUDAExecutionProvider", "CPUExecutionProvider"],
        gpu_probe=lambda: ([], "NVML could not start (driver not loaded): no NVIDIA driver"),
    )
    assert no_device.gpu_note is not None
    assert no_device.gpu_note.startswith("no GPU found: ONNX Runtime has CUDAExecutionProvider")
    assert "no NVIDIA driver" in no_device.gpu_note
    cpu_build = probe(
        providers=["CPUExecutionProvider"], gpu_probe=lambda: ([GpuInfo("NVIDIA A10")], None)
    )
    assert cpu_build.gpu_note is not None
    assert "install onnxruntime-gpu" in cpu_build.gpu_note


def test_probe_this_machine() -> None:
    """On this machine: the CPU provider is listed with fp32, and a missing GPU is said so."""
    report = probe()
    providers = {p.name: p for p in report.providers}
    assert "fp32" in providers["CPUExecutionProvider"].precisions
    assert report.cpu.logical_cores >= 1
    assert report.onnxruntime_version == onnxruntime.__version__
    if not report.gpus:
        assert report.gpu_note is not None
        assert report.gpu_note.startswith("no GPU found")


def test_json_schema_is_stable() -> None:
    """The JSON form has exactly the documented keys at each level and survives json.dumps."""
    data = json.loads(json.dumps(probe(cpuinfo_text=X86_CPUINFO).to_dict()))
    assert data["schema"] == SCHEMA
    assert set(data) == {"schema", "cpu", "memory", "gpus", "gpu_note", "onnxruntime"} | {
        "openvino",
        "litert",
        "int8_kernels",
    }
    assert set(data["int8_kernels"]) == {"family", "description", "saturates"}
    assert set(data["cpu"]) == {
        "model",
        "architecture",
        "physical_cores",
        "logical_cores",
        "features",
    }
    assert set(data["memory"]) == {"total_bytes", "available_bytes"}
    assert set(data["onnxruntime"]) == {"version", "providers"}
    for provider in data["onnxruntime"]["providers"]:
        assert set(provider) == {"name", "device", "precisions", "notes"}
    assert set(data["openvino"]) == {"devices", "note"}
    assert set(data["litert"]) == {"available", "note"}


def test_cli_hw_table_and_json() -> None:
    """``shipyard hw`` prints the provider table; ``--json`` prints the schema'd document."""
    runner = CliRunner()
    table = runner.invoke(main, ["hw"], catch_exceptions=False)
    assert table.exit_code == 0
    assert "CPUExecutionProvider" in table.output
    assert "GPU" in table.output
    as_json = runner.invoke(main, ["hw", "--json"], catch_exceptions=False)
    assert as_json.exit_code == 0
    assert json.loads(as_json.output)["schema"] == SCHEMA


@pytest.mark.parametrize(
    ("cpu", "family", "saturates"),
    [
        ("avx2-epyc", "x86-no-vnni", True),
        ("avx512-skylake", "x86-no-vnni", True),
        ("vnni-xeon", "x86-vnni", False),
        ("amx-xeon", "x86-vnni", False),
        ("arm-n1", "arm", False),
    ],
)
def test_int8_kernels_follow_the_isa(cpu: str, family: str, saturates: bool) -> None:
    """x86 without VNNI/AMX sums int8 products in 16 bits (saturates); VNNI, AMX, ARM do not."""
    text, machine = CPUS[cpu]
    kernels = int8_kernels(parse_cpuinfo(text, machine))
    assert (kernels.family, kernels.saturates) == (family, saturates)


def test_int8_kernels_describe_what_decided() -> None:
    """The description names the widest x86 ISA, or the VNNI/AMX features that were found."""
    assert int8_kernels(parse_cpuinfo(AVX2_EPYC)).description == "x86 AVX2 without VNNI/AMX"
    amx = int8_kernels(parse_cpuinfo(AMX_XEON)).description
    assert amx == "x86 with AVX-512 VNNI, AMX-INT8"
    assert int8_kernels(parse_cpuinfo(ARM_N1, "aarch64")).description == "ARM DOTPROD"


def test_int8_mismatch_flags_another_isa() -> None:
    """Full-range int8 made on VNNI and served on AVX2 is flagged as saturating; 7-bit made on
    AVX2 and served on VNNI as imprecise; the same family is not flagged."""
    avx2, vnni, arm = (
        parse_cpuinfo(AVX2_EPYC),
        parse_cpuinfo(VNNI_XEON),
        parse_cpuinfo(ARM_N1, "aarch64"),
    )
    full = {"family": "x86-vnni", "description": "x86 with AVX-512 VNNI", "reduce_range": False}
    reduced = {
        "family": "x86-no-vnni",
        "description": "x86 AVX2 without VNNI/AMX",
        "reduce_range": True,
    }
    assert int8_mismatch(full, vnni) is None
    assert int8_mismatch(reduced, avx2) is None
    saturating = int8_mismatch(full, avx2)
    assert saturating is not None
    assert "saturates them" in saturating
    assert "x86 with AVX-512 VNNI" in saturating
    imprecise = int8_mismatch(reduced, vnni)
    assert imprecise is not None
    assert "7-bit weights" in imprecise
    other = int8_mismatch(full, arm)
    assert other is not None
    assert "not measured on this kind of CPU" in other
    assert int8_mismatch({}, avx2) is None


def test_report_carries_the_int8_kernels() -> None:
    """The JSON report and the short summary name the int8 kernels of the probed CPU."""
    report = probe(cpuinfo_text=AVX2_EPYC)
    assert report.to_dict()["int8_kernels"]["family"] == "x86-no-vnni"
    assert report.summary()["int8_kernels"] == "x86-no-vnni"
