"""Int8 on this CPU: full-range against 7-bit (``reduce_range``) weights, for the demo's models.

For the MNIST CNN (int8-static, calibrated on 512 training digits, accuracy on the 1,500 test
digits) and all-MiniLM-L6-v2 (int8-dynamic per channel, cosine of the sentence embeddings on
the demo's 19 validation sentences), runs ``shipyard optimize`` with ``--reduce-range off`` and
``on`` on a scratch copy of ``demo-repo/`` (``make demo`` builds it), and prints one Markdown
table: quality, latency and throughput against fp32, with the CPU's int8 kernels
(``shipyard hw``). Paste it into ``benchmarks/RESULTS.md`` ("Int8 and the CPU").

    .venv/bin/python benchmarks/int8_cpu.py [--repo demo-repo] [--seconds 1] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from shipyard.hardware import int8_kernels, probe
from shipyard.optimize import BenchmarkSettings, optimize

ROOT = Path(__file__).resolve().parent.parent
MNIST_DATA = ROOT / "examples" / "mnist" / "build"
TEXT_DATA = ROOT / "examples" / "text-embeddings" / "build"


def _row(model: str, weights: str, report: dict[str, Any]) -> str:
    accuracy, guard = report["accuracy"], report.get("speed_guard", {})
    if "candidate_accuracy" in accuracy:
        quality = (
            f"accuracy {accuracy['candidate_accuracy']:.2%} "
            f"(fp32 {accuracy['baseline_accuracy']:.2%})"
        )
    else:
        quality = f"cosine {accuracy['cosine']:.4f}"
    latency = guard.get("latency_speedup")
    throughput = guard.get("throughput_speedup")
    noise = guard.get("noise", {})

    def speed(value: float | None, spread: float | None) -> str:
        if value is None:
            return "-"
        return f"{value:.2f}x" + (f" (±{spread:.0%})" if spread is not None else "")

    return (
        f"| {model} | {weights} | {quality} | {'pass' if accuracy['passed'] else 'FAIL'} "
        f"| {speed(latency, noise.get('latency'))} "
        f"| {speed(throughput, noise.get('throughput'))} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=ROOT / "demo-repo")
    parser.add_argument("--seconds", type=float, default=1.0, help="per phase and round [1]")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    needed = [
        args.repo / "mnist" / "1" / "model.onnx",
        args.repo / "minilm" / "1" / "model.onnx",
        MNIST_DATA / "calibration.npz",
        MNIST_DATA / "validation.npz",
        TEXT_DATA / "validation.npz",
    ]
    missing = [str(p) for p in needed if not p.is_file()]
    if missing:
        raise SystemExit(f"missing {', '.join(missing)}: run `DEMO_SERVE=0 make demo` first")
    settings = BenchmarkSettings(
        latency_seconds=args.seconds, throughput_seconds=args.seconds, rounds=args.rounds
    )
    hardware = probe()
    kernels = int8_kernels(hardware.cpu)
    lines = [
        f"{hardware.cpu.model}, {hardware.cpu.logical_cores} logical cores; int8 kernels:"
        f" {kernels.family} ({kernels.description}); ONNX Runtime {hardware.onnxruntime_version}",
        "",
        "| model | int8 weights | quality | guard | latency vs fp32 | throughput vs fp32 |",
        "|---|---|---|---|--:|--:|",
    ]
    cases = [
        ("MNIST CNN, int8-static", "mnist", "int8-static", None, "accuracy"),
        ("MiniLM, int8-dynamic", "minilm", "int8-dynamic", "cosine", "cosine"),
    ]
    for title, name, method, metric, _ in cases:
        for setting, label in (("off", "full range"), ("on", "7-bit (reduce_range)")):
            with tempfile.TemporaryDirectory(prefix="shipyard-int8-") as tmp:
                repo = Path(tmp)
                shutil.copytree(args.repo / name, repo / name, ignore=_newer_versions)
                data = (
                    {
                        "calibration": MNIST_DATA / "calibration.npz",
                        "validation": MNIST_DATA / "validation.npz",
                    }
                    if name == "mnist"
                    else {"validation": TEXT_DATA / "validation.npz"}
                )
                print(f"{title}, {label}...", flush=True)
                result = optimize(
                    repo,
                    name,
                    version=1,
                    method=method,
                    metric=metric,
                    reduce_range=setting,
                    benchmark=settings,
                    **data,
                )
                lines.append(_row(title, label, result.report))
    print("\n".join(lines))


def _newer_versions(folder: str, names: list[str]) -> list[str]:
    """Copy only version 1 (fp32) and the model's files, not later versions."""
    return [n for n in names if n.isdigit() and n != "1"]


if __name__ == "__main__":
    main()
