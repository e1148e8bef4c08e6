"""How much a request through Shipyard costs over calling ONNX Runtime directly.

Serves an MNIST-sized CNN (FP32 1x28x28 in, 10 out) with ``shipyard serve`` in a subprocess
and drives it from a separate load-generator process (``python -m shipyard.loadgen``: closed
loop, keep-alive connections or a gRPC channel, pre-encoded requests) at concurrency 1, 8 and
64 with JSON and binary tensors over HTTP and raw tensor contents over gRPC. The same run
measures the comparison rows:

* raw ONNX Runtime in this process at batch 1 and 32, with the server's session options (the
  limit; its batch-32 throughput is the "x ORT32" column);
* the floor: a plain FastAPI + uvicorn + ONNX Runtime endpoint (``floor_app.py``, JSON, no
  batching, the same ONNX Runtime settings) in its own virtual environment, ``.bench-venv``,
  created on first use ("x floor" column, same concurrency);
* the server's ONNX Runtime settings at concurrency 64 with binary tensors: intra-op threads
  1 vs 2 and instance_count 1 vs 2 (via ``model.toml``);
* the same JSON, binary and gRPC rows with ``shipyard serve --workers N`` (the ``workers``
  group, N from ``--workers``, 2 by default): N worker processes sharing the ports; the plain
  "shipyard" rows are the one-process baseline;
* a compute-bound model, ResNet-18 (``resnet18.py``, ~1.8 GFLOP per image): raw ONNX Runtime
  at batch 1 with its default threads and with one, against ``shipyard serve`` with default
  settings (``intra_op_threads = "auto"``) at concurrency 1 and 8, binary;
* optionally the same models on OpenVINO (``--openvino``; ``openvino_rows.py``);
* optionally Triton's perf_analyzer as a second load generator (``--perf-analyzer``; installed
  by ``setup_perf_analyzer.sh``);
* optionally the same ``shipyard serve`` rows with TLS on both transports (``--tls``: a
  certificate for 127.0.0.1 made by trustme, HTTPS and gRPC over TLS from the load generator).

Prints one table and writes it, with the machine's description, between the markers in
``benchmarks/RESULTS.md`` (not for ``--quick`` runs unless ``--results`` is given).

``--only`` runs some groups of rows. The server (and load generator) under test are the
``shipyard`` first on ``PYTHONPATH``, so two versions compare with the same script, e.g. the
gRPC/HTTP ratio at concurrency 64 of another checkout:
``PYTHONPATH=/path/to/other/src python benchmarks/serve_overhead.py --only binary grpc
--concurrency 64 --results /tmp/other.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import datetime
import http.client
import json
import os
import platform
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from shipyard.config import OnnxRuntimeConfig
from shipyard.loadgen.grpc import encode_request as grpc_request
from shipyard.loadgen.http import raw_request as http_request
from shipyard.protocol import grpc_service_pb2 as pb
from shipyard.testing.models import cnn_model, write_model
from shipyard.types import DataType

ROOT = Path(__file__).resolve().parent.parent
HERE = ROOT / "benchmarks"
RESULTS = HERE / "RESULTS.md"
BEGIN = "<!-- serve_overhead: begin (written by benchmarks/serve_overhead.py) -->"
END = "<!-- serve_overhead: end -->"
MODEL = "cnn"
INPUT, OUTPUT = "input", "probabilities"
RESNET = "ResNet-18"
HOST = "127.0.0.1"
FLOOR_VENV = ROOT / ".bench-venv"
FLOOR_PACKAGES = ["fastapi", "uvicorn[standard]", "onnxruntime", "numpy"]
#: The server's ONNX Runtime settings compared at concurrency 64, binary (model.toml text).
#: The groups of rows, in the order they run (--only picks some).
GROUPS = ("raw", "floor", "json", "binary", "grpc", "workers", "tuning", "resnet")
TUNING = {
    "intra=1 inst=1": "",
    "intra=2 inst=1": "[onnxruntime]\nintra_op_threads = 2\n",
    "intra=1 inst=2": "instance_count = 2\n",
    "intra=2 inst=2": "instance_count = 2\n[onnxruntime]\nintra_op_threads = 2\n",
}


@dataclasses.dataclass
class Row:
    """One line of the table."""

    target: str
    encoding: str
    concurrency: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int = 0
    client_cpu: float = float("nan")
    note: str = ""


# -- the machine ---------------------------------------------------------------------------


def machine() -> dict[str, str]:
    """What ran the benchmark: CPU, cores, versions, date, load."""
    cpu = platform.processor() or "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    import uvicorn

    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "python": platform.python_version(),
        "onnxruntime": ort.__version__,
        "numpy": np.__version__,
        "uvicorn": uvicorn.__version__,
        "kernel": platform.release(),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def loadavg() -> str:
    """The 1, 5 and 15 minute load averages."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def wait_for_idle(limit_s: float, threshold: float = 1.0, every_s: float = 30.0) -> str:
    """Wait (at most ``limit_s``) for the 1-minute load to drop below ``threshold``."""
    deadline = time.monotonic() + limit_s
    while True:
        load = loadavg()
        with contextlib.suppress(ValueError):
            if float(load.split()[0]) < threshold:
                return load
        if time.monotonic() + every_s > deadline:
            print(f"load still {load} after waiting {limit_s:.0f} s; measuring anyway", flush=True)
            return load
        print(f"load {load}; waiting for the 1-minute load to drop below {threshold}", flush=True)
        time.sleep(every_s)


