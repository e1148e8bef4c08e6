"""Process wiring: build the registry, service and transports; start, stop and drain.

This is the only place (with :mod:`shipyard.workers` for ``--workers``) that opens sockets
and handles SIGINT/SIGTERM. On a signal the server stops being ready, stops accepting
connections, lets in-flight requests finish within ``drain_timeout_s``, releases the models
and returns.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING, Any, Protocol

from shipyard import dashboard
from shipyard.batching import DynamicBatcher
from shipyard.config import ServerConfig
from shipyard.errors import ConfigError, NotFoundError
from shipyard.metrics import (
    DEFAULT_LATENCY_BUCKETS_S,
    ServerGauges,
    ServerMetrics,
    build_metrics_registry,
)
from shipyard.repository.layout import find_model
from shipyard.repository.registry import ModelRegistry
from shipyard.repository.stores import RepositoryStore, open_repository
from shipyard.repository.watch import RepositoryWatcher
from shipyard.server.admission import Admission
from shipyard.server.auth import AuthPolicy
from shipyard.server.decoding import DecodePool
from shipyard.server.http import HttpLimits, create_http_app
from shipyard.server.observe import Observer
from shipyard.server.service import Cluster, InferenceService
from shipyard.server.tls import transport_contexts
from shipyard.server.tracing import Tracer, otlp_tracer_provider

if TYPE_CHECKING:  # both imported when serving: gRPC needs an extra, uvicorn costs startup
    import uvicorn
    from prometheus_client import CollectorRegistry

    from shipyard.server.grpc_connection import GrpcServer

__all__ = ["ClusterMember", "ServerInfo", "ShipyardServer", "bind_socket", "describe_repository"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """What a started server tells its caller: where it listens and what it serves."""

    http_url: str
    http_port: int
    models: list[dict[str, Any]] = field(default_factory=list)
    #: ``grpc://host:port`` of the gRPC transport; None when gRPC is off.
    grpc_url: str | None = None
    grpc_port: int | None = None
    #: Whether both transports serve TLS (``https://``; gRPC clients need ``ssl=True``).
    tls: bool = False
    #: Who may call what (:meth:`AuthPolicy.describe`), for the startup banner.
    access: str = ""


class ClusterMember(Cluster, Protocol):
    """This process as one of the worker processes of a server (``--workers N``)."""

    async def join(self, service: InferenceService, metrics: CollectorRegistry) -> None:
        """Take the other workers' requests for ``service``: called once the models loaded."""

    async def leave(self) -> None:
        """Stop taking the other workers' requests: called when the server stops."""


