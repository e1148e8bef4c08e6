"""``shipyard serve REPOSITORY``: serve every model over HTTP and gRPC until SIGINT/SIGTERM."""

from __future__ import annotations

import gc
import os
import sys
from pathlib import Path
from typing import Any

import click

from shipyard import __version__, eventloop
from shipyard.cli.common import (
    API_KEYS_OPTION,
    TLS_CLIENT_CA_OPTION,
    TLS_KEY_OPTION,
    console,
    fail,
    print_model_table,
)
from shipyard.config import LOG_FORMATS, LOG_LEVELS, ServerConfig
from shipyard.errors import ShipyardError
from shipyard.log import configure_logging

__all__ = ["serve"]


@click.command()
@click.argument("repository")
@click.option("--host", default=None, help="Address to listen on [default: 127.0.0.1].")
@click.option(
    "--http-port", type=int, default=None, help="HTTP port; 0 picks a free one [default: 8000]."
)
@click.option(
    "--grpc-port", type=int, default=None, help="gRPC port; 0 turns gRPC off [default: 8001]."
)
# -- gRPC connection limits (docs/grpc.md); the others are in the [server] table and env.
@click.option(
    "--grpc-max-connections", type=int, default=None, help="gRPC connections [default: 1000]."
)
@click.option(
    "--grpc-handshake-timeout",
    "grpc_handshake_timeout_s",
    type=float,
    default=None,
    help="Seconds for a gRPC client's preface and SETTINGS [default: 10].",
)
@click.option(
    "--grpc-idle-timeout",
    "grpc_idle_timeout_s",
    type=float,
    default=None,
    help="Seconds a gRPC connection may idle; 0: forever [default: 300].",
)
@click.option(
    "--grpc-keepalive-interval",
    "grpc_keepalive_interval_s",
    type=float,
    default=None,
    help="Seconds of client silence before a keepalive PING; 0: none [default: 60].",
)
@click.option("--model", "models", multiple=True, help="Load only this model (repeatable).")
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="A TOML file with a [server] table.",
)
# -- exposure: TLS, API keys and HTTP/1.1 connection limits (docs/security.md). The other
# limits are in the [server] table and the environment (docs/configuration.md).
@click.option(
    "--tls-cert",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="PEM certificate chain: serve HTTPS and gRPC over TLS (with --tls-key).",
)
@TLS_KEY_OPTION
@TLS_CLIENT_CA_OPTION
@API_KEYS_OPTION
@click.option(
    "--metrics-auth",
    is_flag=True,
    default=None,
    help="/metrics needs a key (role metrics or admin) [default: open].",
)
@click.option(
    "--http-max-connections", type=int, default=None, help="HTTP connections [default: 1000]."
)
@click.option(
    "--http-header-timeout",
    "http_header_timeout_s",
    type=float,
    default=None,
    help="Seconds a request has to send its headers [default: 10].",
)
@click.option(
    "--http-body-timeout",
    "http_body_timeout_s",
    type=float,
    default=None,
    help="Seconds a request has to send its body [default: 60].",
)
@click.option(
    "--http-idle-timeout",
    "http_idle_timeout_s",
    type=float,
    default=None,
    help="Seconds an idle keep-alive connection stays open [default: 30].",
)
@click.option(
    "--max-request-bytes", type=int, default=None, help="Largest request body [default: 64 MiB]."
)
@click.option(
    "--drain-timeout",
    "drain_timeout_s",
    type=float,
    default=None,
    help="Seconds in-flight requests get on shutdown [default: 30].",
)
@click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS),
    default=None,
    help="Log verbosity [default: info].",
)
@click.option(
    "--ui/--no-ui",
    default=None,
    help="Serve the web dashboard at /ui/ [default: on].",
)
@click.option(
    "--cache-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Local cache for a store URL REPOSITORY [default: ~/.cache/shipyard/repositories].",
)
@click.option(
    "--allow-python-models",
    is_flag=True,
    default=None,
    help="Let models run Python code from the repository (model.py, Python steps) in worker "
    "processes. Loading it is code execution: refused by default.",
)
# -- operations (docs/operations.md) ---------------------------------------------------------
@click.option(
    "--log-format",
    type=click.Choice(LOG_FORMATS),
    default=None,
    help="Log lines as text or JSON objects [default: text].",
)
@click.option(
    "--access-log/--no-access-log",
    default=None,
    help="Log one line per request: status, duration, bytes [default: off].",
)
@click.option(
    "--access-log-sample",
    type=float,
    default=None,
    help="Share of requests the access log writes, in (0, 1] [default: 1].",
)
@click.option(
    "--max-inflight-bytes",
    type=int,
    default=None,
    help="Request bytes all requests in flight may hold; past it 503 (0: none) [default: 256 MiB].",
)
@click.option(
    "--max-inflight-requests",
    type=int,
    default=None,
    help="Inference requests in flight over all models; past it 503 [default: 0, no limit].",
)
@click.option(
    "--retry-after",
    "retry_after_s",
    type=int,
    default=None,
    help="Seconds of Retry-After on an overload 503 [default: 1].",
)
@click.option(
    "--decode-workers",
    type=int,
    default=None,
    help="Processes decoding large JSON bodies off the event loop (0: none) [default: 1].",
)
@click.option(
    "--metrics-buckets",
    "metrics_buckets_s",
    default=None,
    help="Latency histogram bounds in seconds, comma-separated [default: 50 µs to 10 s].",
)
@click.option(
    "--otel/--no-otel",
    default=None,
    help="Record OpenTelemetry spans (extra 'otel'; OTEL_* variables) [default: off].",
)
@click.option(
    "--poll-interval",
    "poll_interval_s",
    type=float,
    default=None,
    help="Seconds between scans of the repository for changed models (0: off) [default: 0].",
)
# -- worker processes (docs/scaling.md) -------------------------------------------------------
@click.option(
    "--workers",
    default=None,
    help="Worker processes sharing the ports, or 'auto' (one per core) [default: 1].",
)
def serve(repository: str, config_file: Path | None, **flags: Any) -> None:
    """Serve every model in REPOSITORY over HTTP and gRPC until SIGINT/SIGTERM.

    REPOSITORY is a folder or an object-store URL (s3://bucket/prefix, any fsspec URL; needs
    the [s3] extra); store credentials come from the standard AWS environment and config.
    """
    from shipyard.server.app import ServerInfo, ShipyardServer

    flags["models"] = flags["models"] or None
    try:
        config = ServerConfig.resolve(config_file, flags={"repository": repository, **flags})
    except ShipyardError as exc:
        fail(exc.message)
    configure_logging(config.log_level, config.log_format, config.access_log)
    from shipyard.workers.supervisor import worker_count

    try:
        workers = worker_count(config)  # also checks SHIPYARD_CORES
    except ShipyardError as exc:
        fail(exc.message)

    def ready(info: ServerInfo) -> None:
        console.print(f"Shipyard {__version__} serving {config.repository}")
        if workers > 1:
            console.print(f"  Workers {workers} processes (supervisor pid {os.getpid()})")
        console.print(
            f"  HTTP  {info.http_url}   (Open Inference Protocol v2, metrics at /metrics)"
        )
        if config.ui:
            console.print(f"  UI    {info.http_url}/ui/   (dashboard; --no-ui turns it off)")
        if info.grpc_url:
            tls = ", TLS" if info.tls else ""
            console.print(f"  gRPC  {info.grpc_url}   (inference.GRPCInferenceService{tls})")
        if config.allow_python_models:
            console.print(
                "  Python models allowed (--allow-python-models): model.py and Python steps "
                "from the repository run in worker processes"
            )
        console.print(f"  Access: {info.access}")
        print_model_table(info.models)
        name = next((r["name"] for r in info.models if r["versions"]), "<model>")
        console.print(f"Try: curl {info.http_url}/v2/models/{name}")
        console.print("Press Ctrl-C to stop.")
        # What is loaded by now lives as long as the process: keep it out of the cyclic GC's
        # scans, or each full collection walks it again, stalling requests for tens of ms
        # under load (benchmarks/RESULTS.md, "Where the time goes").
        gc.freeze()

    if workers > 1:
        from shipyard.workers import serve_workers

        try:
            sys.exit(serve_workers(config, ready))
        except ShipyardError as exc:
            fail(exc.message)
    server = ShipyardServer(config)
    try:
        eventloop.run(server.serve(on_ready=ready))
    except ShipyardError as exc:
        fail(exc.message)
    except KeyboardInterrupt:
        pass
