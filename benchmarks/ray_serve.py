"""Per-replica throughput of ``shipyard ray serve`` against single-process ``shipyard serve``.

The seed CNN (``shipyard.testing.cnn_model``, FP32 1x28x28 in, 10 out) is served three ways on
this machine, one after the other, and driven by the same load generator (``python -m
shipyard.loadgen``: closed loop, keep-alive HTTP/1.1, binary tensors) at one concurrency:

1. ``shipyard serve`` in one process (the reference);
2. ``shipyard ray serve`` on a one-node local Ray cluster with Ray Serve's default Python HTTP
   proxy (one replica, ``num_cpus = 1``);
3. the same with Ray Serve's HAProxy ingress (``RAY_SERVE_ENABLE_HA_PROXY=1``: HAProxy, a C
   process, forwards to Ray's HTTP server in the replica; no Python proxy hop);
4. ``--ingress shipyard`` (the default): Shipyard's front door, HAProxy straight to the
   replica's own Shipyard HTTP server, none of Ray's per-request path.

Replicas run as ``shipyard ray serve`` deploys them: in Ray's throughput mode and without Ray's
per-request access log (``shipyard.cluster.deploy.deployment_options``). Under each table, the
CPU each Ray process used during the load says where the cluster's time goes.

Each row reports requests/s, p50/p99 latency, the ratio to ``shipyard serve`` (the mean of
row 1 and the same measured again after the Ray rows, since the machine's speed drifts; the
target is >= 0.70 per replica) and the resident memory of every process of that setup, plus
the time from ``ray start`` to the first answered request. ``--duration 2 --warmup 1`` proves
the script works in about two minutes; the real measurement uses the defaults on a quiet
machine.

    .venv/bin/python benchmarks/ray_serve.py [--concurrency 64] [--duration 10] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import serve_overhead as so

from shipyard.testing.models import cnn_model, write_model
from shipyard.testing.process import cpu_seconds
from shipyard.testing.raycluster import free_port, local_ray_cluster

PATH = f"/v2/models/{so.MODEL}/infer"
_SCALE = "[scale]\nnum_cpus = 1\nmax_ongoing_requests = 256\n"


def rss_mb(pids: list[int]) -> float:
    """The summed resident memory of ``pids`` in MiB (processes that are gone count 0)."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


#: Which of a cluster's processes each CPU figure counts, by a piece of its command line.
_ROLES = (
    ("replica", "ServeReplica:shipyard:"),
    ("HAProxy", "haproxy"),
    ("Ray proxy", "ProxyActor"),
    ("Serve controller", "ServeController"),
    ("raylet", "raylet"),
    ("GCS", "gcs_server"),
)


def cpu_by_pid(pids: list[int]) -> dict[int, tuple[str, float]]:
    """Each live process's role (see :data:`_ROLES`, else "other Ray") and CPU seconds."""
    found: dict[int, tuple[str, float]] = {}
    for pid in pids:
        try:
            line = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            seconds = cpu_seconds(pid)
        except (OSError, UnicodeDecodeError):
            continue
        role = next((name for name, mark in _ROLES if mark in line), "other Ray")
        found[pid] = (role, seconds)
    return found


def haproxy_pids() -> list[int]:
    """HAProxy processes (they leave the Ray worker that starts them, so the cluster's process
    tree does not hold them)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "haproxy":
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def cpu_share(
    before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]], wall_s: float
) -> dict[str, float]:
    """CPU seconds per second of each role between two :func:`cpu_by_pid` readings."""
    share: dict[str, float] = {}
    for pid, (role, seconds) in after.items():
        used = seconds - before.get(pid, (role, 0.0))[1]
        share[role] = share.get(role, 0.0) + used / wall_s
    return dict(sorted(share.items(), key=lambda item: -item[1]))


def measure(port: int, args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    """Check one answer against ONNX Runtime, then run the load; return loadgen's summary."""
    pixels = np.random.default_rng(0).random((1, 1, 28, 28), dtype=np.float32)
    body, headers = so.requests(pixels)["binary"]
    session = so.ort_session(
        scratch / "repo" / so.MODEL / "1" / "model.onnx", so.OnnxRuntimeConfig()
    )
    expected = session.run(None, {so.INPUT: pixels})[0]
    so.check_answer(port, PATH, body, headers, expected)
    request = so.raw_request(port, PATH, body, headers)
    return so.load(port, request, args.concurrency, args.warmup, args.duration, scratch)


def model_ready(port: int, timeout_s: float = 60.0) -> None:
    """Wait until the cluster URL answers the model's readiness with 200."""
    url = f"http://127.0.0.1:{port}/v2/models/{so.MODEL}/ready"
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer 200 within {timeout_s:g} s")
        time.sleep(0.2)