# -- raw ONNX Runtime ----------------------------------------------------------------------


def ort_session(path: Path, config: OnnxRuntimeConfig, threads: int = 1) -> ort.InferenceSession:
    """A session with the options Shipyard's backend sets (see backends/onnxruntime.py);
    ``threads`` intra-op threads (what "auto" chooses for the CNN: 1; 0: ORT's default)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = config.inter_op_threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    spin = "1" if config.allow_spinning else "0"
    options.add_session_config_entry("session.intra_op.allow_spinning", spin)
    options.add_session_config_entry("session.inter_op.allow_spinning", spin)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def raw_ort(
    path: Path,
    batch: int,
    warmup_s: float,
    duration_s: float,
    *,
    image: tuple[int, ...] = (1, 28, 28),
    threads: int = 1,
    target: str = "raw ONNX Runtime",
    note: str = "",
) -> Row:
    """Call ``session.run`` back to back; rps counts images (rows), latency is per call."""
    session = ort_session(path, OnnxRuntimeConfig(), threads)
    x = np.random.default_rng(1).random((batch, *image), dtype=np.float32)
    feed = {INPUT: x}
    run = session.run
    end = time.perf_counter() + warmup_s
    while time.perf_counter() < end:
        run(None, feed)
    times: list[int] = []
    clock = time.perf_counter_ns
    start = clock()
    stop = start + int(duration_s * 1e9)
    now = start
    while now < stop:
        run(None, feed)
        done = clock()
        times.append(done - now)
        now = done
    elapsed = (now - start) / 1e9
    p50, p99 = np.percentile(np.array(times) / 1e6, [50, 99])
    rps = batch * len(times) / elapsed
    return Row(target, f"batch {batch}", 1, rps, p50, p99, note=note)


# -- processes -----------------------------------------------------------------------------


class Process:
    """A child process whose output is collected by a thread (so its pipe never fills)."""

    def __init__(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.argv = argv
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=ROOT,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def output(self) -> str:
        return "\n".join(self.lines[-30:])

    def stop(self, timeout_s: float = 15.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._reader.join(5)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclasses.dataclass(frozen=True)
class Tls:
    """A CA and the server certificate it signed for 127.0.0.1 (PEM files)."""

    ca: Path
    cert: Path
    key: Path

    @classmethod
    def make(cls, folder: Path) -> Tls:
        """Make the CA and the certificate with trustme (a dev dependency) in ``folder``."""
        import trustme

        ca = trustme.CA()
        issued = ca.issue_cert(HOST)
        tls = cls(folder / "ca.pem", folder / "server.pem", folder / "server.key")
        ca.cert_pem.write_to_path(tls.ca)
        issued.private_key_pem.write_to_path(tls.key)
        for index, pem in enumerate(issued.cert_chain_pems):
            pem.write_to_path(tls.cert, append=index > 0)
        return tls

    def context(self) -> ssl.SSLContext:
        """A client context that trusts the CA."""
        return ssl.create_default_context(cafile=str(self.ca))


def call(
    port: int,
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    tls: Tls | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP(S) request to the local server (10 s timeout)."""
    conn = (
        http.client.HTTPConnection(HOST, port, timeout=10)
        if tls is None
        else http.client.HTTPSConnection(HOST, port, timeout=10, context=tls.context())
    )
    try:
        conn.request(method, path, body=body or None, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def wait_ready(
    process: Process, port: int, deadline_s: float = 60.0, tls: Tls | None = None
) -> None:
    """Poll ``/v2/health/ready`` until 200, the process exits, or the deadline passes."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if process.proc.poll() is not None:
            raise RuntimeError(f"{process.argv[0]} exited early:\n{process.output()}")
        with contextlib.suppress(OSError):
            if call(port, "GET", "/v2/health/ready", tls=tls)[0] == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"not ready after {deadline_s:.0f} s:\n{process.output()}")


def printed_port(process: Process, scheme: str) -> int:
    """The port of the ``scheme://127.0.0.1:PORT`` URL ``shipyard serve`` printed, or 0."""
    for line in list(process.lines):
        if f"{scheme}://{HOST}:" in line:
            return int(line.split(f"{scheme}://{HOST}:", 1)[1].split()[0].rstrip("/"))
    return 0


@contextlib.contextmanager
def shipyard_server(
    repository: Path, workers: int = 1, tls: Tls | None = None
) -> Iterator[tuple[int, int]]:
    """``shipyard serve REPO`` in a subprocess; yields its HTTP and gRPC ports once ready.

    HTTP takes a free port (``--http-port 0``); gRPC one picked here by binding port 0 and
    releasing it (``--grpc-port 0`` turns gRPC off). Both are read back from the startup output.
    ``workers`` > 1 serves with ``--workers`` (ready once every worker is).
    With ``tls``, both transports serve TLS with its certificate.
    """
    shipyard = Path(sys.executable).parent / "shipyard"
    argv = [str(shipyard), "serve", str(repository), "--http-port", "0"]
    argv += ["--grpc-port", str(free_port())]
    if workers > 1:
        argv += ["--workers", str(workers)]
    if tls is not None:
        argv += ["--tls-cert", str(tls.cert), "--tls-key", str(tls.key)]
    scheme = "http" if tls is None else "https"
    process = Process([*argv, "--log-level", "warning", "--drain-timeout", "2"])
    try:
        deadline = time.monotonic() + 60
        port = grpc_port = 0
        while not (port and grpc_port):
            if process.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"shipyard serve did not print its URLs:\n{process.output()}")
            port, grpc_port = printed_port(process, scheme), printed_port(process, "grpc")
            time.sleep(0.05)
        wait_ready(process, port, tls=tls)
        yield port, grpc_port
    finally:
        process.stop()


