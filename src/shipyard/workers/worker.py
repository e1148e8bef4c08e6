"""One worker process of ``shipyard serve --workers N``: ``python -m shipyard.workers.worker``.

Started by the supervisor only (:mod:`shipyard.workers.supervisor`): it reads its
:class:`~shipyard.workers.spec.WorkerSpec` from stdin, serves on the listening sockets it
inherited, as :class:`~shipyard.server.app.ShipyardServer` does in a single process, and
answers the supervisor on its control socket (:class:`~shipyard.workers.member.WorkerMember`).
Every log line carries the worker's id. When stdin closes (the supervisor is gone) it drains
and exits, as on SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import pickle
import signal
import socket
import sys
import threading

from shipyard import eventloop
from shipyard.errors import ShipyardError
from shipyard.log import configure_logging
from shipyard.server.app import ServerInfo, ShipyardServer
from shipyard.workers import channel
from shipyard.workers.member import WorkerMember
from shipyard.workers.spec import WorkerSpec, read_spec

__all__ = ["main"]

log = logging.getLogger("shipyard.workers.worker")  # not "__main__" when run with -m


def main() -> int:
    """Serve as the worker the spec on stdin describes; the process's exit status."""
    try:
        spec = read_spec(sys.stdin.buffer)
    except (EOFError, TypeError, pickle.UnpicklingError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    # SIGTERM before the server takes over the signals (while the models load): stop there.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    config = spec.config
    configure_logging(config.log_level, config.log_format, config.access_log, worker=spec.slot)
    member = WorkerMember(spec.folder, spec.slot, spec.generation, spec.desired)
    server = ShipyardServer(spec.config, cluster=member)
    http = socket.socket(fileno=spec.http_fd)
    grpc = None if spec.grpc_fd is None else socket.socket(fileno=spec.grpc_fd)
    threading.Thread(target=_lifeline, name="shipyard-lifeline", daemon=True).start()
    hello: list[asyncio.Future[None]] = []

    def ready(info: ServerInfo) -> None:
        hello.append(asyncio.ensure_future(member.hello(info)))
        gc.freeze()  # what is loaded lives as long as the process (as in cli/serve.py)

    try:
        eventloop.run(server.serve(http_socket=http, on_ready=ready, grpc_socket=grpc))
    except ShipyardError as exc:
        log.error("%s", exc.message)
        _report(spec, exc.message)
        return 1
    except KeyboardInterrupt:
        pass
    finally:
        if _orphaned.is_set():  # nobody else will remove the supervisor's folder
            channel.supervisor_path(spec.folder).unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                spec.folder.rmdir()
    return 0


#: Set once stdin closed without the supervisor asking this worker to stop.
_orphaned = threading.Event()


def _lifeline() -> None:
    """Wait for stdin to close (the supervisor is gone), then drain as on SIGTERM.

    Reads the file descriptor itself: a thread blocked in ``sys.stdin`` would hold its lock
    while the interpreter shuts down, which aborts the process.
    """
    while os.read(sys.stdin.fileno(), 4096):
        pass
    _orphaned.set()
    log.warning("the supervisor is gone; draining and stopping")
    os.kill(os.getpid(), signal.SIGTERM)


def _report(spec: WorkerSpec, message: str) -> None:
    """Tell the supervisor why this worker could not start (best effort)."""
    request = {"op": "failed", "slot": spec.slot, "generation": spec.generation}
    request["error"] = message
    with contextlib.suppress(ShipyardError):  # the supervisor is gone: nobody to tell
        asyncio.run(channel.call(channel.supervisor_path(spec.folder), request, 5.0))


if __name__ == "__main__":
    sys.exit(main())
