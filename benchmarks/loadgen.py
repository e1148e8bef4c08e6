"""A closed-loop HTTP/1.1 load generator, run as its own process (kept for old command lines).

The load generator now lives in the package, ``shipyard.loadgen`` (``python -m
shipyard.loadgen`` is what ``serve_overhead.py`` runs, and ``shipyard bench`` builds on it); this
script keeps the original command line and output. Each of ``--concurrency`` keep-alive
connections sends one pre-encoded request, waits for the whole response, and sends the next at
once, all in ``asyncio.Protocol`` callbacks (on uvloop when installed).

Reads the request (raw bytes: request line, headers and body) from ``--request``; prints one
JSON object: completed requests, requests/s, latency percentiles, errors and its own CPU time.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from shipyard.loadgen.http import HttpTransport
from shipyard.loadgen.runner import run

__all__ = ["main"]


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, run one measurement, print its JSON summary."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--request", type=Path, required=True, help="file with the raw request")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds not recorded")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds recorded")
    args = parser.parse_args(argv)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        parser.error("this benchmark only talks to the local machine")
    transport = HttpTransport(args.host, args.port, args.request.read_bytes())
    summary = run(transport, args.concurrency, args.warmup, args.duration)
    nan = float("nan")
    result = {
        "concurrency": summary.concurrency,
        "duration_s": summary.duration_s,
        "completed": summary.requests,
        "rps": summary.rps,
        "p50_ms": nan if summary.p50_ms is None else summary.p50_ms,
        "p99_ms": nan if summary.p99_ms is None else summary.p99_ms,
        "mean_ms": nan if summary.mean_ms is None else summary.mean_ms,
        "errors": summary.error_count,
        "first_error": summary.first_error,
        "client_cpu": summary.client_cpu,
    }
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