def floor_python(framework: str) -> Path:
    """The interpreter that runs the floor: .bench-venv's (FastAPI) or this one (Starlette)."""
    if framework == "starlette":
        return Path(sys.executable)
    python = FLOOR_VENV / "bin" / "python"
    probe = [str(python), "-c", "import fastapi, uvicorn, onnxruntime, numpy"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    print(f"creating {FLOOR_VENV.name} for the FastAPI floor ({' '.join(FLOOR_PACKAGES)})")
    subprocess.run([sys.executable, "-m", "venv", str(FLOOR_VENV)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", *FLOOR_PACKAGES],
        check=True,
        timeout=600,
    )
    return python


@contextlib.contextmanager
def floor_server(model: Path, framework: str) -> Iterator[int]:
    """The floor endpoint under uvicorn in a subprocess; yields its port once ready."""
    port = free_port()
    settings = dataclasses.asdict(OnnxRuntimeConfig(intra_op_threads=1))  # "auto" for the CNN
    env = {
        **os.environ,
        "FLOOR_MODEL": str(model),
        "FLOOR_ORT": json.dumps(settings),
        "FLOOR_FRAMEWORK": framework,
    }
    argv = [str(floor_python(framework)), "-m", "uvicorn", "floor_app:app"]
    argv += ["--app-dir", str(HERE), "--host", HOST, "--port", str(port)]
    process = Process([*argv, "--no-access-log", "--log-level", "warning"], env=env)
    try:
        wait_ready(process, port)
        yield port
    finally:
        process.stop()


# -- requests and load ---------------------------------------------------------------------


def requests(pixels: np.ndarray) -> dict[str, tuple[bytes, dict[str, str]]]:
    """The V2 request bodies (and headers) for one image (``pixels``: ``[1, ...]``), per
    encoding."""
    shape = list(pixels.shape)
    values = pixels.astype(np.float32).reshape(-1).tolist()
    as_json = {"inputs": [{"name": INPUT, "shape": shape, "datatype": "FP32", "data": values}]}
    raw = pixels.astype("<f4").tobytes()
    header = {
        "inputs": [
            {
                "name": INPUT,
                "shape": shape,
                "datatype": "FP32",
                "parameters": {"binary_data_size": len(raw)},
            }
        ],
        "parameters": {"binary_data_output": True},
    }
    head = json.dumps(header, separators=(",", ":")).encode()
    return {
        "json": (json.dumps(as_json).encode(), {"Content-Type": "application/json"}),
        "binary": (
            head + raw,
            {
                "Content-Type": "application/octet-stream",
                "Inference-Header-Content-Length": str(len(head)),
            },
        ),
    }


def raw_request(port: int, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    """The whole HTTP/1.1 request as bytes, built once and sent as is."""
    return http_request(HOST, port, path, body, headers)


def check_answer(
    port: int,
    path: str,
    body: bytes,
    headers: dict[str, str],
    expected: np.ndarray,
    atol: float = 1e-5,
    tls: Tls | None = None,
) -> None:
    """Send one request and compare the outputs with raw ONNX Runtime's."""
    status, response_headers, payload = call(port, "POST", path, body, headers, tls)
    if status != 200:
        raise RuntimeError(f"{path}: HTTP {status}: {payload[:300]!r}")
    length = {k.lower(): v for k, v in response_headers.items()}.get(
        "inference-header-content-length"
    )
    if length is None:
        got = np.asarray(json.loads(payload)["outputs"][0]["data"], dtype=np.float32)
    else:
        got = np.frombuffer(payload[int(length) :], dtype="<f4")
    if not np.allclose(got.reshape(-1), expected.reshape(-1), atol=atol):
        raise RuntimeError(f"{path}: wrong answer {got} (expected {expected})")


def check_grpc_answer(
    port: int, payload: bytes, expected: np.ndarray, tls: Tls | None = None
) -> None:
    """Send the gRPC request once and compare the probabilities with raw ONNX Runtime's."""
    import grpc

    address = f"{HOST}:{port}"
    channel = (
        grpc.insecure_channel(address)
        if tls is None
        else grpc.secure_channel(
            address, grpc.ssl_channel_credentials(root_certificates=tls.ca.read_bytes())
        )
    )
    with channel:
        call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        response = pb.ModelInferResponse.FromString(call(payload, timeout=10))
    got = np.frombuffer(response.raw_output_contents[0], dtype="<f4")
    if not np.allclose(got.reshape(-1), expected.reshape(-1), atol=1e-5):
        raise RuntimeError(f"gRPC: wrong answer {got} (expected {expected})")


def load(
    port: int,
    request: bytes,
    concurrency: int,
    warmup_s: float,
    duration_s: float,
    scratch: Path,
    protocol: str = "http",
    tls: Tls | None = None,
) -> dict[str, Any]:
    """Run ``python -m shipyard.loadgen`` in its own process; return its JSON summary."""
    path = scratch / "request.bin"
    path.write_bytes(request)
    argv = [sys.executable, "-m", "shipyard.loadgen", "--port", str(port), "--request", str(path)]
    argv += ["--protocol", protocol, "--concurrency", str(concurrency)]
    if tls is not None:
        argv += ["--tls-ca", str(tls.ca)]
    argv += ["--warmup", str(warmup_s), "--duration", str(duration_s)]
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=warmup_s + duration_s + 60, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"loadgen failed:\n{done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    if result["error_count"]:
        print(f"  {result['errors']} errors; first: {result['first_error'][:200]!r}")
    return result


def load_row(target: str, encoding: str, result: dict[str, Any], note: str = "") -> Row:
    nan = float("nan")
    row = Row(
        target,
        encoding,
        result["concurrency"],
        result["rps"],
        nan if result["p50_ms"] is None else result["p50_ms"],
        nan if result["p99_ms"] is None else result["p99_ms"],
        result["error_count"],
        result["client_cpu"],
        note,
    )
    print(f"  {format_row(row)}", flush=True)
    return row


# -- perf_analyzer -------------------------------------------------------------------------


def perf_analyzer_command() -> list[str]:
    """Install perf_analyzer if needed; return the command that runs it."""
    done = subprocess.run(
        ["bash", str(HERE / "setup_perf_analyzer.sh")],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"setup_perf_analyzer.sh failed:\n{done.stderr[-2000:]}")
    return done.stdout.strip().splitlines()[-1].split()


def perf_analyzer(
    command: list[str],
    port: int,
    encoding: str,
    concurrency: int,
    duration_s: float,
    scratch: Path,
    pixels: np.ndarray,
) -> Row:
    """One perf_analyzer measurement: three windows of duration/3 each.

    ``encoding`` is ``json`` or ``binary`` (HTTP, on ``port``) or ``grpc raw`` (gRPC on
    ``port``: tensors in ``raw_input_contents``, the only form perf_analyzer sends).
    """
    protocol = "grpc" if encoding == "grpc raw" else "http"
    report = scratch / f"pa-{encoding.replace(' ', '-')}-{concurrency}.csv"
    data = scratch / "pa-input.json"
    content = pixels.astype(np.float32).reshape(-1).tolist()
    data.write_text(json.dumps({"data": [{INPUT: {"content": content, "shape": [1, 28, 28]}}]}))
    window_ms = max(500, int(duration_s * 1000 / 3))
    argv = [*command, "-m", MODEL, "-u", f"{HOST}:{port}", "-i", protocol]
    argv += ["--concurrency-range", f"{concurrency}:{concurrency}", "--shape", "input:1,28,28"]
    # The same image as loadgen.py sends (perf_analyzer's own "random" data is not valid JSON
    # for every FP32 bit pattern); lenient stability, as the machine is shared.
    argv += ["--input-data", str(data), "-p", str(window_ms), "-r", "3", "-s", "100"]
    argv += ["-f", str(report)]
    if protocol == "http":
        argv += ["--input-tensor-format", encoding, "--output-tensor-format", encoding]
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=duration_s * 4 + 120, check=False
    )
    if done.returncode != 0 or not report.exists():
        output = (done.stdout + done.stderr)[-1500:]
        raise RuntimeError(f"perf_analyzer failed ({done.returncode}):\n{output}")
    with report.open(newline="") as f:
        (line,) = list(csv.DictReader(f))
    row = Row(
        "shipyard (perf_analyzer)",
        encoding,
        concurrency,
        float(line["Inferences/Second"]),
        float(line["p50 latency"]) / 1e3,
        float(line["p99 latency"]) / 1e3,
    )
    print(f"  {format_row(row)}", flush=True)
    return row


# -- the table -----------------------------------------------------------------------------

HEADER = (
    "| target | encoding | conc. | req/s | p50 ms | p99 ms | errors | x ORT32 | x floor "
    "| loadgen CPU |"
)
RULE = "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|"


def format_row(row: Row, ort32: float = 0.0, floor: float = 0.0) -> str:
    def ratio(base: float) -> str:
        return f"{row.rps / base:.2f}" if base else "-"

    cpu = "-" if row.client_cpu != row.client_cpu else f"{row.client_cpu:.0%}"
    target = f"{row.target} ({row.note})" if row.note else row.target
    return (
        f"| {target} | {row.encoding} | {row.concurrency} | {row.rps:,.0f} | {row.p50_ms:.2f} "
        f"| {row.p99_ms:.2f} | {row.errors} | {ratio(ort32)} | {ratio(floor)} | {cpu} |"
    )


def table(rows: list[Row]) -> list[str]:
    ort32 = next((r.rps for r in rows if r.encoding == "batch 32"), 0.0)
    floors = {r.concurrency: r.rps for r in rows if r.target.startswith("floor")}
    lines = [HEADER, RULE]
    for row in rows:
        if RESNET in row.target or "OpenVINO" in row.target:
            continue
        floor = 0.0 if row.target.startswith("raw") else floors.get(row.concurrency, 0.0)
        lines.append(format_row(row, ort32, floor))
    return lines


def resnet_table(rows: list[Row]) -> list[str]:
    """The ResNet-18 rows; "x ORT" is req/s over raw ORT batch 1 with its default threads."""
    base = next((r.rps for r in rows if r.target == f"raw ONNX Runtime ({RESNET})"), 0.0)
    picked = [r for r in rows if RESNET in r.target and "OpenVINO" not in r.target]
    if not picked:
        return []
    lines = [
        "| target | encoding | c | req/s | p50 ms | p99 ms | errors | x ORT (default threads) |",
        "|---|---|--:|--:|--:|--:|--:|--:|",
    ]
    for row in picked:
        target = f"{row.target} ({row.note})" if row.note else row.target
        ratio = f"{row.rps / base:.2f}" if base else "-"
        lines.append(
            f"| {target} | {row.encoding} | {row.concurrency} | {row.rps:,.1f} "
            f"| {row.p50_ms:.1f} | {row.p99_ms:.1f} | {row.errors} | {ratio} |"
        )
    return lines


def targets(rows: list[Row]) -> list[str]:
    """The issue's first targets, checked against this run (reported, not asserted)."""

    def find(target: str, encoding: str, concurrency: int) -> Row | None:
        return next(
            (
                r
                for r in rows
                if r.target == target and r.encoding == encoding and r.concurrency == concurrency
            ),
            None,
        )

    ort1, ort32 = find("raw ONNX Runtime", "batch 1", 1), find("raw ONNX Runtime", "batch 32", 1)
    floor = next((r for r in rows if r.target.startswith("floor") and r.concurrency == 64), None)
    binary, as_json = find("shipyard", "binary", 64), find("shipyard", "json", 64)
    over_grpc = find("shipyard", "grpc raw", 64)
    workers = sorted(
        (r for r in rows if r.target.startswith("shipyard (") and "workers)" in r.target),
        key=lambda r: (r.target, r.encoding, r.concurrency),
    )
    pa_binary = find("shipyard (perf_analyzer)", "binary", 64)
    pa_grpc = find("shipyard (perf_analyzer)", "grpc raw", 64)
    c1 = find("shipyard", "binary", 1)
    resnet_ort = find(f"raw ONNX Runtime ({RESNET})", "batch 1", 1)
    resnet_c8 = find(f"shipyard ({RESNET})", "binary", 8)
    out = []

    def line(ok: bool, text: str) -> None:
        out.append(f"- {'met' if ok else 'NOT met'}: {text}")

    if binary and floor:
        ratio = binary.rps / floor.rps
        line(ratio >= 3, f"c=64 binary >= 3x the floor: {ratio:.2f}x")
    if binary and ort32:
        share = binary.rps / ort32.rps
        line(share >= 0.25, f"c=64 binary >= 25% of raw ORT batch 32: {share:.0%}")
    if as_json and floor:
        ratio = as_json.rps / floor.rps
        line(ratio >= 1.5, f"c=64 JSON >= 1.5x the floor: {ratio:.2f}x")
    # Issue #3, like with like: each load generator against both transports.
    if over_grpc and binary:
        ratio = over_grpc.rps / binary.rps
        line(
            ratio >= 1.0,
            f"c=64 gRPC >= HTTP binary (issue #3), load from shipyard.loadgen: {ratio:.2f}x "
            f"({over_grpc.rps:,.0f} vs {binary.rps:,.0f} req/s)",
        )
    if pa_grpc and pa_binary:
        ratio = pa_grpc.rps / pa_binary.rps
        line(
            ratio >= 1.0,
            f"c=64 gRPC >= HTTP binary (issue #3), load from perf_analyzer: {ratio:.2f}x "
            f"({pa_grpc.rps:,.0f} vs {pa_binary.rps:,.0f} req/s)",
        )
    if c1 and ort1:
        gap = c1.p99_ms - ort1.p99_ms
        line(
            gap <= 0.5,
            f"c=1 binary p99 within 0.5 ms of raw ORT batch 1: {c1.p99_ms:.2f} ms vs "
            f"{ort1.p99_ms:.2f} ms p99 ({ort1.p50_ms:.2f} ms p50), +{gap:.2f} ms",
        )
    for row in workers:  # issue #14: --workers N against one process, same rows
        one = find("shipyard", row.encoding, row.concurrency)
        if one and row.concurrency == max(r.concurrency for r in workers):
            out.append(
                f"- {row.target} / one process, {row.encoding} c={row.concurrency}: "
                f"{row.rps / one.rps:.2f}x ({row.rps:,.0f} vs {one.rps:,.0f} req/s; on "
                f"{os.cpu_count()} cores, load generator included)"
            )
    if resnet_ort and resnet_c8:
        ratio = resnet_c8.rps / resnet_ort.rps
        line(
            ratio >= 0.95,
            f"ResNet-18 c=8 >= 0.95x raw ORT with its default threads (issue #10): {ratio:.2f}x"
            f" ({resnet_c8.rps:.1f} vs {resnet_ort.rps:.1f} img/s)",
        )
    return out


def openvino_lines(rows: list[Row]) -> list[str]:
    """The OpenVINO table of the report, if there are OpenVINO rows.

    Imported only then: a checkout on PYTHONPATH without the OpenVINO backend can still be
    measured with ``--only``.
    """
    if not any("OpenVINO" in r.target for r in rows):
        return []
    from openvino_rows import openvino_table

    return ["", "OpenVINO (`--openvino`; issue #16):", "", *openvino_table(rows)]


def report(
    rows: list[Row], info: dict[str, str], load_before: str, load_after: str, args: Any
) -> str:
    floor_name = next((r.target for r in rows if r.target.startswith("floor")), "floor")
    lines = [
        f"Run of {info['date']}: `{' '.join(['benchmarks/serve_overhead.py', *args.argv])}`",
        "",
        f"- CPU: {info['cpu']}, {info['cores']} cores (server, load generator and everything"
        " else share them)",
        f"- Python {info['python']}, onnxruntime {info['onnxruntime']}, numpy {info['numpy']},"
        f" uvicorn {info['uvicorn']}, Linux {info['kernel']}",
        f"- load average (1/5/15 min) before: {load_before}; after: {load_after}",
        f"- {args.duration:g} s measured per row after {args.warmup:g} s of warm-up; the"
        f' floor row is "{floor_name}" (floor_app.py)',
        "",
        *table(rows),
        "",
        "req/s counts requests (images) per second; for raw ONNX Runtime, images per second and"
        " latency per `session.run` call. x ORT32: req/s over raw ORT batch-32 images/s."
        " x floor: req/s over the floor's at the same concurrency. loadgen CPU: the load"
        " generator's CPU time over wall time (100% = one core).",
        "",
        *(
            [
                "",
                f"{RESNET} (compute-bound; served with default settings, so"
                ' `intra_op_threads = "auto"` chooses the threads):',
                "",
                *resnet_table(rows),
            ]
            if resnet_table(rows)
            else []
        ),
        *openvino_lines(rows),
        "",
        "Targets (issues #2, #3, #10 and #14, reported, not asserted):",
        "",
        *targets(rows),
    ]
    return "\n".join(lines)


def write_results(path: Path, text: str) -> None:
    """Replace the section between the markers (create the file if needed)."""
    section = f"{BEGIN}\n{text}\n{END}"
    if path.exists():
        old = path.read_text(encoding="utf-8")
        if BEGIN in old and END in old:
            before, rest = old.split(BEGIN, 1)
            after = rest.split(END, 1)[1]
            path.write_text(before + section + after, encoding="utf-8")
            return
        path.write_text(old.rstrip("\n") + "\n\n" + section + "\n", encoding="utf-8")
        return
    path.write_text(f"# Benchmark results\n\n## serve_overhead\n\n{section}\n", encoding="utf-8")


# -- main ----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per row [10]")
    parser.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds per row [1]")
    parser.add_argument("--quick", action="store_true", help="2 s rows, 0.5 s warm-up")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument(
        "--floor",
        choices=["fastapi", "starlette"],
        default="fastapi",
        help="the floor's framework [fastapi, in .bench-venv]",
    )
    parser.add_argument(
        "--workers",
        type=int,
        nargs="+",
        default=[2],
        help="worker counts of the 'workers' rows (serve --workers N) [2]",
    )
    parser.add_argument("--no-tuning", action="store_true", help="skip the ORT settings rows")
    parser.add_argument("--no-resnet", action="store_true", help="skip the ResNet-18 rows")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=GROUPS,
        default=list(GROUPS),
        help="run only these groups of rows, e.g. `--only binary grpc` for the gRPC/HTTP ratio "
        "(the server under test is whichever shipyard is first on PYTHONPATH)",
    )
    parser.add_argument(
        "--openvino", action="store_true", help="add the OpenVINO rows (openvino_rows.py)"
    )
    parser.add_argument(
        "--perf-analyzer", action="store_true", help="add rows measured by Triton's perf_analyzer"
    )
    parser.add_argument(
        "--tls",
        action="store_true",
        help="add the shipyard rows (json, binary, grpc) again with TLS on both transports",
    )
    parser.add_argument(
        "--wait-for-idle",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="first wait up to this long for the 1-minute load average to drop below 1.0",
    )
    parser.add_argument("--results", type=Path, default=None, help="[benchmarks/RESULTS.md]")
    args = parser.parse_args(argv)
    # The command line as recorded in RESULTS.md; where the table went is left out.
    given = sys.argv[1:] if argv is None else argv
    args.argv = [
        a
        for i, a in enumerate(given)
        if not a.startswith("--results") and (i == 0 or given[i - 1] != "--results")
    ]
    if args.quick:
        args.duration, args.warmup = 2.0, 0.5
    results = args.results or (None if args.quick else RESULTS)

    started = time.monotonic()
    load_before = wait_for_idle(args.wait_for_idle) if args.wait_for_idle else loadavg()
    info = machine()
    print(f"{info['cpu']}, {info['cores']} cores; load {load_before}")
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="shipyard-bench-") as tmp:
        scratch = Path(tmp)
        repository = scratch / "repository"
        model_path = write_model(repository, MODEL, cnn_model())
        pixels = np.random.default_rng(0).random((1, 1, 28, 28), dtype=np.float32)
        expected = ort_session(model_path, OnnxRuntimeConfig()).run(None, {INPUT: pixels})[0]
        bodies = requests(pixels)
        infer_path = f"/v2/models/{MODEL}/infer"

        if "raw" in args.only:
            print("raw ONNX Runtime, in process")
            for batch in (1, 32):
                rows.append(raw_ort(model_path, batch, args.warmup, args.duration))
                print(f"  {format_row(rows[-1])}", flush=True)

        floor_label = f"floor: {'FastAPI' if args.floor == 'fastapi' else 'Starlette'}+uvicorn"
        if "floor" in args.only:
            print(floor_label)
            with floor_server(model_path, args.floor) as port:
                body, headers = bodies["json"]
                check_answer(port, infer_path, body, headers, expected)
                request = raw_request(port, infer_path, body, headers)
                for c in args.concurrency:
                    result = load(port, request, c, args.warmup, args.duration, scratch)
                    rows.append(load_row(floor_label, "json", result))

        print("shipyard serve")
        with shipyard_server(repository) as (port, grpc_port):
            rows += serve_rows("shipyard", port, grpc_port, args, scratch, pixels, expected)
            if args.perf_analyzer:
                rows += run_perf_analyzer(port, grpc_port, args, scratch, pixels)

        for workers in args.workers if "workers" in args.only else ():
            if workers < 2:
                continue  # one worker is the "shipyard" rows above
            print(f"shipyard serve --workers {workers}")
            with shipyard_server(repository, workers) as (port, grpc_port):
                target = f"shipyard ({workers} workers)"
                rows += serve_rows(target, port, grpc_port, args, scratch, pixels, expected)
        if args.tls:
            rows += tls_rows(args, scratch, repository, bodies, expected, pixels)

        if not args.no_tuning and "tuning" in args.only:
            print("shipyard serve, ONNX Runtime settings, binary, concurrency 64")
            body, headers = bodies["binary"]
            for label, config in list(TUNING.items())[1:]:
                (repository / MODEL / "model.toml").write_text(config, encoding="utf-8")
                with shipyard_server(repository) as (port, _):
                    request = raw_request(port, infer_path, body, headers)
                    result = load(port, request, 64, args.warmup, args.duration, scratch)
                    rows.append(load_row("shipyard", "binary", result, note=label))

        if not args.no_resnet and "resnet" in args.only:
            rows += resnet_rows(args, scratch)

        if args.openvino:
            rows += openvino_rows(args, scratch)

    load_after = loadavg()
    text = report(rows, info, load_before, load_after, args)
    print()
    print(text)
    print(f"\n(took {time.monotonic() - started:.0f} s)")
    if results is not None:
        write_results(results, text)
        print(f"written to {results}")
    else:
        print("quick run: RESULTS.md left alone (pass --results PATH to write)")


