"""A real Shipyard server on a free port, in a background thread, for tests and benchmarks."""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from shipyard import eventloop
from shipyard.config import ServerConfig
from shipyard.server.app import ServerInfo, ShipyardServer, bind_socket

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
        return self.url.removeprefix("http://")

    @property
    def grpc_address(self) -> str:
        """``host:port`` of the gRPC transport, the form tritonclient.grpc takes."""
        if self.info.grpc_url is None:
            raise RuntimeError("this server runs without gRPC (running_server(grpc=False))")
        return self.info.grpc_url.removeprefix("grpc://")


@contextlib.contextmanager
def running_server(
    repository: Path, startup_timeout_s: float = 60.0, grpc: bool = True, **settings: Any
) -> Iterator[RunningServer]:
    """Start a server on 127.0.0.1 and a free port; stop it gracefully on exit.

    gRPC listens on a free port of its own too (``grpc=False``: HTTP only, no grpc extra
    needed), so one server answers both transports, as in production.

    Returns once the server listens and has tried to load every model (models that failed to
    load are reported by the repository index, as in production).
    """
    config = ServerConfig(
        repository=repository, host="127.0.0.1", http_port=0, grpc_port=0, **settings
    )
    sock = bind_socket(config.host, 0)
    server = ShipyardServer(config)
    started = threading.Event()
    holder: dict[str, Any] = {}

    def on_ready(info: ServerInfo) -> None:
        holder["info"] = info
        started.set()

    def run() -> None:
        try:
            eventloop.run(
                server.serve(http_socket=sock, on_ready=on_ready, grpc_port=0 if grpc else None)
            )
        except BaseException as exc:  # reported to the waiting test below
            holder["error"] = exc
            started.set()

    thread = threading.Thread(target=run, name="shipyard-test-server", daemon=True)
    thread.start()
    if not started.wait(startup_timeout_s):
        server.stop()
        raise TimeoutError(f"server did not start within {startup_timeout_s} s")
    if "error" in holder:
        raise RuntimeError(f"server failed to start: {holder['error']!r}") from holder["error"]
    info: ServerInfo = holder["info"]
    try:
        yield RunningServer(info.http_url, info.http_port, server, info)
    finally:
        server.stop()
        thread.join(timeout=config.drain_timeout_s + 10)
        if thread.is_alive():
            raise RuntimeError("server thread did not stop")