def shipyard_row(args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    """Row 1: ``shipyard serve`` in one process (HTTP only)."""
    shipyard = str(Path(sys.executable).parent / "shipyard")
    argv = [shipyard, "serve", str(scratch / "repo"), "--http-port", "0", "--grpc-port", "0"]
    started = time.monotonic()
    process = so.Process([*argv, "--log-level", "warning", "--drain-timeout", "2"])
    try:
        deadline = time.monotonic() + 60
        while not (port := so.printed_port(process, "http")):
            if process.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"shipyard serve did not print its URL:\n{process.output()}")
            time.sleep(0.05)
        so.wait_ready(process, port)
        ready_s = time.monotonic() - started
        result = measure(port, args, scratch)
        result["rss_mb"] = rss_mb([process.proc.pid])
    finally:
        process.stop()
    result["ready_s"] = ready_s
    return result


def ray_row(
    args: argparse.Namespace, scratch: Path, haproxy: bool, ingress: str = "ray"
) -> dict[str, Any]:
    """Rows 2-4: a one-node cluster (``--cpus`` CPUs), one replica, ``shipyard ray serve
    --ingress INGRESS``; ``haproxy``: the cluster runs Ray's HAProxy mode."""
    workdir = Path(tempfile.mkdtemp(dir=scratch))
    started = time.monotonic()
    with local_ray_cluster(workdir, nodes=1, cpus_per_node=args.cpus, haproxy=haproxy) as cluster:
        port = free_port()
        shipyard = str(Path(sys.executable).parent / "shipyard")
        argv = [shipyard, "ray", "serve", str(scratch / "repo"), "--address", cluster.address]
        argv += ["--ingress", ingress]
        done = subprocess.run(
            [*argv, "--http-port", str(port), "--detach"],
            capture_output=True,
            text=True,
            env=cluster.env,
            timeout=600,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"shipyard ray serve failed:\n{done.stdout}\n{done.stderr}")
        model_ready(port)
        ready_s = time.monotonic() - started
        pids = cluster.process_ids("") + haproxy_pids()
        before, wall0 = cpu_by_pid(pids), time.monotonic()
        result = measure(port, args, scratch)
        result["cpu"] = cpu_share(before, cpu_by_pid(pids), time.monotonic() - wall0)
        result["rss_mb"] = rss_mb(cluster.process_ids(""))
        result["replica_rss_mb"] = rss_mb(cluster.process_ids("ServeReplica:shipyard:"))
    result["ready_s"] = ready_s
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the Ray node")
    parser.add_argument("--json", type=Path, help="Also write the rows as JSON here.")
    parser.add_argument(
        "--rows",
        default="proxy,haproxy,front",
        help="Ray rows to run besides `shipyard serve`: proxy, haproxy, front (comma-separated)",
    )
    args = parser.parse_args(argv)
    chosen = set(args.rows.split(","))
    print(f"machine: {so.machine()}; load before: {so.loadavg()}")
    rows: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="shipyard-ray-bench-") as tmp:
        scratch = Path(tmp)
        write_model(scratch / "repo", so.MODEL, cnn_model(), config=_SCALE)
        rows["shipyard serve (1 process)"] = shipyard_row(args, scratch)
        if "proxy" in chosen:
            rows["ray serve, Ray's HTTP proxy"] = ray_row(args, scratch, haproxy=False)
        if "haproxy" in chosen:
            rows["ray serve, HAProxy ingress"] = ray_row(args, scratch, haproxy=True)
        if "front" in chosen:
            rows["ray serve, Shipyard front door"] = ray_row(
                args, scratch, haproxy=False, ingress="shipyard"
            )
        # The machine's speed drifts over minutes: `shipyard serve` again after the Ray rows,
        # and the ratios against the mean of the two.
        rows["shipyard serve (again)"] = shipyard_row(args, scratch)
    reference = (
        rows["shipyard serve (1 process)"]["rps"] + rows["shipyard serve (again)"]["rps"]
    ) / 2
    print(f"\nseed CNN, binary tensors, concurrency {args.concurrency}, {args.duration:g} s rows")
    print(
        f"{'setup':32} {'req/s':>8} {'x serve':>8} {'p50 ms':>8} {'p99 ms':>8} {'RSS MiB':>8} "
        f"{'ready s':>8} errors"
    )
    for name, row in rows.items():
        print(
            f"{name:32} {row['rps']:8.0f} {row['rps'] / reference:8.2f} {row['p50_ms']:8.1f} "
            f"{row['p99_ms']:8.1f} {row.get('rss_mb', float('nan')):8.0f} {row['ready_s']:8.1f} "
            f"{row['error_count']}"
        )
    print("\nCPU seconds per second during each Ray row's load (1.0 = one core), by process:")
    for name, row in rows.items():
        if "cpu" in row:
            shares = ", ".join(f"{role} {value:.2f}" for role, value in row["cpu"].items())
            print(f"{name:32} load generator {row['client_cpu']:.2f}, {shares}")
    print(f"load after: {so.loadavg()}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