def serve_rows(
    target: str,
    port: int,
    grpc_port: int,
    args: Any,
    scratch: Path,
    pixels: np.ndarray,
    expected: np.ndarray,
) -> list[Row]:
    """The JSON, binary and gRPC rows against a running server: those ``--only`` picks, or
    all three when it picks none of them but the ``workers`` rows (which compare with them)."""
    rows = []
    bodies = requests(pixels)
    infer_path = f"/v2/models/{MODEL}/infer"
    picked = [g for g in ("json", "binary", "grpc") if g in args.only]
    if not picked and "workers" in args.only:
        picked = ["json", "binary", "grpc"]
    for encoding in ("json", "binary"):
        if encoding not in picked:
            continue
        body, headers = bodies[encoding]
        check_answer(port, infer_path, body, headers, expected)
        request = raw_request(port, infer_path, body, headers)
        for c in args.concurrency:
            result = load(port, request, c, args.warmup, args.duration, scratch)
            rows.append(load_row(target, encoding, result))
    payload = grpc_request(MODEL, None, [(INPUT, DataType.FP32, pixels)])
    check_grpc_answer(grpc_port, payload, expected)
    for c in args.concurrency if "grpc" in picked else ():
        result = load(grpc_port, payload, c, args.warmup, args.duration, scratch, "grpc")
        rows.append(load_row(target, "grpc raw", result))
    return rows


