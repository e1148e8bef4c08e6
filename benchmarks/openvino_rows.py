"""The OpenVINO rows of ``serve_overhead.py --openvino``: the same two models on the other engine.

For the MNIST-sized CNN and ResNet-18: raw OpenVINO in this process (Shipyard's backend class,
f32, the threads "auto" would choose: one for the CNN, OpenVINO's default for ResNet-18), then
``shipyard serve`` with ``backend = "openvino"`` and otherwise default settings, binary tensors
over HTTP and raw tensors over gRPC. Each served model's answer is checked against ONNX
Runtime's first. The table's "x ORT" column divides by the same model's raw ONNX Runtime row,
so it says which engine wins for which model on the machine that ran it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from serve_overhead import (
    INPUT,
    RESNET,
    Row,
    check_answer,
    check_grpc_answer,
    load,
    load_row,
    ort_session,
    raw_request,
    requests,
    shipyard_server,
)

from shipyard.backends.openvino import OpenVinoBackend
from shipyard.config import OnnxRuntimeConfig, parse_model_config
from shipyard.loadgen.grpc import encode_request as grpc_request
from shipyard.testing.models import cnn_model, write_model
from shipyard.types import DataType

__all__ = ["OPENVINO", "openvino_rows", "openvino_table"]

OPENVINO = "OpenVINO"


def raw_openvino(
    path: Path, batch: int, warmup_s: float, duration_s: float, image: tuple[int, ...],
    threads: int, target: str, note: str = "",
) -> Row:  # fmt: skip
    """Call the OpenVINO backend's ``run`` back to back (as serve_overhead's raw ORT rows)."""
    config = parse_model_config("m", {"openvino": {"intra_op_threads": threads}})
    backend = OpenVinoBackend(path, config)
    feed = {INPUT: np.random.default_rng(1).random((batch, *image), dtype=np.float32)}
    outputs = [backend.outputs[0].name]
    end = time.perf_counter() + warmup_s
    while time.perf_counter() < end:
        backend.run(feed, outputs)
    times: list[int] = []
    clock = time.perf_counter_ns
    start = now = clock()
    stop = start + int(duration_s * 1e9)
    while now < stop:
        backend.run(feed, outputs)
        done = clock()
        times.append(done - now)
        now = done
    p50, p99 = np.percentile(np.array(times) / 1e6, [50, 99])
    backend.close()
    return Row(target, f"batch {batch}", 1, batch * len(times) / ((now - start) / 1e9), p50, p99,
               note=note)  # fmt: skip


def _served(
    args: Any, scratch: Path, model: Path, name: str, image: tuple[int, ...],
    levels: list[int], grpc: bool, atol: float, label: str,
) -> list[Row]:  # fmt: skip
    repository = scratch / f"{name}-openvino"
    (repository / name / "1").mkdir(parents=True)
    (repository / name / "1" / "model.onnx").write_bytes(model.read_bytes())
    (repository / name / "model.toml").write_text('backend = "openvino"\n', encoding="utf-8")
    pixels = np.random.default_rng(0).random((1, *image), dtype=np.float32)
    expected = ort_session(model, OnnxRuntimeConfig()).run(None, {INPUT: pixels})[0]
    body, headers = requests(pixels)["binary"]
    path = f"/v2/models/{name}/infer"
    rows = []
    with shipyard_server(repository) as (port, grpc_port):
        check_answer(port, path, body, headers, expected, atol=atol)
        request = raw_request(port, path, body, headers)
        for c in levels:
            result = load(port, request, c, args.warmup, args.duration, scratch)
            rows.append(load_row(label, "binary", result))
        if grpc:
            payload = grpc_request(name, None, [(INPUT, DataType.FP32, pixels)])
            check_grpc_answer(grpc_port, payload, expected)
            for c in levels:
                result = load(grpc_port, payload, c, args.warmup, args.duration, scratch, "grpc")
                rows.append(load_row(label, "grpc raw", result))
    return rows


def openvino_rows(args: Any, scratch: Path) -> list[Row]:
    """Raw OpenVINO and ``shipyard serve`` on OpenVINO, for the CNN and (unless --no-resnet)
    ResNet-18."""
    print("OpenVINO: raw (Shipyard's backend, f32), then shipyard serve with backend openvino")
    cnn = write_model(scratch / "cnn-source", "cnn", cnn_model())
    raw = f"raw {OPENVINO}"
    rows = [
        raw_openvino(cnn, 1, args.warmup, args.duration, (1, 28, 28), 1, raw),
        raw_openvino(cnn, 32, args.warmup, args.duration, (1, 28, 28), 1, raw),
    ]
    for row in rows:
        print(f"  batch {row.encoding}: {row.rps:,.0f} img/s", flush=True)
    rows += _served(args, scratch, cnn, "cnn", (1, 28, 28), list(args.concurrency), True, 1e-5,
                    f"shipyard ({OPENVINO})")  # fmt: skip
    if not args.no_resnet:
        from resnet18 import resnet18_onnx

        model = resnet18_onnx()
        image = (3, 224, 224)
        target = f"raw {OPENVINO} ({RESNET})"
        rows.append(raw_openvino(model, 1, args.warmup, args.duration, image, 0, target,
                                 "default threads"))  # fmt: skip
        print(f"  {RESNET} batch 1: {rows[-1].rps:.1f} img/s", flush=True)
        rows += _served(args, scratch, model, "resnet", image, [1, 8], False, 1e-3,
                        f"shipyard ({OPENVINO}, {RESNET})")  # fmt: skip
    return rows


def openvino_table(rows: list[Row]) -> list[str]:
    """The OpenVINO rows; "x ORT" is req/s over the same model's raw ONNX Runtime batch-1 row
    (the CNN: 1 thread; ResNet-18: default threads)."""
    picked = [r for r in rows if OPENVINO in r.target]
    if not picked:
        return []
    base_cnn = next(
        (r.rps for r in rows if r.target == "raw ONNX Runtime" and r.encoding == "batch 1"), 0.0
    )
    base_resnet = next((r.rps for r in rows if r.target == f"raw ONNX Runtime ({RESNET})"), 0.0)
    lines = [
        "| target | encoding | c | req/s | p50 ms | p99 ms | errors | x ORT batch 1 |",
        "|---|---|--:|--:|--:|--:|--:|--:|",
    ]
    for row in picked:
        base = base_resnet if RESNET in row.target else base_cnn
        target = f"{row.target} ({row.note})" if row.note else row.target
        ratio = f"{row.rps / base:.2f}" if base else "-"
        lines.append(
            f"| {target} | {row.encoding} | {row.concurrency} | {row.rps:,.1f} "
            f"| {row.p50_ms:.2f} | {row.p99_ms:.2f} | {row.errors} | {ratio} |"
        )
    return lines
