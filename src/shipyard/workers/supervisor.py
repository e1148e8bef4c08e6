"""``shipyard serve --workers N``: the supervisor process and the N workers it keeps running.

The supervisor binds N listening sockets per transport on the same port with SO_REUSEPORT,
one per worker, and passes each worker its own (the kernel spreads new connections over the
sockets, so over the workers, by a hash of the client's address and port). It keeps its copy
of every socket open: when a worker dies, connections that reach its socket meanwhile wait
in that socket's queue for the replacement instead of being refused. Each worker is
``python -m shipyard.workers.worker`` in a session of its own (a Ctrl-C in the terminal
reaches the supervisor alone), with its share of the cores (:data:`CORES_ENV`).

A worker that exits is started again (:class:`RestartPolicy`): at once the first time, then
after a backoff that doubles while it keeps exiting soon after it started. After a few such
exits in a row the supervisor logs an error at each exit ("crash-looping") and closes that
worker's sockets until it serves again, so new connections go to the others; the server
reports not ready meanwhile, and ``shipyard_worker_restarts_total`` counts every restart. A
worker that fails while the server starts stops the whole start with its error.

With ``--poll-interval``, the supervisor polls the repository for the whole server and
reloads changed models in every worker (:mod:`shipyard.workers.polling`); workers do not poll.

SIGTERM or SIGINT: the supervisor closes its copies of the sockets and sends every worker
SIGTERM, which drains it (its own sockets close, in-flight requests finish within
``drain_timeout_s``); a second SIGINT is passed on as SIGINT (stop waiting for connections).
It exits 0 once every worker has exited 0.

TLS and API keys: the supervisor reads the key file and the certificates before it starts any
worker (a bad one is one error naming the file); each worker reads them again from the
settings in its spec and serves with them, as one process does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shipyard.backends.threads import CORES_ENV, usable_cores
from shipyard.config import ServerConfig
from shipyard.errors import ConfigError
from shipyard.server.app import ServerInfo, bind_socket
from shipyard.server.auth import AuthPolicy
from shipyard.server.tls import transport_contexts
from shipyard.workers import channel
from shipyard.workers.broker import Broker, Slot, SlotState
from shipyard.workers.polling import poll_repository
from shipyard.workers.spec import WorkerSpec, write_spec

__all__ = ["WORKER_COMMAND", "RestartPolicy", "Supervisor", "serve_workers", "worker_count"]

log = logging.getLogger(__name__)

#: How a worker process is started (its spec comes on stdin).
WORKER_COMMAND = (sys.executable, "-m", "shipyard.workers.worker")
#: Seconds past ``drain_timeout_s`` the workers get to exit on shutdown before SIGKILL.
EXIT_GRACE_S = 10.0
#: The longest path a Unix socket may have (``sun_path``: 108 bytes with the final NUL).
UNIX_PATH_MAX = 108


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """When a worker that exited is started again."""

    #: The delay before the second quick restart (the first is at once); it doubles with
    #: each further quick exit, up to ``max_delay_s``.
    first_delay_s: float = 0.5
    max_delay_s: float = 30.0
    #: A worker that exits before it serves, or within this many seconds of it, exited quickly.
    steady_s: float = 10.0
    #: This many quick exits in a row: the worker is crash-looping.
    crash_loop: int = 5

    def delay_s(self, quick_exits: int) -> float:
        """Seconds to wait before starting a worker after ``quick_exits`` quick exits in a row."""
        if quick_exits <= 1:
            return 0.0
        return min(self.max_delay_s, self.first_delay_s * 2.0 ** (quick_exits - 2))


class Supervisor:
    """Starts ``workers`` worker processes, restarts them, and drains them on a signal."""

    def __init__(
        self,
        config: ServerConfig,
        workers: int,
        cores: int,
        policy: RestartPolicy | None = None,
        command: Sequence[str] = WORKER_COMMAND,
    ) -> None:
        """``cores``: the cores to share among the workers (each gets ``cores // workers``).
        ``command`` starts one worker (tests give another)."""
        self.config = config
        self.count = workers
        self.policy = policy or RestartPolicy()
        self.command = tuple(command)
        self.cores_each = max(1, cores // workers)
        self.slots = [Slot(i) for i in range(workers)]
        #: Each slot's listening sockets (HTTP, gRPC); None while closed (a crash loop).
        self._sockets: list[tuple[socket.socket, socket.socket | None] | None] = [None] * workers
        #: The HTTP and gRPC ports the workers share (fixed once the first slot binds them).
        self.ports: tuple[int, int | None] = (config.http_port, config.grpc_port or None)
        self._processes: dict[int, asyncio.subprocess.Process] = {}
        #: The exit status of each worker that was running when the shutdown began.
        self.exit_codes: dict[int, int] = {}
        self._folder = Path()
        #: Answers the workers' control requests (once :meth:`run` started).
        self.broker: Broker | None = None
        self._stop = asyncio.Event()
        self._up = False
        self._failure: str | None = None
        self._keepers: list[asyncio.Task[None]] = []

    async def run(self, on_ready: Callable[[ServerInfo], None]) -> int:
        """Serve until SIGINT/SIGTERM; return the exit status (0: every worker exited 0).

        ``on_ready`` is called once every worker serves. Raises ConfigError when the server
        cannot start: a key file or TLS certificate that cannot be read (checked before any
        worker starts), a port in use, or a worker that failed to start (its error).
        """
        loop = asyncio.get_running_loop()
        # Read the keys and certificates as one process does before it serves: a bad file is
        # one error naming it, not N workers each failing on it.
        AuthPolicy.from_config(self.config)
        transport_contexts(self.config)
        for index in range(self.count):
            self._bind(index)
        self._folder = _control_folder(channel.worker_path(Path(), self.count - 1).name)
        broker = self.broker = Broker(self._folder, self.slots)
        control = await channel.serve(channel.supervisor_path(self._folder), broker.handle)
        for number in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(number, self._on_signal, number)
        poller: asyncio.Future[None] | None = None
        try:
            self._keepers = [asyncio.create_task(self._keep(slot)) for slot in self.slots]
            everyone: asyncio.Future[Any] = asyncio.gather(
                *(slot.serving.wait() for slot in self.slots)
            )
            stop: asyncio.Future[Any] = asyncio.ensure_future(self._stop.wait())
            await asyncio.wait([everyone, stop], return_when=asyncio.FIRST_COMPLETED)
            everyone.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await everyone
            if not self._stop.is_set():
                self._up = True
                first = self.slots[0].info
                assert first is not None, "a serving worker has reported its info"
                on_ready(ServerInfo(**first))
                if self.config.poll_interval_s > 0:
                    poller = asyncio.ensure_future(poll_repository(self.config, broker))
            await stop
            return await self._drain()
        finally:
            for number in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(number)
            if poller is not None:
                poller.cancel()
            control.close()
            for task in self._keepers:
                task.cancel()
            for process in self._processes.values():
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
            for index in range(self.count):
                self._close(index)
            shutil.rmtree(self._folder, ignore_errors=True)

    # -- sockets ---------------------------------------------------------------------------

    def _bind(self, index: int) -> None:
        """Bind slot ``index``'s sockets; the first fixes the ports (0 picks free ones)."""
        host = self.config.host
        http_port, grpc_port = self.ports
        grpc_advice = "--grpc-port (0 turns gRPC off)"
        if index == 0:
            # SO_REUSEPORT would let these sockets join another server's on the same port
            # (of the same user) and share its connections: a plain bind first refuses that.
            http_port = _claim(host, http_port, "", "--http-port (0 picks a free one)")
            if grpc_port is not None:
                grpc_port = _claim(host, grpc_port, "gRPC", grpc_advice)
        http = bind_socket(host, http_port, reuse_port=True)
        grpc = None
        try:
            if grpc_port is not None:
                grpc = bind_socket(host, grpc_port, "gRPC", grpc_advice, reuse_port=True)
        except ConfigError:
            http.close()
            raise
        self.ports = (http.getsockname()[1], None if grpc is None else grpc.getsockname()[1])
        self._sockets[index] = (http, grpc)

    def _close(self, index: int) -> None:
        sockets = self._sockets[index]
        self._sockets[index] = None
        for sock in sockets or ():
            if sock is not None:
                sock.close()

    # -- workers ---------------------------------------------------------------------------

    async def _spawn(self, slot: Slot) -> asyncio.subprocess.Process:
        """Start a worker process in ``slot`` with its sockets and the current spec."""
        assert self.broker is not None
        if self._sockets[slot.index] is None:
            self._bind(slot.index)
        sockets = self._sockets[slot.index]
        assert sockets is not None
        http, grpc = sockets
        slot.generation += 1
        slot.state, slot.info, slot.error, slot.served_at = SlotState.STARTING, None, None, None
        slot.spawned_version = self.broker.version
        spec = WorkerSpec(
            slot.index,
            slot.generation,
            self.count,
            self.config,
            self._folder,
            http.fileno(),
            None if grpc is None else grpc.fileno(),
            dict(self.broker.desired),
        )
        process = await asyncio.create_subprocess_exec(
            *self.command,
            stdin=asyncio.subprocess.PIPE,
            pass_fds=[s.fileno() for s in sockets if s is not None],
            env={**os.environ, CORES_ENV: str(self.cores_each)},
            start_new_session=True,
        )
        slot.pid = process.pid
        self._processes[slot.index] = process
        if self._stop.is_set():  # the shutdown began while it started: it drains too
            process.send_signal(signal.SIGTERM)
        assert process.stdin is not None  # kept open: the worker's lifeline
        process.stdin.write(write_spec(spec))
        with contextlib.suppress(ConnectionError):  # it died at once: its exit tells why
            await process.stdin.drain()
        return process

    async def _keep(self, slot: Slot) -> None:
        """Run ``slot``'s worker, and start it again whenever it exits, until shutdown."""
        quick = 0
        while not self._stop.is_set():
            process: asyncio.subprocess.Process | None = None
            try:
                process = await self._spawn(slot)
            except (ConfigError, OSError) as exc:
                message = exc.message if isinstance(exc, ConfigError) else str(exc)
                slot.error = f"could not start: {message}"
                code = 1
            else:
                code = await process.wait()
            slot.state, slot.pid = SlotState.DOWN, None
            slot.serving.clear()
            if self._stop.is_set():
                # SIGTERM before a worker could take it over (still importing) is a clean stop.
                early = code == -signal.SIGTERM and slot.served_at is None
                self.exit_codes[slot.index] = 0 if early else code
                return
            reason = _describe(code) + (f": {slot.error}" if slot.error else "")
            if not self._up:  # the start failed: the worker's own error says why
                self._failure = slot.error or (
                    f"worker {slot.index} {_describe(code)} before it served; see its log above"
                )
                self._shut_down()
                return
            served, policy = slot.served_at, self.policy
            steady = served is not None and time.monotonic() - served >= policy.steady_s
            quick = 0 if steady else quick + 1
            delay = policy.delay_s(quick)
            slot.restarts += 1
            pid = "" if process is None else f" (pid {process.pid})"
            if quick >= policy.crash_loop:
                log.error(
                    "worker %d is crash-looping: %d exits in a row within %g s of starting, "
                    "the last %s; it gets no new connections until it serves again; "
                    "next start in %g s",
                    slot.index,
                    quick,
                    policy.steady_s,
                    reason,
                    delay,
                )
                self._close(slot.index)
            else:
                log.warning(
                    "worker %d%s %s; starting it again%s",
                    slot.index,
                    pid,
                    reason,
                    f" in {delay:g} s" if delay else "",
                )
            if delay:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), delay)

    # -- shutdown --------------------------------------------------------------------------

    def _on_signal(self, number: int) -> None:
        if not self._stop.is_set():
            log.info("%s: draining %d workers", signal.Signals(number).name, self.count)
            self._shut_down()
        elif number == signal.SIGINT:  # a second Ctrl-C: stop waiting for connections
            self._send(signal.SIGINT)

    def _shut_down(self) -> None:
        """Close the supervisor's sockets and ask every worker to drain and exit."""
        for index in range(self.count):
            self._close(index)
        self._send(signal.SIGTERM)
        self._stop.set()

    def _send(self, number: int) -> None:
        for process in self._processes.values():
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(number)

    async def _drain(self) -> int:
        """Wait for every worker to exit (killing late ones); the exit status to return."""
        limit = self.config.drain_timeout_s + EXIT_GRACE_S
        _, late = await asyncio.wait(self._keepers, timeout=limit)
        if late:
            log.error("workers still running %g s after SIGTERM; killing them", limit)
            for process in self._processes.values():
                if process.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
            await asyncio.wait(self._keepers)
        if self._failure is not None:
            raise ConfigError(self._failure)
        failed = {i: code for i, code in sorted(self.exit_codes.items()) if code != 0}
        for index, code in failed.items():
            log.error("worker %d %s", index, _describe(code))
        log.info("all %d workers stopped", self.count)
        return 1 if failed else 0


