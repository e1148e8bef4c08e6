"""Verify GPU serving on a real NVIDIA GPU, in one go (run by ``gpu_check.sh``, which makes the
fresh virtual environment with ``onnxruntime-gpu`` and the CUDA runtime wheels first).

1. ``shipyard hw`` must list the GPU and the CUDA provider (the probe the tuner reads).
2. The MNIST-sized CNN (``shipyard.testing.cnn_model``, or ``--mnist FILE``: the real one) and
   ResNet-18 (built here with ``onnx.helper``, seeded random weights: no torch needed) load
   through Shipyard's ONNX Runtime backend on ``CUDAExecutionProvider``: no CPU fallback note,
   I/O binding on; their outputs must match the CPU's within each model's tolerance, with and
   without I/O binding.
3. ``shipyard serve`` serves both on CUDA (``[onnxruntime] providers`` in model.toml); its
   answers must match the CPU's; loading them reported no warning.
4. Load at concurrency 1, 8 and 64: raw ONNX Runtime GPU in this process (that many threads
   calling one session) against ``shipyard serve`` over HTTP (binary tensors) and gRPC (raw
   contents), each from ``python -m shipyard.loadgen`` in its own process.
5. ``shipyard optimize --quantize fp16`` on ResNet-18 with CUDA (guards as usual).
6. Writes ``OUT/gpu-results.md`` (the table for RESULTS.md) and ``OUT/gpu-results.json``.

Exit status: 0 when every check passed, 1 when one failed (the table says which), 2 when
there is no usable GPU provider.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import json
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from serve_overhead import (  # noqa: E402
    INPUT,
    Row,
    check_answer,
    check_grpc_answer,
    load,
    load_row,
    raw_request,
    requests,
    shipyard_server,
)

from shipyard.backends.onnxruntime import OnnxRuntimeBackend  # noqa: E402
from shipyard.config import parse_model_config  # noqa: E402
from shipyard.loadgen.grpc import encode_request as grpc_request  # noqa: E402
from shipyard.testing.models import cnn_model  # noqa: E402
from shipyard.types import DataType  # noqa: E402

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
#: Largest |GPU - CPU| accepted per model: probabilities of the CNN, logits of ResNet-18 (CUDA
#: may use TF32 for convolutions on Ampere and later, ~1e-3 relative).
TOLERANCE = {"cnn": 1e-4, "resnet18": 2e-2}
IMAGES = {"cnn": (1, 28, 28), "resnet18": (3, 224, 224)}


def resnet18(path: Path) -> Path:
    """ResNet-18 (He et al., 2015) as ONNX, batch norm folded into the convolutions."""
    rng = np.random.default_rng(0)
    nodes: list[onnx.NodeProto] = []
    weights: list[onnx.TensorProto] = []
    count = iter(range(10_000))

    def conv(x: str, cin: int, cout: int, k: int, stride: int, relu: bool) -> str:
        n = next(count)
        w = rng.normal(0, np.sqrt(2 / (cin * k * k)), (cout, cin, k, k)).astype(np.float32)
        weights.extend(
            [
                numpy_helper.from_array(w, f"w{n}"),
                numpy_helper.from_array(np.zeros(cout, np.float32), f"b{n}"),
            ]
        )
        nodes.append(
            helper.make_node(
                "Conv", [x, f"w{n}", f"b{n}"], [f"c{n}"], strides=[stride] * 2, pads=[k // 2] * 4
            )
        )
        if not relu:
            return f"c{n}"
        nodes.append(helper.make_node("Relu", [f"c{n}"], [f"r{n}"]))
        return f"r{n}"

    def block(x: str, cin: int, cout: int, stride: int) -> str:
        out = conv(conv(x, cin, cout, 3, stride, True), cout, cout, 3, 1, False)
        skip = conv(x, cin, cout, 1, stride, False) if stride != 1 or cin != cout else x
        n = next(count)
        nodes.extend(
            [
                helper.make_node("Add", [out, skip], [f"a{n}"]),
                helper.make_node("Relu", [f"a{n}"], [f"o{n}"]),
            ]
        )
        return f"o{n}"

    x = conv("input", 3, 64, 7, 2, True)
    nodes.append(
        helper.make_node(
            "MaxPool", [x], ["pool"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]
        )
    )
    x, cin = "pool", 64
    for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        x = block(block(x, cin, cout, stride), cout, cout, 1)
        cin = cout
    fc = rng.normal(0, 0.01, (512, 1000)).astype(np.float32)
    weights += [
        numpy_helper.from_array(fc, "fc"),
        numpy_helper.from_array(np.zeros(1000, np.float32), "fcb"),
    ]
    nodes += [
        helper.make_node("GlobalAveragePool", [x], ["gap"]),
        helper.make_node("Flatten", ["gap"], ["flat"]),
        helper.make_node("Gemm", ["flat", "fc", "fcb"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "resnet18",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 224, 224])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 1000])],
        initializer=weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


class Checks:
    """Pass/fail lines, printed as they come."""

    def __init__(self) -> None:
        self.lines: list[tuple[bool, str]] = []

    def __call__(self, ok: bool, text: str) -> bool:
        self.lines.append((ok, text))
        print(f"[{'ok' if ok else 'FAILED'}] {text}", flush=True)
        return ok

    @property
    def passed(self) -> bool:
        return all(ok for ok, _ in self.lines)


def probe_hardware(check: Checks) -> dict[str, Any]:
    """``shipyard hw``'s view: the GPU through NVML and the CUDA provider."""
    from shipyard.hardware import probe

    report = probe()
    check(
        bool(report.gpus), f"hw finds the GPU: {[g.name for g in report.gpus] or report.gpu_note}"
    )
    names = [p.name for p in report.providers]
    check(CUDA in names, f"hw lists the CUDA provider ({', '.join(names)})")
    from shipyard.tuning.variants import suitable_providers

    check(suitable_providers(report, "fp16")[:1] == (CUDA,), "tune would try fp16 on CUDA")
    return report.to_dict()


