"""``shipyard serve --workers N`` as a subprocess, and where each connection landed.

:class:`ServeWorkers` starts the CLI, waits for its URL and for readiness, knows the worker
processes (the supervisor's children, from ``/proc``) and, on :meth:`ServeWorkers.stop`,
makes sure none of them outlives the test. :func:`owner` says which worker process holds the
server end of a client's TCP connection (``/proc/net/tcp`` and the workers' file
descriptors), so a test can talk to one worker on purpose.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import queue
import re
import signal
import socket
import ssl
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from shipyard.testing import wait_until_blocking
from shipyard.testing.process import ServeProcess

__all__ = ["ServeWorkers", "alive", "free_port", "owner", "serve_workers"]

SHIPYARD = str(Path(sys.executable).parent / "shipyard")
URL = re.compile(r"HTTP\s+(https?://127\.0\.0\.1:(\d+))")


def free_port() -> int:
    """A TCP port free now on 127.0.0.1 (for gRPC, which the CLI turns off with port 0)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return status.rsplit(")", 1)[1].split()[0] != "Z"


def children(pid: int) -> list[int]:
    """The child processes of ``pid``."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except FileNotFoundError:
        return []
    return [int(p) for p in text.split()]


def owner(local_port: int, pids: list[int]) -> int | None:
    """Which of ``pids`` holds the server end of the connection from ``local_port``."""
    inodes: dict[str, int] = {}
    for pid in pids:
        with contextlib.suppress(FileNotFoundError, PermissionError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(FileNotFoundError):
                    target = os.readlink(fd)
                    if target.startswith("socket:["):
                        inodes[target[8:-1]] = pid
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            if remote_port == local_port and fields[9] in inodes:
                return inodes[fields[9]]
    return None


class ServeWorkers(ServeProcess):
    """A running ``shipyard serve REPO --workers N`` with gRPC on a free port."""

    def __init__(
        self,
        repository: Path,
        workers: int,
        *args: str,
        grpc: bool = True,
        env: dict[str, str] | None = None,
        ca: Path | None = None,
    ) -> None:
        """``ca``: the CA that signed the server's certificate, when ``args`` turn TLS on."""
        self.ca = ca
        #: How clients verify the server: a context trusting ``ca`` (TLS), or True (plain).
        self.verify: ssl.SSLContext | bool = (
            True if ca is None else ssl.create_default_context(cafile=str(ca))
        )
        self.grpc_port = free_port() if grpc else 0
        self.workers = workers
        super().__init__(
            repository,
            "--workers",
            str(workers),
            "--grpc-port",
            str(self.grpc_port),
            *args,
            env=env,
            unset=("SHIPYARD_HTTP_PORT", "SHIPYARD_GRPC_PORT", "SHIPYARD_CORES"),
        )
        #: ``host:port`` of gRPC, as tritonclient.grpc takes it.
        self.grpc_address = f"127.0.0.1:{self.grpc_port}"
        #: Every worker process seen, replacements and their children included, to be sure
        #: none survives.
        self.seen: set[int] = set()

    def wait_ready(self, timeout_s: float = 90.0) -> str:
        """Wait for the URL it prints, then until ``/v2/health/ready`` answers 200 (over TLS,
        trusting ``ca``); return the URL."""
        deadline = time.monotonic() + timeout_s
        while not self.url:
            left = deadline - time.monotonic()
            if left <= 0 or (self.process.poll() is not None and self._lines.empty()):
                raise AssertionError(f"no URL printed; stderr={''.join(self.stderr)}")
            with contextlib.suppress(queue.Empty):
                match = URL.search(self._lines.get(timeout=min(left, 0.5)))
                if match:
                    self.url = match.group(1)
        wait_until_blocking(self.ready, "the server is ready", deadline - time.monotonic())
        self.worker_pids()
        return self.url

    def ready(self) -> bool:
        """``GET /v2/health/ready`` on a new connection: True on 200."""
        try:
            ready = httpx.get(f"{self.url}/v2/health/ready", timeout=30, verify=self.verify)
            return ready.status_code == 200
        except httpx.TransportError:
            return False

    def connection_on(self, pid: int, timeout_s: float = 30.0) -> http.client.HTTPConnection:
        """A keep-alive connection (HTTPS, verified, when TLS is on) that landed on worker
        ``pid``: new ones until the kernel hands one to it."""
        port = int(self.url.rsplit(":", 1)[1])
        for _ in range(200):
            if isinstance(self.verify, ssl.SSLContext):
                connection: http.client.HTTPConnection = http.client.HTTPSConnection(
                    "127.0.0.1", port, timeout=timeout_s, context=self.verify
                )
            else:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
            connection.connect()
            assert connection.sock is not None
            if owner(connection.sock.getsockname()[1], self.worker_pids()) == pid:
                return connection
            connection.close()
        raise AssertionError(f"no connection reached worker {pid}")

    def worker_pids(self) -> list[int]:
        """The worker processes running now (their own children are remembered too)."""
        pids = [p for p in children(self.process.pid) if alive(p)]
        family = list(pids)
        while family:
            pid = family.pop()
            self.seen.add(pid)
            family.extend(children(pid))
        return pids

    def stop(self, timeout_s: float = 60.0) -> int:
        """SIGTERM it if it still runs (SIGKILL after ``timeout_s``); fail if a worker outlives
        it."""
        self.worker_pids()
        code = super().stop(timeout_s)
        with contextlib.suppress(AssertionError):
            wait_until_blocking(
                lambda: not any(alive(p) for p in self.seen), "the workers exit", 30
            )
        left = [p for p in self.seen if alive(p)]
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        assert not left, f"worker processes {left} outlived the server"
        return code


@contextlib.contextmanager
def serve_workers(
    repository: Path,
    workers: int = 2,
    *args: str,
    grpc: bool = True,
    env: dict[str, str] | None = None,
    ca: Path | None = None,
) -> Iterator[ServeWorkers]:
    """Start the server, yield it once every worker is ready, stop it (and check) on exit."""
    server = ServeWorkers(repository, workers, *args, grpc=grpc, env=env, ca=ca)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()
