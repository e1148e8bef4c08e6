"""What a model written in Python costs the server, against the same work in ONNX Runtime.

Three measurements, each printed as a table and written (not for ``--quick`` runs unless
``--results`` is given) between the markers of its section in ``benchmarks/RESULTS.md``:

1. **The worker transport**, in this process: one ``PythonBackend`` running an identity
   model.py, tensors of 16 B to 16 MiB, over shared memory (the default arena) and over the
   socket alone (``shared_memory_bytes = 0``): microseconds per batch and throughput.
2. **Identity models served**: ``shipyard serve --allow-python-models`` in a subprocess with
   an ONNX identity and a Python identity (FP32 [1, 4] in and out), driven by
   ``python -m shipyard.loadgen`` (closed loop, HTTP binary tensors and gRPC raw contents) at
   concurrency 1, 8 and 64. **Server CPU per request** is the CPU time of the server process
   and its worker processes (``/proc``: utime + stime) over the requests answered; the
   target of issue 17 is a Python identity under 2x the ONNX identity's at concurrency 64.
3. **The recommender example** (``examples/recommender``, trained with ``train.py --reuse``):
   Python candidate and top-k steps around the ONNX scorer, one user per request.

Run ``benchmarks/python_models.py --quick`` for a check (2 s rows) and without it for the
numbers (10 s rows, about 4 minutes).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from shipyard.backends.python import PythonBackend, WorkerSpec
from shipyard.loadgen.grpc import encode_request as grpc_request
from shipyard.loadgen.http import raw_request
from shipyard.testing import identity_model, write_model, write_python_model
from shipyard.testing.process import cpu_seconds
from shipyard.types import DataType, TensorSpec

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from serve_overhead import Process, free_port, loadavg, machine, printed_port, wait_ready  # noqa: E402

RESULTS = HERE / "RESULTS.md"
BEGIN = "<!-- python_models: begin (written by benchmarks/python_models.py) -->"
END = "<!-- python_models: end -->"
HOST = "127.0.0.1"

IDENTITY = """\
import shipyard


class Model(shipyard.PythonModel):
    def predict(self, batch):
        return {"OUTPUT0": batch["INPUT0"]}
"""

IDENTITY_TOML = """\
[[inputs]]
name = "INPUT0"
datatype = "FP32"
shape = [-1, {width}]

[[outputs]]
name = "OUTPUT0"
datatype = "FP32"
shape = [-1, {width}]

[python]
shared_memory_bytes = {memory}
"""

# -- 1. the worker transport ---------------------------------------------------------------


def transport_rows(seconds: float) -> list[str]:
    """µs per identity batch and MB/s, shared memory vs socket, by tensor size."""
    lines = [
        "| tensor | shared memory µs/batch | socket µs/batch | shared memory GB/s | socket GB/s |",
        "|---|--:|--:|--:|--:|",
    ]
    with tempfile.TemporaryDirectory(prefix="shipyard-transport-") as tmp:
        folder = Path(tmp)
        (folder / "model.py").write_text(IDENTITY)
        spec = TensorSpec("INPUT0", DataType.FP32, (-1, -1))
        out = TensorSpec("OUTPUT0", DataType.FP32, (-1, -1))
        backends = {
            memory: PythonBackend.start(
                WorkerSpec(
                    "identity",
                    1,
                    folder,
                    "model:Model",
                    "model.py",
                    (spec,),
                    (out,),
                    1,
                    shared_memory_bytes=memory,
                )
            )
            for memory in (64 * 1024 * 1024, 0)
        }
        try:
            for size in (16, 64 * 1024, 1024 * 1024, 16 * 1024 * 1024):
                x = np.random.default_rng(0).random((1, size // 4), dtype=np.float32)
                cells = []
                for backend in backends.values():
                    for _ in range(3):  # the arena's pages are touched once before timing
                        backend.run({"INPUT0": x}, ["OUTPUT0"])
                    calls, start = 0, time.perf_counter()
                    while time.perf_counter() - start < seconds or calls < 3:
                        (y,) = backend.run({"INPUT0": x}, ["OUTPUT0"])
                        calls += 1
                    elapsed = time.perf_counter() - start
                    assert np.array_equal(y, x)
                    cells.append((elapsed / calls * 1e6, 2 * x.nbytes * calls / elapsed / 1e9))
                label = f"{size:,} B" if size < 1024 else f"{size // 1024:,} KiB"
                (shm_us, shm_gbs), (pipe_us, pipe_gbs) = cells
                line = (
                    f"| {label} | {shm_us:,.0f} | {pipe_us:,.0f} | {shm_gbs:.2f} | {pipe_gbs:.2f} |"
                )
                print(f"  {line}", flush=True)
                lines.append(line)
        finally:
            for backend in backends.values():
                backend.close()
    return lines


# -- 2 and 3. served -----------------------------------------------------------------------


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of ``pid`` and every live descendant, from /proc."""
    total = 0.0
    stack = [pid]
    while stack:
        current = stack.pop()
        with contextlib.suppress(OSError):
            total += cpu_seconds(current)
            for task in Path(f"/proc/{current}/task").iterdir():
                stack.extend(int(c) for c in (task / "children").read_text().split())
    return total


