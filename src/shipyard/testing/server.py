"""A real Shipyard server on a free port, in a background thread, for tests and benchmarks."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from shipyard.config import ServerConfig
from shipyard.server.app import ServerInfo, ShipyardServer
from shipyard.server.embedded import embedded_server

__all__ = ["RunningServer", "running_server"]


@dataclasses.dataclass
class RunningServer:
    """A started server: its URL, port and the server object (for its service)."""

    url: str
    port: int
    server: ShipyardServer
    info: ServerInfo

    @property
    def address(self) -> str:
        """``host:port``, the form tritonclient takes."""
        return self.url.split("://", 1)[1]

    @property
    def grpc_address(self) -> str:
        """``host:port`` of the gRPC transport, the form tritonclient.grpc takes."""
        if self.info.grpc_url is None:
            raise RuntimeError("this server runs without gRPC (running_server(grpc=False))")
        return self.info.grpc_url.removeprefix("grpc://")


@contextlib.contextmanager
def running_server(
    repository: Path | str,
    startup_timeout_s: float = 60.0,
    grpc: bool = True,
    tracer_provider: Any = None,
    **settings: Any,
) -> Iterator[RunningServer]:
    """Start a server on 127.0.0.1 and a free port; stop it gracefully on exit.

    gRPC listens on a free port of its own too (``grpc=False``: HTTP only, no grpc extra
    needed), so one server answers both transports, as in production. ``settings`` are
    further :class:`~shipyard.config.ServerConfig` fields; with ``otel=True`` the spans go to
    ``tracer_provider`` (an OpenTelemetry SDK TracerProvider, e.g. with an in-memory exporter).

    Returns once the server listens and has tried to load every model (models that failed to
    load are reported by the repository index, as in production). The server itself is
    :func:`shipyard.server.embedded.embedded_server`.
    """
    config = ServerConfig(
        repository=repository, host="127.0.0.1", http_port=0, grpc_port=0, **settings
    )
    with embedded_server(
        config,
        grpc_port=0 if grpc else None,
        startup_timeout_s=startup_timeout_s,
        tracer_provider=tracer_provider,
    ) as running:
        info = running.info
        yield RunningServer(info.http_url, info.http_port, running.server, info)