def openvino_rows(args: Any, scratch: Path) -> list[Row]:
    """The OpenVINO rows (benchmarks/openvino_rows.py; needs the openvino extra)."""
    from openvino_rows import openvino_rows as rows

    return rows(args, scratch)


def tls_rows(
    args: Any,
    scratch: Path,
    repository: Path,
    bodies: dict[str, tuple[bytes, dict[str, str]]],
    expected: np.ndarray,
    pixels: np.ndarray,
) -> list[Row]:
    """The shipyard rows of ``--only``'s json, binary and grpc groups, with TLS on."""
    print("shipyard serve, TLS on both transports")
    tls = Tls.make(scratch)
    infer_path = f"/v2/models/{MODEL}/infer"
    rows = []
    with shipyard_server(repository, tls=tls) as (port, grpc_port):
        for encoding in ("json", "binary"):
            if encoding not in args.only:
                continue
            body, headers = bodies[encoding]
            check_answer(port, infer_path, body, headers, expected, tls=tls)
            request = raw_request(port, infer_path, body, headers)
            for c in args.concurrency:
                result = load(port, request, c, args.warmup, args.duration, scratch, tls=tls)
                rows.append(load_row("shipyard (TLS)", encoding, result))
        if "grpc" in args.only:
            payload = grpc_request(MODEL, None, [(INPUT, DataType.FP32, pixels)])
            check_grpc_answer(grpc_port, payload, expected, tls)
            for c in args.concurrency:
                result = load(
                    grpc_port, payload, c, args.warmup, args.duration, scratch, "grpc", tls
                )
                rows.append(load_row("shipyard (TLS)", "grpc raw", result))
    return rows


