"""A server inside this process: its own event loop in a background thread.

``shipyard tune`` serves each candidate this way, and :func:`shipyard.testing.running_server`
wraps it for tests. The caller's thread keeps working while the server answers; leaving the
``with`` block stops the server gracefully (in-flight requests get ``drain_timeout_s``) and
joins its thread.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from shipyard import eventloop
from shipyard.config import ServerConfig
from shipyard.server.app import ServerInfo, ShipyardServer, bind_socket

__all__ = ["EmbeddedServer", "embedded_server"]


@dataclass(frozen=True, slots=True)
class EmbeddedServer:
    """A started server: what it tells its caller, and the server object (for its service)."""

    server: ShipyardServer
    info: ServerInfo


@contextlib.contextmanager
def embedded_server(
    config: ServerConfig,
    *,
    grpc_port: int | None = None,
    startup_timeout_s: float = 60.0,
    tracer_provider: Any = None,
) -> Iterator[EmbeddedServer]:
    """Serve ``config`` in a background thread until the ``with`` block ends.

    The HTTP socket is bound before the thread starts, so a port in use fails here as a
    ConfigError. ``grpc_port`` is passed to :meth:`ShipyardServer.serve` (``None``: as
    ``config.grpc_port`` says; 0: a free port). Returns once the server listens and has tried
    to load every model (those that failed are in ``info.models`` with their reason).

    ``tracer_provider`` receives the spans when ``config.otel`` is on (see ShipyardServer).

    Raises TimeoutError when the server is not up within ``startup_timeout_s``, and
    RuntimeError (from the server's own error) when it fails to start.
    """
    sock = bind_socket(config.host, config.http_port)
    server = ShipyardServer(config, tracer_provider)
    started = threading.Event()
    ready: list[ServerInfo] = []
    failed: list[BaseException] = []

    def on_ready(info: ServerInfo) -> None:
        ready.append(info)
        started.set()

    def run() -> None:
        try:
            eventloop.run(server.serve(http_socket=sock, on_ready=on_ready, grpc_port=grpc_port))
        except BaseException as exc:  # reported to the waiting caller below
            failed.append(exc)
            started.set()

    thread = threading.Thread(target=run, name="shipyard-embedded-server", daemon=True)
    thread.start()
    if not started.wait(startup_timeout_s):
        server.stop()
        raise TimeoutError(f"server did not start within {startup_timeout_s} s")
    if failed:
        raise RuntimeError(f"server failed to start: {failed[0]!r}") from failed[0]
    try:
        yield EmbeddedServer(server, ready[0])
    finally:
        server.stop()
        thread.join(timeout=config.drain_timeout_s + 10)
        if thread.is_alive():
            raise RuntimeError("server thread did not stop")
