"""``/proc/cpuinfo`` texts of the CPUs Shipyard may land on, to inject into the hardware probe.

Each is trimmed to what :func:`shipyard.hardware.parse_cpuinfo` reads (model name, core ids,
flags or Features), with the flags those machines report.
"""

from __future__ import annotations

__all__ = ["AMX_XEON", "ARM_N1", "AVX2_EPYC", "AVX512_SKYLAKE", "CPUS", "VNNI_XEON"]

_BASE = (
    "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr"
    " sse sse2 ht syscall nx pdpe1gb rdtscp lm constant_tsc rep_good nopl cpuid pni pclmulqdq"
    " ssse3 fma cx16 sse4_1 sse4_2 x2apic movbe popcnt aes xsave avx f16c rdrand hypervisor"
    " lahf_lm abm bmi1 avx2 smep bmi2 erms rdseed adx smap clflushopt sha_ni xsaveopt xsavec"
)
_AVX512 = " avx512f avx512dq avx512cd avx512bw avx512vl"


def _x86(model: str, flags: str, cores: int = 2) -> str:
    return "\n".join(
        f"processor\t: {i}\nmodel name\t: {model}\nphysical id\t: 0\ncore id\t\t: {i}\n"
        f"flags\t\t: {flags}\n"
        for i in range(cores)
    )


#: AMD EPYC (Zen 2/3, e.g. a c5a/c6a vCPU): AVX2, FMA and F16C; no AVX-512, no VNNI.
AVX2_EPYC = _x86("AMD EPYC 7R13 Processor", _BASE)
#: Intel Skylake-SP: AVX-512 without VNNI (the U8S8 kernels still saturate).
AVX512_SKYLAKE = _x86("Intel(R) Xeon(R) Platinum 8175M CPU @ 2.50GHz", _BASE + _AVX512)
#: Intel Cascade Lake: AVX-512 VNNI.
VNNI_XEON = _x86("Intel(R) Xeon(R) Platinum 8275CL CPU @ 3.00GHz", _BASE + _AVX512 + " avx512_vnni")
#: Intel Sapphire Rapids: AVX-512 VNNI, BF16 and AMX.
AMX_XEON = _x86(
    "Intel(R) Xeon(R) Platinum 8488C",
    _BASE + _AVX512 + " avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8",
)
#: AWS Graviton2 (Arm Neoverse-N1): NEON and DOTPROD.
ARM_N1 = "\n".join(
    f"processor\t: {i}\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp"
    " asimdhp cpuid asimdrdm lrcpc dcpop asimddp ssbs\n"
    "CPU implementer\t: 0x41\nCPU architecture: 8\nCPU part\t: 0xd0c\n"
    for i in range(2)
)

#: Every CPU above by a short name, with its architecture (``platform.machine()``).
CPUS = {
    "avx2-epyc": (AVX2_EPYC, "x86_64"),
    "avx512-skylake": (AVX512_SKYLAKE, "x86_64"),
    "vnni-xeon": (VNNI_XEON, "x86_64"),
    "amx-xeon": (AMX_XEON, "x86_64"),
    "arm-n1": (ARM_N1, "aarch64"),
}