@contextlib.contextmanager
def server(repository: Path) -> Iterator[tuple[Process, int, int]]:
    """``shipyard serve --allow-python-models`` in a subprocess; its HTTP and gRPC ports."""
    shipyard = Path(sys.executable).parent / "shipyard"
    argv = [str(shipyard), "serve", str(repository), "--http-port", "0"]
    argv += ["--grpc-port", str(free_port()), "--allow-python-models", "--log-level", "warning"]
    process = Process([*argv, "--drain-timeout", "2"])
    try:
        deadline = time.monotonic() + 120
        port = grpc_port = 0
        while not (port and grpc_port):
            if process.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"shipyard serve did not start:\n{process.output()}")
            port, grpc_port = printed_port(process, "http"), printed_port(process, "grpc")
            time.sleep(0.05)
        wait_ready(process, port, 120)
        yield process, port, grpc_port
    finally:
        process.stop()


def loadgen(
    port: int,
    request: bytes,
    protocol: str,
    concurrency: int,
    warmup: float,
    duration: float,
    scratch: Path,
) -> dict[str, Any]:
    """One ``python -m shipyard.loadgen`` run; its JSON summary."""
    path = scratch / "request.bin"
    path.write_bytes(request)
    argv = [sys.executable, "-m", "shipyard.loadgen", "--port", str(port), "--request", str(path)]
    argv += ["--protocol", protocol, "--concurrency", str(concurrency)]
    argv += ["--warmup", str(warmup), "--duration", str(duration)]
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=warmup + duration + 60, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"loadgen failed:\n{done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def measure(
    pid: int, port: int, request: bytes, protocol: str, concurrency: int, args: Any, scratch: Path
) -> dict[str, Any]:
    """Warm up, then one measured window with the server's CPU time around it."""
    loadgen(port, request, protocol, concurrency, 0.0, args.warmup, scratch)
    before = process_cpu_s(pid)
    result = loadgen(port, request, protocol, concurrency, 0.0, args.duration, scratch)
    spent = process_cpu_s(pid) - before
    answered = result["requests"] + result["error_count"]
    result["server_cpu_us"] = spent / answered * 1e6 if answered else float("nan")
    return result


def requests(model: str, name: str, array: np.ndarray, port: int) -> dict[str, bytes]:
    """The HTTP binary and gRPC raw requests for one tensor."""
    raw = array.astype(array.dtype.newbyteorder("<")).tobytes()
    datatype = DataType.from_numpy(array.dtype)
    header = {
        "inputs": [
            {
                "name": name,
                "shape": list(array.shape),
                "datatype": datatype.value,
                "parameters": {"binary_data_size": len(raw)},
            }
        ],
        "parameters": {"binary_data_output": True},
    }
    head = json.dumps(header, separators=(",", ":")).encode()
    headers = {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(len(head)),
    }
    return {
        "http": raw_request(HOST, port, f"/v2/models/{model}/infer", head + raw, headers),
        "grpc": grpc_request(model, None, [(name, datatype, array)]),
    }


