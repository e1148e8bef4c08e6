"""The front door of ``shipyard ray serve --ingress shipyard``: one Serve replica on the head node.

It runs HAProxy on the cluster URL (:mod:`~shipyard.cluster.haproxy`), serves the root routes
(health, server metadata, repository index: :class:`~shipyard.cluster.replica.RootIngress`)
with Shipyard's HTTP server on a loopback port behind it, and keeps HAProxy's backends in step
with the replicas that announce themselves. Requests then go client -> HAProxy -> a replica's
own Shipyard server: no Python proxy and none of Ray's per-request machinery on the way, which
is what makes this ingress fast (benchmarks/RESULTS.md, "Scaling out").

HAProxy is a child process of this replica. Should the replica be killed outright, its HAProxy
would live on holding the port, so the next front door on that node stops it first (its pid
file is kept in a folder named after the port; so does a front door that replaces another
during a rollout). TLS, when asked for, is HAProxy's
(``bind ... ssl``, and ``verify required`` with a client CA: mutual TLS) with the files read on
the head node.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from shipyard.cluster.haproxy import (
    Backend,
    EndpointTable,
    HaproxyAdmin,
    SlotChange,
    find_haproxy,
    render_config,
)
from shipyard.cluster.listener import Listener, start_listener
from shipyard.cluster.replica import RootIngress
from shipyard.server.auth import AuthPolicy

__all__ = ["Front", "FrontSpec", "state_dir"]

log = logging.getLogger(__name__)

#: Seconds HAProxy has to open its admin socket after it starts.
_START_TIMEOUT_S = 15.0


@dataclass(frozen=True, slots=True)
class FrontSpec:
    """Where the front door listens and what it routes."""

    host: str
    port: int
    backends: tuple[Backend, ...]
    #: ``{model: (Ray application, deployment)}`` for the root routes.
    models: dict[str, tuple[str, str]]
    auth: AuthPolicy | None = None
    #: PEM certificate chain and key, read on the head node: HAProxy serves HTTPS.
    tls_cert: str | None = None
    tls_key: str | None = None
    #: PEM CA, read on the head node: HAProxy requires client certificates it signed.
    tls_client_ca: str | None = None
    request_timeout_s: float = 300.0


def state_dir(port: int) -> Path:
    """The folder of the front door on ``port`` (configuration, admin socket, pid, log)."""
    return Path(tempfile.gettempdir()) / f"shipyard-front-{os.getuid()}-{port}"


class Front(RootIngress):
    """HAProxy on the cluster URL, the root routes behind it, and the live backend table."""

    def __init__(self, spec: FrontSpec) -> None:
        super().__init__(spec.models, auth=spec.auth)
        self.spec = spec
        self.table = EndpointTable({b.model: b for b in spec.backends})
        # Per instance: during a rollout the old front door must not steer the new HAProxy.
        self._dir = state_dir(spec.port) / uuid.uuid4().hex[:8]
        self._pid_file = state_dir(spec.port) / "haproxy.pid"
        self._admin = HaproxyAdmin(self._dir / "admin.sock")
        self._lock = asyncio.Lock()
        self._haproxy: subprocess.Popen[bytes] | None = None
        self._root: Listener | None = None
        self._expiry: asyncio.Task[None] | None = None
        #: The HAProxy this front door takes over from (its pid), stopped softly once this one
        #: serves.
        self._previous: int | None = None

    async def __serve_build_asgi_app__(self) -> Any:  # type: ignore[override]
        """Start the root routes' server and HAProxy (Ray calls this once the replica runs)."""
        app = super().__serve_build_asgi_app__()
        self._root = await start_listener(app, "127.0.0.1")
        seeds = await asyncio.to_thread(self._start_haproxy, self._root.port)
        async with self._lock:  # the replicas the previous HAProxy was sending requests to
            now = time.monotonic()
            for model, address in seeds:
                with contextlib.suppress(KeyError, OverflowError):
                    await self._apply(self.table.seed(model, address, now))
        if self._previous is not None:  # now that this HAProxy serves them: let it go
            _soft_stop(self._previous)
        self._expiry = asyncio.get_running_loop().create_task(self._expire_silent())
        return app

    def _start_haproxy(self, root_port: int) -> list[tuple[str, tuple[str, int]]]:
        """Start HAProxy on the port beside the previous one (a front door being replaced, or
        one a killed front door left running); return the replicas the previous one sends
        requests to, by model, to seed the table with."""
        spec = self.spec
        _private_folder(self._dir.parent)
        self._dir.mkdir(mode=0o700)
        previous = _previous_haproxy(self._pid_file, self._dir.parent)
        seeds = [] if previous is None else _serving_replicas(previous[1])
        for old in self._dir.parent.iterdir():  # what stopped front doors left behind
            if old.is_dir() and old != self._dir and (previous is None or old != previous[1]):
                shutil.rmtree(old, ignore_errors=True)
        pem = None
        if spec.tls_cert is not None and spec.tls_key is not None:
            pem = self._dir / "tls.pem"
            fd = os.open(pem, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as out:
                for part in (spec.tls_cert, spec.tls_key):
                    data = Path(part).read_bytes()
                    out.write(data if data.endswith(b"\n") else data + b"\n")
        client_ca = None
        if pem is not None and spec.tls_client_ca is not None:
            client_ca = self._dir / "client-ca.pem"
            client_ca.write_bytes(Path(spec.tls_client_ca).read_bytes())
        config = self._dir / "haproxy.cfg"
        config.write_text(
            render_config(
                host=spec.host,
                port=spec.port,
                backends=spec.backends,
                root_port=root_port,
                admin_socket=self._admin.socket_path,
                tls_pem=pem,
                tls_client_ca=client_ca,
                request_timeout_s=spec.request_timeout_s,
            )
        )
        self._admin.socket_path.unlink(missing_ok=True)
        logfile = self._dir / "haproxy.log"
        with logfile.open("wb") as out:
            self._haproxy = subprocess.Popen(
                [find_haproxy(), "-db", "-f", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self._pid_file.write_text(f"{self._haproxy.pid}\n")
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not self._admin.socket_path.exists():
            if self._haproxy.poll() is not None or time.monotonic() > deadline:
                output = logfile.read_text(errors="replace")[-2000:]
                raise RuntimeError(
                    f"HAProxy did not start on {spec.host}:{spec.port}: {output.strip()}"
                )
            time.sleep(0.05)
        log.info("front door: HAProxy %d on %s:%d", self._haproxy.pid, spec.host, spec.port)
        self._previous = None if previous is None else previous[0]
        return seeds

    async def announce(self, model: str, replica: str, host: str, port: int) -> None:
        """A replica of ``model`` serves at ``host:port`` (every second, as a heartbeat)."""
        async with self._lock:
            changes = self.table.announce(model, replica, (host, port), time.monotonic())
            try:
                await self._apply(changes)
            except BaseException:
                # Not (surely) in HAProxy: take it out, and let the next announcement retry.
                with contextlib.suppress(Exception):
                    await self._admin.apply(self.table.forget(replica))
                raise

    async def withdraw(self, replica: str) -> None:
        """A replica stops (it drains): send it no new requests."""
        async with self._lock:
            await self._apply(self.table.withdraw(replica, time.monotonic()))

    async def _ready(self, request: Request) -> Response:
        """Ready once every model's deployment is, and HAProxy has a replica of each."""
        if any(not self.table.addresses(model) for model in self.models):
            return Response(status_code=503)
        return await super()._ready(request)

    def addresses(self, model: str) -> list[tuple[str, int]]:
        """Where the replicas of ``model`` serve, as announced (tests, diagnostics)."""
        return self.table.addresses(model)

    async def _apply(self, changes: list[SlotChange]) -> None:
        for change in changes:
            log.info("front door: %s slot %d -> %s", change.backend, change.slot, change.address)
        await self._admin.apply(changes)

    async def _expire_silent(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                async with self._lock:
                    await self._apply(self.table.expire(time.monotonic()))
            except Exception:  # HAProxy gone: check_health fails the replica
                log.exception("front door: cannot update HAProxy")

    def check_health(self) -> None:
        """Raise when HAProxy has exited, so Ray replaces the front door."""
        if self._haproxy is not None and self._haproxy.poll() is not None:
            raise RuntimeError(f"HAProxy exited with {self._haproxy.returncode}")

    async def __del__(self) -> None:
        """Stop HAProxy and the root routes when Ray stops the front door."""
        if self._expiry is not None:
            self._expiry.cancel()
        if self._haproxy is not None and self._haproxy.poll() is None:
            # Soft stop: no new connections, in-flight requests finish (a front door replacing
            # this one has the port already); then stop waiting.
            self._haproxy.send_signal(signal.SIGUSR1)
            try:
                await asyncio.to_thread(self._haproxy.wait, self.spec.request_timeout_s)
            except subprocess.TimeoutExpired:
                self._haproxy.kill()
            with contextlib.suppress(OSError):
                if self._pid_file.read_text().split() == [str(self._haproxy.pid)]:
                    self._pid_file.unlink()
        shutil.rmtree(self._dir, ignore_errors=True)
        if self._root is not None:
            await self._root.stop()


def _private_folder(path: Path) -> None:
    """Make ``path`` a folder only this user can enter, or refuse one that is not (in the
    shared temporary folder, another user could have made it first)."""
    path.mkdir(mode=0o700, exist_ok=True)
    found = os.lstat(path)
    if not stat.S_ISDIR(found.st_mode) or found.st_uid != os.getuid() or found.st_mode & 0o077:
        raise RuntimeError(
            f"{path} is not a private folder of this user (owner uid {found.st_uid}, mode "
            f"{stat.S_IMODE(found.st_mode):o}): remove it and deploy again"
        )


def _previous_haproxy(pid_file: Path, folder: Path) -> tuple[int, Path] | None:
    """The HAProxy a previous front door on this port started, if it still runs: its pid and
    its folder (the pid file names it, and its command line names a configuration in a folder
    of ``folder``)."""
    try:
        pid = int(pid_file.read_text().split()[0])
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except (OSError, ValueError, IndexError):
        return None
    configs = [Path(arg) for arg in argv if arg.endswith("haproxy.cfg")]
    if not argv or "haproxy" not in argv[0] or not configs or configs[0].parent.parent != folder:
        return None
    return pid, configs[0].parent


#: ``acl model_3 path /v2/models/name`` in a front door's configuration.
_MODEL_ACL = re.compile(r"^\s*acl (\S+) path /v2/models/(\S+)$", re.MULTILINE)


def _serving_replicas(folder: Path) -> list[tuple[str, tuple[str, int]]]:
    """``(model, address)`` of every replica the front door HAProxy of ``folder`` has UP (read
    from its configuration and its runtime API); [] if it cannot tell."""
    try:
        backends = dict(_MODEL_ACL.findall((folder / "haproxy.cfg").read_text()))
        with socket.socket(socket.AF_UNIX) as admin:
            admin.settimeout(5.0)
            admin.connect(os.fspath(folder / "admin.sock"))
            admin.sendall(b"show servers state\n")
            answer = b""
            while chunk := admin.recv(65536):
                answer += chunk
    except OSError:
        return []
    found = []
    for line in answer.decode(errors="replace").splitlines():
        fields = line.split()
        # be_id be_name srv_id srv_name srv_addr srv_op_state ... (index 18: srv_port)
        if len(fields) > 18 and fields[1] in backends and fields[5] == "2":  # 2: UP
            found.append((backends[fields[1]], (fields[4], int(fields[18]))))
    return found


def _soft_stop(pid: int) -> None:
    """Ask HAProxy ``pid`` to stop softly: it closes its listeners and exits once its
    connections' requests are answered (``hard-stop-after`` bounds the wait)."""
    log.info("front door: the previous HAProxy %d stops softly", pid)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGUSR1)
