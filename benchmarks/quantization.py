"""fp32 vs graph-optimized vs int8-dynamic vs int8-static for the MNIST-sized CNN, one run.

Builds ``shipyard.testing.cnn_model()`` (FP32 1x28x28 in, 10 probabilities out), makes each
candidate with the same code ``shipyard optimize`` uses (:func:`make_candidate`), then times all
four with :func:`benchmark_models` under Shipyard's default session options (intra-op threads
"auto", which is one thread for this cheap CNN; graph optimization "all"), interleaved in
rounds so drift on a shared machine hits every variant alike; each keeps its best round.
Calibration and validation data are smooth random blobs shaped like MNIST digits. Prints a
Markdown table with ratios against fp32 and the machine it ran on; paste it into
``benchmarks/RESULTS.md``.

    .venv/bin/python benchmarks/quantization.py [--seconds 2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np

from shipyard.config import ModelConfig
from shipyard.hardware import probe
from shipyard.optimize.benchmark import BenchmarkSettings, Measurement, benchmark_models
from shipyard.optimize.data import Dataset
from shipyard.optimize.guard import accuracy_guard, arrays_runner
from shipyard.optimize.quantize import Method, make_candidate
from shipyard.testing import cnn_model
from shipyard.types import DataType, TensorSpec

INPUTS = (TensorSpec("input", DataType.FP32, (-1, 1, 28, 28)),)
OUTPUTS = (TensorSpec("probabilities", DataType.FP32, (-1, 10)),)
METHODS: dict[str, Method | None] = {
    "fp32": None,
    "optimized": "none",
    "int8-dynamic": "int8-dynamic",
    "int8-static": "int8-static",
}


def blobs(count: int, seed: int) -> np.ndarray:
    """MNIST-shaped images: one smooth blob each, plus a little noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:28, 0:28]
    centres = rng.uniform(6, 22, size=(count, 2))
    dist = (yy - centres[:, 0, None, None]) ** 2 + (xx - centres[:, 1, None, None]) ** 2
    images = np.exp(-dist / 30.0) + rng.normal(0, 0.05, size=(count, 28, 28))
    result: np.ndarray = images.astype(np.float32)[:, None]
    return result


def main() -> None:
    """Make the candidates, time them in one run, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per phase and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32, help="throughput batch")
    args = parser.parse_args()
    calibration = Dataset({"input": blobs(256, 1)}, None, "blobs")
    validation = Dataset({"input": blobs(512, 2)}, None, "blobs")
    config = ModelConfig("cnn")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        paths: dict[str, Path] = {"fp32": root / "fp32.onnx"}
        paths["fp32"].write_bytes(cnn_model().SerializeToString())
        for label, method in METHODS.items():
            if method is None:
                continue
            folder = root / label
            folder.mkdir()
            paths[label] = folder / "model.onnx"
            make_candidate(
                method,
                paths["fp32"],
                paths[label],
                inputs=INPUTS,
                calibration=calibration,
            )
        agreement = _agreement(paths, config, validation)
        settings = BenchmarkSettings(
            latency_seconds=args.seconds,
            throughput_seconds=args.seconds,
            throughput_batch=args.batch,
            rounds=args.rounds,
        )
        load_before = os.getloadavg()[0]
        timed = benchmark_models(paths, config, settings, validation.arrays, print)
        load_after = os.getloadavg()[0]
        sizes = {label: path.stat().st_size for label, path in paths.items()}
    _print(timed, sizes, agreement, args, (load_before, load_after))


def _agreement(
    paths: dict[str, Path], config: ModelConfig, validation: Dataset
) -> dict[str, float]:
    from shipyard.backends.onnxruntime import OnnxRuntimeBackend

    names = [s.name for s in OUTPUTS]
    base = OnnxRuntimeBackend(paths["fp32"], config)
    result = {}
    for label, path in paths.items():
        cand = OnnxRuntimeBackend(path, config)
        figures = accuracy_guard(
            arrays_runner(base.run, names),
            arrays_runner(cand.run, names),
            validation,
            INPUTS,
            OUTPUTS,
            "top1-agreement",
        )
        result[label] = figures["top1_agreement"]
    return result


def _print(
    timed: dict[str, Measurement],
    sizes: dict[str, int],
    agreement: dict[str, float],
    args: argparse.Namespace,
    load: tuple[float, float],
) -> None:
    hw = probe()
    base = timed["fp32"]
    print()
    print(
        f"{hw.cpu.model}, {hw.cpu.logical_cores} logical cores"
        f" ({', '.join(f for f in hw.cpu.features if 'VNNI' in f or 'AMX' in f) or 'no VNNI'}),"
        f" ONNX Runtime {hw.onnxruntime_version}, intra-op threads 'auto' (1 for this CNN);"
        f" {args.rounds} interleaved"
        f" rounds of {args.seconds:g} s per phase, best round; load average {load[0]:.1f} ->"
        f" {load[1]:.1f}"
    )
    print()
    print(
        "| variant | size | p50 batch 1 | p99 batch 1 | latency vs fp32 |"
        f" images/s batch {args.batch} | throughput vs fp32 | top-1 agreement |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for label, m in timed.items():
        print(
            f"| {label} | {sizes[label] / 1024:.0f} KiB | {m.latency.p50_ms * 1000:.0f} µs"
            f" | {m.latency.p99_ms * 1000:.0f} µs"
            f" | {base.latency.p50_ms / m.latency.p50_ms:.2f}x"
            f" | {m.throughput.samples_per_s:,.0f}"
            f" | {m.throughput.samples_per_s / base.throughput.samples_per_s:.2f}x"
            f" | {agreement[label]:.1%} |"
        )


if __name__ == "__main__":
    main()