def resnet_rows(args: Any, scratch: Path) -> list[Row]:
    """ResNet-18: raw ORT at batch 1 (its default threads, then one), then ``shipyard serve``
    with default settings at concurrency 1 and 8, binary."""
    from resnet18 import resnet18_onnx

    print(f"{RESNET}: raw ONNX Runtime, then shipyard serve with default settings")
    model = resnet18_onnx()
    image = (3, 224, 224)
    rows = [
        raw_ort(model, 1, args.warmup, args.duration, image=image, threads=0,
                target=f"raw ONNX Runtime ({RESNET})", note="default threads"),
        raw_ort(model, 1, args.warmup, args.duration, image=image, threads=1,
                target=f"raw ONNX Runtime ({RESNET})", note="1 thread"),
    ]  # fmt: skip
    for row in rows:
        print(f"  {row.note}: {row.rps:.1f} img/s", flush=True)
    repository = scratch / "resnet-repository"
    (repository / "resnet" / "1").mkdir(parents=True)
    (repository / "resnet" / "1" / "model.onnx").write_bytes(model.read_bytes())
    pixels = np.random.default_rng(0).random((1, *image), dtype=np.float32)
    expected = ort_session(model, OnnxRuntimeConfig()).run(None, {INPUT: pixels})[0]
    body, headers = requests(pixels)["binary"]
    with shipyard_server(repository) as (port, _):
        check_answer(port, "/v2/models/resnet/infer", body, headers, expected, atol=1e-3)
        request = raw_request(port, "/v2/models/resnet/infer", body, headers)
        for c in (1, 8):
            result = load(port, request, c, args.warmup, args.duration, scratch)
            rows.append(load_row(f"shipyard ({RESNET})", "binary", result))
            print(f"  shipyard c={c}: {rows[-1].rps:.1f} req/s", flush=True)
    return rows


def run_perf_analyzer(
    port: int, grpc_port: int, args: Any, scratch: Path, pixels: np.ndarray
) -> list[Row]:
    """perf_analyzer rows (HTTP JSON, HTTP binary, gRPC), or none with the reason printed."""
    try:
        command = perf_analyzer_command()
    except (RuntimeError, subprocess.TimeoutExpired, OSError) as exc:
        print(f"perf_analyzer unavailable: {exc}")
        return []
    print("shipyard serve, load from perf_analyzer")
    rows = []
    for encoding, target_port in (("json", port), ("binary", port), ("grpc raw", grpc_port)):
        for c in args.concurrency:
            try:
                rows.append(
                    perf_analyzer(command, target_port, encoding, c, args.duration, scratch, pixels)
                )
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                print(f"  perf_analyzer {encoding} c={c} failed: {exc}")
    return rows


if __name__ == "__main__":
    main()