def bind_socket(
    host: str,
    port: int,
    what: str = "",
    advice: str = "--http-port (0 picks a free one)",
    reuse_port: bool = False,
) -> socket.socket:
    """Bind a listening TCP socket, turning 'address in use' into a clear ConfigError.

    ``what`` names the listener in the message ("gRPC"), ``advice`` the flag that changes it.
    ``reuse_port`` sets SO_REUSEPORT: the sockets of ``--workers`` share one port and the
    kernel spreads new connections over them.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        listener = f" for {what}" if what else ""
        raise ConfigError(
            f"cannot listen{listener} on {host}:{port}: {exc.strerror or exc}; "
            f"choose another port with {advice}"
        ) from exc
    sock.listen(2048)
    sock.setblocking(False)
    return sock


class ShipyardServer:
    """One server process: the model registry, the service and the HTTP transport."""

    def __init__(
        self,
        config: ServerConfig,
        tracer_provider: Any = None,
        cluster: ClusterMember | None = None,
    ) -> None:
        """``tracer_provider``: the OpenTelemetry TracerProvider spans go to when
        ``config.otel`` is on (None: one exporting OTLP as the ``OTEL_*`` variables say).
        ``cluster``: the other worker processes when this is one of ``--workers N``."""
        self.config = config
        self.tracer_provider = tracer_provider
        self.cluster = cluster
        self.service: InferenceService | None = None
        self.metrics: ServerMetrics | None = None
        self._uvicorn: uvicorn.Server | None = None
        self._grpc: GrpcServer | None = None
        self._grpc_stopped: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def serve(
        self,
        http_socket: socket.socket | None = None,
        on_ready: Callable[[ServerInfo], None] | None = None,
        grpc_port: int | None = None,
        grpc_socket: socket.socket | None = None,
    ) -> None:
        """Load the models, serve until stopped, then drain and release everything.

        ``grpc_port`` overrides ``config.grpc_port`` (where 0 turns gRPC off): given here,
        gRPC listens on that port and 0 picks a free one (what the test helper does).
        ``http_socket`` and ``grpc_socket``: listening sockets bound already (a worker's).
        """
        import uvicorn

        from shipyard.server.http_connection import uvicorn_config

        config = self.config
        # Keys and certificates are read before anything starts: a bad file fails fast.
        auth = AuthPolicy.from_config(config)
        tls = transport_contexts(config)
        # A missing repository (folder, bucket) is a clear error up front; a URL is synced.
        store = await _open_store(config)
        for name in config.models:
            try:
                find_model(store.root, name)
            except NotFoundError as exc:
                raise ConfigError(f"--model {name}: {exc.message}") from exc
        sock = http_socket or bind_socket(config.host, config.http_port)
        self._loop = asyncio.get_running_loop()
        metrics = self.metrics = ServerMetrics(
            config.metrics_buckets_s or DEFAULT_LATENCY_BUCKETS_S
        )
        registry = ModelRegistry(
            store.root,
            config.drain_timeout_s,
            store=store,
            allow_python=config.allow_python_models,
            metrics=metrics,
        )
        service = self.service = InferenceService(
            registry, config.max_tensor_elements, self.cluster
        )
        operations = _Operations(config, service, metrics, self.tracer_provider)
        grpc_started = joined = False
        operations.start()
        try:
            ui = dashboard.routes(service, config, auth) if config.ui else []
            metrics_registry = operations.registry()
            app = create_http_app(
                service,
                operations.http_limits(),
                metrics_registry,
                operations.observer,
                ui,
                auth=auth,
            )
            await registry.load_all(config.models)
            if self.cluster is not None:
                await self.cluster.join(service, metrics_registry)
                joined = True
            else:
                operations.watch(registry)  # with --workers, the supervisor polls

            host, port = sock.getsockname()[:2]
            url_host = f"[{host}]" if ":" in host else host
            grpc_url = None
            if grpc_socket is not None or grpc_port is not None or config.grpc_port:
                grpc_host = f"[{config.host}]" if ":" in config.host else config.host
                wanted = config.grpc_port if grpc_port is None else grpc_port
                grpc_tls = None if tls is None else tls[1]
                self._grpc, grpc_port = _grpc_server(
                    service, config, wanted, operations, grpc_tls, auth, grpc_socket
                )
                grpc_url = f"grpc://{grpc_host}:{grpc_port}"
            info = ServerInfo(
                f"{'http' if tls is None else 'https'}://{url_host}:{port}",
                port,
                _model_rows(service),
                grpc_url=grpc_url,
                grpc_port=grpc_port if grpc_url else None,
                tls=tls is not None,
                access=auth.describe(),
            )

            outer = self

            class _Server(uvicorn.Server):
                async def startup(self, sockets: list[socket.socket] | None = None) -> None:
                    await super().startup(sockets=sockets)
                    if on_ready is not None and not self.should_exit:
                        on_ready(info)

                def handle_exit(self, sig: int, frame: FrameType | None) -> None:
                    # Not super().handle_exit: uvicorn would re-raise the signal once serve()
                    # returns, killing the process (exit 143 on SIGTERM) before the models drain.
                    outer._begin_shutdown()
                    if self.should_exit and sig == signal.SIGINT:
                        self.force_exit = True  # a second Ctrl-C stops waiting for connections
                    self.should_exit = True

            self._uvicorn = _Server(uvicorn_config(app, config, None if tls is None else tls[0]))
            if self._grpc is not None:
                await self._grpc.start()
                grpc_started = True
            await self._uvicorn.serve(sockets=[sock])
        finally:
            # Also on a failed start (a model folder that breaks loading, Ctrl-C while
            # loading): the socket, the loaded models and gRPC are released either way.
            service.start_draining()
            if grpc_started:
                await self._stop_grpc()
            if joined:
                assert self.cluster is not None
                await self.cluster.leave()
            operations.close()
            await registry.close()
            sock.close()
            observer = operations.observer
            log.info(
                "server stopped: %d requests received, %d answered",
                observer.received,
                observer.answered,
            )

    def _begin_shutdown(self) -> None:
        if self.service is not None:
            self.service.start_draining()
        if self._grpc is not None:
            self._stop_grpc()  # stop accepting gRPC calls now, beside uvicorn
        log.info("shutting down: draining in-flight requests")

    def _stop_grpc(self) -> asyncio.Future[None]:
        """Stop accepting gRPC calls; in-flight ones get ``drain_timeout_s`` (once only)."""
        if self._grpc_stopped is None:
            assert self._grpc is not None, "called only with gRPC on"
            self._grpc_stopped = asyncio.ensure_future(self._grpc.stop(self.config.drain_timeout_s))
        return self._grpc_stopped

    def stop(self) -> None:
        """Ask a running server to shut down gracefully; safe from any thread."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return

        def _stop() -> None:
            self._begin_shutdown()
            if self._uvicorn is not None:
                self._uvicorn.should_exit = True

        loop.call_soon_threadsafe(_stop)


class _Operations:
    """What the server runs beside its transports: limits, metrics, tracing, decode workers."""

    def __init__(
        self,
        config: ServerConfig,
        service: InferenceService,
        metrics: ServerMetrics,
        tracer_provider: Any,
    ) -> None:
        self.config = config
        self.service = service
        self.metrics = metrics
        self.admission = Admission(config.max_inflight_bytes, config.max_inflight_requests, metrics)
        self.decoder = DecodePool(config.decode_workers, config.decode_inline_bytes)
        self.tracer: Tracer | None = None
        if config.otel:
            self.tracer = Tracer(tracer_provider or otlp_tracer_provider())
        sample = config.access_log_sample if config.access_log else 0.0
        self.observer = Observer(metrics, sample, self.tracer)
        self._poller: asyncio.Task[None] | None = None

    def watch(self, registry: ModelRegistry) -> None:
        """Poll the repository for changed models, when ``poll_interval_s`` asks for it."""
        if self.config.poll_interval_s > 0:
            store = registry.store  # an object store: mirrored into the local copy first
            watcher = RepositoryWatcher(
                registry,
                self.config.poll_interval_s,
                self.config.models,
                refresh=store.sync if store is not None else None,
            )
            self._poller = asyncio.ensure_future(watcher.run())

    def start(self) -> None:
        """Start timing the garbage collector's pauses."""
        self.metrics.start_gc_timing()

    def http_limits(self) -> HttpLimits:
        """The HTTP transport's limits."""
        config = self.config
        return HttpLimits(
            config.max_request_bytes, self.admission, self.decoder, config.retry_after_s
        )

    def registry(self) -> CollectorRegistry:
        """The ``/metrics`` registry reading this server's state."""
        registry = self.service.registry
        return build_metrics_registry(
            lambda: [(v.stats, v.batcher.queued) for v in registry.served()],
            self.metrics,
            lambda: [(e.name, e.state.value) for e in registry.index()],
            self.gauges,
            lambda: _instance_pools(registry),
        )

    def gauges(self) -> ServerGauges:
        """The server-wide gauges, now."""
        admission = self.admission
        return ServerGauges(
            ready=self.service.ready(),
            draining=self.service.draining,
            inflight_bytes=admission.bytes,
            inflight_bytes_limit=admission.max_bytes,
            inflight_requests=admission.requests,
            inflight_requests_limit=admission.max_requests,
        )

    def close(self) -> None:
        """Stop polling, stop the decode workers, flush the spans, stop timing the GC."""
        if self._poller is not None:
            self._poller.cancel()
        self.decoder.close()
        if self.tracer is not None:
            self.tracer.shutdown()
        self.metrics.stop_gc_timing()


def _instance_pools(registry: ModelRegistry) -> list[tuple[str, str, int, int, int]]:
    """Per served version with instances of its own: working, being replaced, replaced."""
    rows = []
    for served in registry.served():
        if isinstance(served.batcher, DynamicBatcher):  # an ensemble has no instances
            pool = served.batcher.instances
            stats = served.stats
            rows.append((stats.name, stats.version, pool.size, pool.replacing, pool.retired_count))
    return rows


def _grpc_server(
    service: InferenceService,
    config: ServerConfig,
    port: int,
    operations: _Operations,
    tls: ssl.SSLContext | None,
    auth: AuthPolicy,
    sock: socket.socket | None = None,
) -> tuple[GrpcServer, int]:
    """Build the gRPC server on ``sock``, or on ``port`` (0: a free one); returns it and the
    port it listens on.

    ``tls`` is the context offering ALPN ``h2`` (None: cleartext). Imported only now: gRPC
    needs an optional extra.
    """
    try:
        from shipyard.server.grpc_connection import GrpcServer
    except ImportError as exc:
        raise ConfigError(str(exc)) from exc
    if sock is None:
        sock = bind_socket(config.host, port, "gRPC", "--grpc-port (0 turns gRPC off)")
    server = GrpcServer(
        service,
        sock,
        config,
        tls,
        observer=operations.observer,
        admission=operations.admission,
        auth=auth,
    )
    return server, sock.getsockname()[1]


async def describe_repository(config: ServerConfig) -> list[dict[str, Any]]:
    """Load the repository's models without serving and return the startup table's rows."""
    store = await _open_store(config)
    registry = ModelRegistry(
        store.root, config.drain_timeout_s, store=store, allow_python=config.allow_python_models
    )
    service = InferenceService(registry, config.max_tensor_elements)
    try:
        await registry.load_all(config.models)
        return _model_rows(service)
    finally:
        await registry.close()


async def _open_store(config: ServerConfig) -> RepositoryStore:
    """Open ``config.repository`` (a folder or a store URL, synced into ``cache_dir``)."""
    try:
        return await asyncio.to_thread(
            open_repository, config.repository, config.cache_dir, config.models
        )
    except NotFoundError as exc:
        raise ConfigError(f"--model: {exc.message}") from exc


def _model_rows(service: InferenceService) -> list[dict[str, Any]]:
    """One row per model for the startup table: name, versions, state, inputs, outputs, and
    what loading its versions warned about."""
    rows: dict[str, dict[str, Any]] = {}
    for entry in service.repository_index():
        row = rows.setdefault(
            entry.name,
            {
                "name": entry.name,
                "versions": [],
                "state": entry.state.value,
                "reason": entry.reason,
                "inputs": [],
                "outputs": [],
                "warnings": [],
            },
        )
        if entry.version is not None:
            row["versions"].append(entry.version)
    for name, row in rows.items():
        if row["versions"]:
            metadata = service.model_metadata(name)
            row["inputs"] = [spec.to_dict() for spec in metadata.inputs]
            row["outputs"] = [spec.to_dict() for spec in metadata.outputs]
            row["warnings"] = [
                f"version {served.version}: {warning}"
                for served in service.registry.versions(name)
                for warning in served.warnings
            ]
    return list(rows.values())