def parity(name: str, path: Path, check: Checks) -> dict[str, Any]:
    """Shipyard's backend on CUDA (I/O binding on, then off) against the CPU provider."""
    cpu = OnnxRuntimeBackend(path, parse_model_config(name, {"onnxruntime": {"providers": [CPU]}}))
    gpu = OnnxRuntimeBackend(path, parse_model_config(name, {"onnxruntime": {"providers": [CUDA]}}))
    plain = OnnxRuntimeBackend(
        path, parse_model_config(name, {"onnxruntime": {"providers": [CUDA], "io_binding": False}})
    )
    check(
        gpu.providers[:1] == (CUDA,) and not gpu.notes,
        f"{name}: the session runs on {gpu.providers[0]} (notes: {gpu.notes or 'none'})",
    )
    check(gpu.io_binding and not plain.io_binding, f"{name}: I/O binding is on by default on CUDA")
    out = gpu.outputs[0].name
    worst = {"io_binding": 0.0, "run": 0.0}
    for batch in (1, 8):
        x = np.random.default_rng(batch).random((batch, *IMAGES[name]), dtype=np.float32)
        want = cpu.run({INPUT: x}, [out])[0]
        for label, backend in (("io_binding", gpu), ("run", plain)):
            got = backend.run({INPUT: x}, [out])[0]
            worst[label] = max(worst[label], float(np.abs(got - want).max()))
    tol = TOLERANCE[name]
    check(max(worst.values()) <= tol, f"{name}: GPU vs CPU max |diff| {worst} <= {tol:g}")
    return {"max_abs_diff": worst, "tolerance": tol}


