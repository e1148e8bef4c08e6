"""Shipyard's HTTP server for an ASGI app, on the event loop of a process Shipyard does not own.

A Ray replica (``--ingress shipyard``) serves its model, and the front door its root routes,
with the same uvicorn + httptools protocol and HTTP/1.1 limits as ``shipyard serve``
(:mod:`shipyard.server.http_connection`), started on the replica's own event loop. Unlike
``shipyard serve`` it leaves the process's signals alone: they are Ray's.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from shipyard.config import ServerConfig
from shipyard.server.app import bind_socket

__all__ = ["Listener", "is_address", "start_listener"]


def is_address(host: str) -> bool:
    """Whether ``host`` is an IP address (not a name to resolve)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@dataclass
class Listener:
    """A started server: the address and port it listens on, and how to stop it."""

    host: str
    port: int
    server: Any  # uvicorn.Server (uvicorn is imported when one starts)
    task: asyncio.Task[None]

    async def stop(self) -> None:
        """Stop accepting, let in-flight requests finish (up to the drain timeout), close."""
        self.server.should_exit = True
        with contextlib.suppress(Exception):
            await self.task


async def start_listener(
    app: Any, host: str, port: int = 0, config: ServerConfig | None = None
) -> Listener:
    """Serve ``app`` on ``host:port`` (0: a free port) on the running event loop.

    ``config`` gives the HTTP/1.1 limits and the drain timeout (the defaults of ``shipyard
    serve`` when None). Returns once the socket accepts connections; a port in use raises
    ConfigError.
    """
    import uvicorn

    from shipyard.server.http_connection import uvicorn_config

    class _Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield  # the process's signals belong to its owner (Ray), not to this server

    sock = bind_socket(host, port)
    server = _Server(uvicorn_config(app, config or ServerConfig()))
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()  # raises what stopped it
            raise RuntimeError(f"the HTTP server on {host}:{port} stopped while starting")
        await asyncio.sleep(0.01)
    bound = sock.getsockname()
    return Listener(str(bound[0]), int(bound[1]), server, task)