def _control_folder(longest: str) -> Path:
    """A new private folder (mode 0700) for the control sockets, in the temporary folder,
    or in /tmp when that one's path is too long for a Unix socket's name."""
    folder = Path(tempfile.mkdtemp(prefix="shipyard-workers-"))
    if len(os.fsencode(folder / longest)) < UNIX_PATH_MAX:
        return folder
    folder.rmdir()
    return Path(tempfile.mkdtemp(prefix="shipyard-workers-", dir="/tmp"))


def _claim(host: str, port: int, what: str, advice: str) -> int:
    """Check that ``port`` is free with a plain bind (no SO_REUSEPORT); the port it got."""
    probe = bind_socket(host, port, what, advice)
    try:
        free: int = probe.getsockname()[1]
        return free
    finally:
        probe.close()


def _describe(code: int) -> str:
    """How a process ended, in words: "exited with status 1", "was killed by SIGKILL"."""
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"was killed by {name}"
    return f"exited with status {code}"


def worker_count(config: ServerConfig) -> int:
    """How many workers ``config.workers`` asks for (``"auto"``: one per usable core)."""
    return usable_cores() if config.workers == "auto" else config.workers


def serve_workers(config: ServerConfig, on_ready: Callable[[ServerInfo], None]) -> int:
    """Serve ``config`` with its worker processes until SIGINT/SIGTERM; the exit status.

    Raises ConfigError when it cannot start (see :meth:`Supervisor.run`).
    """
    supervisor = Supervisor(config, worker_count(config), usable_cores())
    return asyncio.run(supervisor.run(on_ready))
