"""Server CPU per request of ``shipyard serve`` for several checkouts, in interleaved rounds.

Throughput on a shared 2-core machine moves by 10-20% between runs; the server's own CPU time
per request (user + system, every thread, from ``/proc/PID/stat``) moves much less, so it is the
figure to compare two versions of the request path with. For each round and each checkout (a
``src`` folder put first on PYTHONPATH, for the server and the load generator) it starts
``shipyard serve`` on the seed CNN, warms up for 2 s, then drives it with
``python -m shipyard.loadgen`` (closed loop, binary HTTP or raw gRPC) and prints req/s and
microseconds of server CPU per request:

    .venv/bin/python benchmarks/cpu_per_request.py /old/checkout/src src --protocol http --rounds 4
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import serve_overhead as so

from shipyard.testing.models import cnn_model, write_model
from shipyard.testing.process import cpu_seconds

SHIPYARD = Path(sys.executable).with_name("shipyard")


def measure(
    src: str, scratch: Path, protocol: str, concurrency: int, seconds: float
) -> tuple[float, float]:
    """One row: (req/s, server CPU µs per request) of the checkout whose sources are ``src``."""
    env = dict(os.environ, PYTHONPATH=src)
    port, grpc_port = so.free_port(), so.free_port()
    argv = [str(SHIPYARD), "serve", str(scratch / "repository"), "--http-port", str(port)]
    argv += ["--grpc-port", str(grpc_port), "--log-level", "warning"]
    server = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://{so.HOST}:{port}/v2/health/ready", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError(f"shipyard serve ({src}) did not become ready") from None
                time.sleep(0.1)
        request = scratch / ("http.bin" if protocol == "http" else "grpc.bin")
        target = port if protocol == "http" else grpc_port

        def load(duration: float) -> dict[str, float]:
            command = [sys.executable, "-m", "shipyard.loadgen", "--port", str(target)]
            command += ["--request", str(request), "--protocol", protocol]
            command += ["--concurrency", str(concurrency), "--warmup", "0"]
            command += ["--duration", str(duration)]
            done = subprocess.run(
                command, env=env, capture_output=True, text=True, timeout=duration + 60, check=True
            )
            result: dict[str, float] = json.loads(done.stdout)
            return result

        load(2.0)  # warm-up
        before = cpu_seconds(server.pid)
        result = load(seconds)
        used = cpu_seconds(server.pid) - before
        return result["rps"], used / result["requests"] * 1e6
    finally:
        server.terminate()
        server.wait(30)


def main() -> None:
    """Parse the arguments, then print one line per checkout and round."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sources", nargs="+", help="src folders of the checkouts to compare")
    parser.add_argument("--protocol", choices=("http", "grpc"), default="http")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=8.0, help="measured per row [8]")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="shipyard-cpu-") as tmp:
        scratch = Path(tmp)
        write_model(scratch / "repository", so.MODEL, cnn_model())
        pixels = np.random.default_rng(0).random((1, 1, 28, 28), dtype=np.float32)
        body, headers = so.requests(pixels)["binary"]
        path = f"/v2/models/{so.MODEL}/infer"
        (scratch / "http.bin").write_bytes(so.http_request(so.HOST, 8000, path, body, headers))
        payload = so.grpc_request(so.MODEL, None, [(so.INPUT, so.DataType.FP32, pixels)])
        (scratch / "grpc.bin").write_bytes(payload)
        print(f"seed CNN, {args.protocol}, c={args.concurrency}, {args.seconds:g} s per row")
        for round_number in range(1, args.rounds + 1):
            for src in args.sources:
                rps, cpu_us = measure(src, scratch, args.protocol, args.concurrency, args.seconds)
                load = Path("/proc/loadavg").read_text().split()[0]
                print(
                    f"round {round_number}  {src:40s} {rps:8,.0f} req/s  "
                    f"{cpu_us:6.1f} µs server CPU per request  (load {load})",
                    flush=True,
                )


if __name__ == "__main__":
    main()