def raw_gpu(path: Path, name: str, concurrency: int, warmup_s: float, duration_s: float) -> Row:
    """``concurrency`` threads calling one CUDA session at batch 1 (ORT releases the GIL)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=[CUDA, CPU])
    feed = {INPUT: np.random.default_rng(0).random((1, *IMAGES[name]), dtype=np.float32)}
    times: list[list[int]] = [[] for _ in range(concurrency)]
    start_at = time.perf_counter() + warmup_s
    stop_at = start_at + duration_s
    barrier = threading.Barrier(concurrency)

    def worker(i: int) -> None:
        barrier.wait()
        while time.perf_counter() < start_at:
            session.run(None, feed)
        clock = time.perf_counter_ns
        now = clock()
        while now < stop_at * 1e9:
            session.run(None, feed)
            done = clock()
            times[i].append(done - now)
            now = done

    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(worker, range(concurrency)))
    flat = np.concatenate([np.array(t, dtype=np.float64) for t in times]) / 1e6
    p50, p99 = np.percentile(flat, [50, 99])
    return Row(f"raw ORT-GPU ({name})", "in process", concurrency, len(flat) / duration_s, p50, p99)


def served(name: str, path: Path, args: Any, scratch: Path, check: Checks) -> list[Row]:
    """``shipyard serve`` on CUDA: answers checked, then loaded over HTTP binary and gRPC."""
    from shipyard.server.app import describe_repository

    repository = scratch / f"repo-{name}"
    (repository / name / "1").mkdir(parents=True)
    (repository / name / "1" / "model.onnx").write_bytes(path.read_bytes())
    toml = '[onnxruntime]\nproviders = ["CUDAExecutionProvider"]\n'
    (repository / name / "model.toml").write_text(toml, encoding="utf-8")
    import asyncio

    from shipyard.config import ServerConfig

    rows_table = asyncio.run(describe_repository(ServerConfig(repository=repository)))
    warnings = [w for row in rows_table for w in row.get("warnings", [])]
    check(not warnings, f"{name}: loading on CUDA warned about nothing ({warnings or 'none'})")
    pixels = np.random.default_rng(0).random((1, *IMAGES[name]), dtype=np.float32)
    cpu = OnnxRuntimeBackend(path, parse_model_config(name, {"onnxruntime": {"providers": [CPU]}}))
    expected = cpu.run({INPUT: pixels}, [cpu.outputs[0].name])[0]
    body, headers = requests(pixels)["binary"]
    route = f"/v2/models/{name}/infer"
    rows: list[Row] = []
    with shipyard_server(repository) as (port, grpc_port):
        try:
            check_answer(port, route, body, headers, expected, atol=TOLERANCE[name])
            check(True, f"{name}: served answer (HTTP) matches the CPU's")
        except RuntimeError as exc:
            check(False, f"{name}: served answer (HTTP): {exc}")
        payload = grpc_request(name, None, [(INPUT, DataType.FP32, pixels)])
        if name == "cnn":  # check_grpc_answer compares at 1e-5, the CNN's probabilities
            try:
                check_grpc_answer(grpc_port, payload, expected)
                check(True, f"{name}: served answer (gRPC) matches the CPU's")
            except RuntimeError as exc:
                check(False, f"{name}: served answer (gRPC): {exc}")
        request = raw_request(port, route, body, headers)
        for c in args.concurrency:
            result = load(port, request, c, args.warmup, args.duration, scratch)
            rows.append(load_row(f"shipyard ({name}, CUDA)", "HTTP binary", result))
        for c in args.concurrency:
            result = load(grpc_port, payload, c, args.warmup, args.duration, scratch, "grpc")
            rows.append(load_row(f"shipyard ({name}, CUDA)", "gRPC raw", result))
    return rows


def fp16(path: Path, scratch: Path, check: Checks) -> dict[str, Any]:
    """``shipyard optimize --quantize fp16`` of ResNet-18 with CUDA in model.toml."""
    repository = scratch / "repo-fp16"
    (repository / "resnet18" / "1").mkdir(parents=True)
    (repository / "resnet18" / "1" / "model.onnx").write_bytes(path.read_bytes())
    toml = '[onnxruntime]\nproviders = ["CUDAExecutionProvider"]\n'
    (repository / "resnet18" / "model.toml").write_text(toml, encoding="utf-8")
    shipyard = Path(sys.executable).parent / "shipyard"
    done = subprocess.run(
        [
            str(shipyard),
            "optimize",
            f"{repository}/resnet18",
            "--quantize",
            "fp16",
            "--metric",
            "cosine",
            "--max-drop",
            "0.001",
            "--bench-seconds",
            "0.5",
            "--bench-rounds",
            "2",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    try:
        report = json.loads(done.stdout)
    except ValueError:
        check(False, f"fp16: optimize printed no report: {done.stderr[-500:]}")
        return {}
    accuracy = report.get("accuracy", {})
    check(bool(accuracy.get("passed")), f"fp16: accuracy guard on CUDA: {accuracy.get('drop')}")
    speed = report.get("speed_guard", {})
    print(f"fp16 decision: {report.get('decision')} ({speed.get('verdict', '')})", flush=True)
    return {"decision": report.get("decision"), "accuracy": accuracy, "speed_guard": speed}


def table(rows: list[Row]) -> list[str]:
    """Markdown rows: target, transport, concurrency, req/s, p50, p99, errors."""
    lines = [
        "| target | transport | c | req/s | p50 ms | p99 ms | errors |",
        "|---|---|--:|--:|--:|--:|--:|",
    ]
    for row in rows:
        lines.append(
            f"| {row.target} | {row.encoding} | {row.concurrency} | {row.rps:,.1f} "
            f"| {row.p50_ms:.2f} | {row.p99_ms:.2f} | {row.errors} |"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    """Run every step; write the table and the JSON into ``--out``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("gpu-check"))
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per row [5]")
    parser.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds per row [1]")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--mnist", type=Path, help="the real MNIST CNN's model.onnx [test CNN]")
    args = parser.parse_args(argv)
    import onnxruntime as ort

    if hasattr(ort, "preload_dlls"):  # the CUDA/cuDNN wheels' libraries (onnxruntime-gpu 1.21+)
        ort.preload_dlls()
    print(f"onnxruntime {ort.__version__}: providers {ort.get_available_providers()}", flush=True)
    if CUDA not in ort.get_available_providers():
        print("no CUDAExecutionProvider: install onnxruntime-gpu (gpu_check.sh does)")
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    check = Checks()
    results: dict[str, Any] = {"hardware": probe_hardware(check), "models": {}}
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="shipyard-gpu-") as tmp:
        scratch = Path(tmp)
        cnn = scratch / "cnn.onnx"
        if args.mnist:
            cnn.write_bytes(args.mnist.read_bytes())
        else:
            onnx.save(cnn_model(), str(cnn))
        models = {"cnn": cnn, "resnet18": resnet18(scratch / "resnet18.onnx")}
        for name, path in models.items():
            results["models"][name] = {"parity": parity(name, path, check)}
            for c in args.concurrency:
                rows.append(raw_gpu(path, name, c, args.warmup, args.duration))
                print(f"  raw ORT-GPU {name} c={c}: {rows[-1].rps:,.0f} req/s", flush=True)
            rows += served(name, path, args, scratch, check)
        results["fp16"] = fp16(models["resnet18"], scratch, check)
    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    gpu = ", ".join(g["name"] for g in results["hardware"]["gpus"]) or "no GPU seen by NVML"
    text = [
        f"GPU check of {now}: {gpu}; onnxruntime {ort.__version__};"
        f" {platform.processor() or platform.machine()}, Python {platform.python_version()};"
        f" {args.duration:g} s per row after {args.warmup:g} s warm-up (`benchmarks/gpu_check.sh`)",
        "",
        *table(rows),
        "",
        "Checks:",
        "",
        *(f"- {'ok' if ok else 'FAILED'}: {line}" for ok, line in check.lines),
    ]
    (args.out / "gpu-results.md").write_text("\n".join(text) + "\n", encoding="utf-8")
    results["rows"] = [row.__dict__ for row in rows]
    results["checks"] = [{"ok": ok, "check": line} for ok, line in check.lines]
    (args.out / "gpu-results.json").write_text(json.dumps(results, indent=2, default=str), "utf-8")
    print("\n".join(text))
    return 0 if check.passed else 1


if __name__ == "__main__":
    sys.exit(main())
