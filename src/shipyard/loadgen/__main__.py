"""``python -m shipyard.loadgen``: drive one server with a request the caller prepared.

For benchmarks that build (and check) their own request: the file holds the whole HTTP/1.1
request (request line, headers and body) or, with ``--protocol grpc``, a serialized
``ModelInferRequest``. Runs one measurement in this process and prints its summary as one JSON
object (the fields of :class:`shipyard.loadgen.stats.Summary`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from shipyard.errors import LoadGeneratorError
from shipyard.loadgen.runner import Transport, client_context, run

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run one measurement, print its JSON summary."""
    parser = argparse.ArgumentParser(
        prog="python -m shipyard.loadgen", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--protocol", choices=["http", "grpc"], default="http")
    parser.add_argument("--request", type=Path, required=True, help="file with the request")
    parser.add_argument("--concurrency", type=int, default=1, help="slots (max outstanding)")
    parser.add_argument("--rate", type=float, default=None, help="open loop: requests/s")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds not recorded")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds recorded")
    parser.add_argument("--tls", action="store_true", help="connect with TLS (system CAs)")
    parser.add_argument("--tls-ca", type=Path, default=None, help="TLS, trusting this CA (PEM)")
    args = parser.parse_args(argv)
    request = args.request.read_bytes()
    tls = None
    if args.tls or args.tls_ca is not None:
        tls = client_context(args.tls_ca, "h2" if args.protocol == "grpc" else "http/1.1")
    transport: Transport
    if args.protocol == "grpc":
        from shipyard.loadgen.grpc import GrpcTransport

        transport = GrpcTransport(f"{args.host}:{args.port}", request, tls)
    else:
        from shipyard.loadgen.http import HttpTransport

        transport = HttpTransport(args.host, args.port, request, tls)
    try:
        summary = run(transport, args.concurrency, args.warmup, args.duration, args.rate)
    except LoadGeneratorError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    json.dump(summary.to_dict(), sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