def recommender_repository(repository: Path) -> bool:
    """Train (or reuse) the example and add it to ``repository``; False when it cannot."""
    example = ROOT / "examples" / "recommender"
    done = subprocess.run(
        [sys.executable, str(example / "train.py"), "--reuse"],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if done.returncode != 0:
        print(f"recommender skipped: train.py failed:\n{done.stderr[-1000:]}")
        return False
    built = subprocess.run(
        [sys.executable, str(example / "build_repository.py"), str(repository)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if built.returncode != 0:
        print(f"recommender skipped: build_repository.py failed:\n{built.stderr[-1000:]}")
        return False
    return True


def served_rows(args: Any, scratch: Path) -> list[dict[str, Any]]:
    """Every model, protocol and concurrency, measured on one server."""
    repository = scratch / "repository"
    write_model(repository, "onnx_identity", identity_model())
    memory = 64 * 1024 * 1024
    write_python_model(
        repository, "python_identity", IDENTITY, IDENTITY_TOML.format(width=4, memory=memory)
    )
    models = {
        "onnx_identity": ("INPUT0", np.array([[1, 2, 3, 4]], np.float32)),
        "python_identity": ("INPUT0", np.array([[1, 2, 3, 4]], np.float32)),
    }
    if not args.no_recommender and recommender_repository(repository):
        models["recommender"] = ("user_id", np.array([[42]], np.int64))
    rows = []
    with server(repository) as (process, port, grpc_port):
        for model, (name, array) in models.items():
            bodies = requests(model, name, array, port)
            for protocol in args.protocols:
                target = port if protocol == "http" else grpc_port
                for concurrency in args.concurrency:
                    result = measure(
                        process.proc.pid,
                        target,
                        bodies[protocol],
                        protocol,
                        concurrency,
                        args,
                        scratch,
                    )
                    row = {"model": model, "protocol": protocol, **result}
                    print(f"  {format_row(row)}", flush=True)
                    rows.append(row)
    return rows


def format_row(row: dict[str, Any]) -> str:
    """One line of the served table."""
    encoding = "HTTP binary" if row["protocol"] == "http" else "gRPC raw"
    p50 = "-" if row["p50_ms"] is None else f"{row['p50_ms']:.2f}"
    p99 = "-" if row["p99_ms"] is None else f"{row['p99_ms']:.2f}"
    return (
        f"| {row['model']} | {encoding} | {row['concurrency']} | {row['rps']:,.0f} | {p50} "
        f"| {p99} | {row['error_count']} | {row['server_cpu_us']:,.0f} | {row.get('ratio', '-')} |"
    )


def served_table(rows: list[dict[str, Any]]) -> list[str]:
    """The served rows with the CPU ratio to the ONNX identity at the same load."""
    onnx = {
        (r["protocol"], r["concurrency"]): r["server_cpu_us"]
        for r in rows
        if r["model"] == "onnx_identity"
    }
    for row in rows:
        base = onnx.get((row["protocol"], row["concurrency"]))
        if base and row["model"] != "onnx_identity":
            row["ratio"] = f"{row['server_cpu_us'] / base:.2f}x"
    head = (
        "| model | encoding | conc. | req/s | p50 ms | p99 ms | errors | server CPU µs/req "
        "| x ONNX identity CPU |"
    )
    return [head, "|---|---|--:|--:|--:|--:|--:|--:|--:|", *(format_row(r) for r in rows)]


def targets(rows: list[dict[str, Any]]) -> list[str]:
    """Issue 17's target, checked against this run (reported, not asserted)."""
    out = []
    for protocol in ("http", "grpc"):
        python = next(
            (
                r
                for r in rows
                if r["model"] == "python_identity"
                and r["protocol"] == protocol
                and r["concurrency"] == 64
            ),
            None,
        )
        if python is None or "ratio" not in python:
            continue
        ratio = float(python["ratio"].rstrip("x"))
        encoding = "HTTP binary" if protocol == "http" else "gRPC raw"
        out.append(
            f"- {'met' if ratio < 2 else 'NOT met'}: c=64 {encoding}, Python identity "
            f"server CPU per request under 2x the ONNX identity's: {ratio:.2f}x"
        )
    return out


def write_results(path: Path, text: str) -> None:
    """Replace this benchmark's section between its markers (append it when missing)."""
    section = f"{BEGIN}\n{text}\n{END}"
    old = path.read_text(encoding="utf-8") if path.exists() else "# Benchmark results\n"
    if BEGIN in old and END in old:
        before, rest = old.split(BEGIN, 1)
        path.write_text(before + section + rest.split(END, 1)[1], encoding="utf-8")
        return
    path.write_text(
        old.rstrip("\n") + "\n\n## python_models\n\n" + section + "\n", encoding="utf-8"
    )


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, measure, print, write RESULTS.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per row [10]")
    parser.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds per row [1]")
    parser.add_argument("--quick", action="store_true", help="2 s rows, 0.5 s warm-up")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument(
        "--protocols", nargs="+", choices=["http", "grpc"], default=["http", "grpc"]
    )
    parser.add_argument("--no-recommender", action="store_true", help="skip the example's rows")
    parser.add_argument("--results", type=Path, default=None, help="[benchmarks/RESULTS.md]")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.warmup = 2.0, 0.5
    results = args.results or (None if args.quick else RESULTS)
    info, load_before, started = machine(), loadavg(), time.monotonic()
    print(f"{info['cpu']}, {info['cores']} cores; load {load_before}")
    print("worker transport, in process (identity model.py)")
    transport = transport_rows(max(0.5, args.duration / 5))
    print("served (shipyard serve --allow-python-models)")
    with tempfile.TemporaryDirectory(prefix="shipyard-bench-python-") as tmp:
        rows = served_rows(args, Path(tmp))
    command = " ".join(
        ["benchmarks/python_models.py", *(argv if argv is not None else sys.argv[1:])]
    )
    text = "\n".join(
        [
            f"Run of {info['date']}: `{command}`",
            "",
            f"- CPU: {info['cpu']}, {info['cores']} cores (server, workers, load generator and "
            "everything else share them)",
            f"- Python {info['python']}, onnxruntime {info['onnxruntime']}, numpy {info['numpy']}, "
            f"Linux {info['kernel']}",
            f"- load average (1/5/15 min) before: {load_before}; after: {loadavg()}",
            f"- {args.duration:g} s measured per served row after {args.warmup:g} s of warm-up",
            "",
            "The worker transport (one identity model.py worker, in process, one batch at a time):",
            "",
            *transport,
            "",
            "Served, one request of FP32 [1, 4] (identity models) or one user (recommender):",
            "",
            *served_table(rows),
            "",
            "Server CPU: user + system time of the server and its worker processes over the "
            "requests answered in the window.",
            "",
            "Target (issue 17, reported, not asserted):",
            "",
            *targets(rows),
        ]
    )
    print()
    print(text)
    print(f"\n(took {time.monotonic() - started:.0f} s)")
    if results is not None:
        write_results(results, text)
        print(f"written to {results}")
    else:
        print("quick run: RESULTS.md left alone (pass --results PATH to write)")


if __name__ == "__main__":
    main()
