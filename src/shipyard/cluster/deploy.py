"""Deploy a model repository onto a Ray cluster with Ray Serve.

Each model becomes its own Serve application, routed at ``/v2/models/<name>``, whose replicas run
:class:`~shipyard.cluster.replica.ModelReplica`; the application ``shipyard:root`` at ``/``
answers the server-level routes. Ray's ingress forwards a request straight to a replica of the
model it names, so the only hop is Ray's own proxy (or HAProxy, see docs/ray.md). Replica counts
and autoscaling come from ``[scale]`` in each model.toml.

API keys travel to every replica in :class:`~shipyard.cluster.replica.ReplicaSpec` (digests
only). TLS is Ray's own: ``ssl_certfile``/``ssl_keyfile`` in Serve's HTTP options, which only Ray's
Python proxy serves (its HAProxy ingress has none, so :func:`connect` refuses TLS there).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shipyard.cluster.replica import ModelReplica, ReplicaSpec, RootIngress
from shipyard.config import ModelConfig, ScaleConfig
from shipyard.errors import ConfigError
from shipyard.repository.layout import find_model, scan_repository
from shipyard.repository.stores import open_repository
from shipyard.server.auth import AuthPolicy, is_loopback

__all__ = [
    "HAPROXY_NO_TLS",
    "ROOT_APP",
    "ClusterSettings",
    "app_name",
    "connect",
    "deploy_repository",
    "deployment_options",
    "head_node_env",
    "remove_repository",
    "unreachable_replicas",
    "wait_then_remove",
]

log = logging.getLogger(__name__)

#: The Serve application answering health, server metadata and the repository index.
ROOT_APP = "shipyard:root"
_HINT = "pip install 'shipyard[ray]'"
#: Why TLS is refused on a cluster whose ingress is HAProxy.
HAPROXY_NO_TLS = (
    "Ray's HAProxy ingress has no TLS: terminate TLS at a load balancer in front of it, or "
    "start the cluster without RAY_SERVE_ENABLE_HA_PROXY to let Ray's proxy serve HTTPS "
    "(slower: docs/ray.md)"
)
#: A custom resource only the head node has (Ray's ``HEAD_NODE_RESOURCE_NAME``).
_HEAD_NODE = "node:__internal_head__"
#: Seconds the head node has to answer :func:`head_node_env`.
_HEAD_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class ClusterSettings:
    """Where to deploy and how the cluster's HTTP ingress listens."""

    #: ``auto`` (the cluster this machine belongs to), ``ray://host:10001`` or ``host:port``.
    address: str = "auto"
    #: Address and port of Ray Serve's HTTP ingress (set once per cluster, on the head node).
    host: str = "127.0.0.1"
    http_port: int = 8000
    #: Models to deploy; empty: every model in the repository.
    models: tuple[str, ...] = ()
    cache_dir: Path | None = None
    max_request_bytes: int = 64 * 1024 * 1024
    max_tensor_elements: int = 64 * 1024 * 1024
    drain_timeout_s: float = 30.0
    #: API keys checked by every replica; None: no key file, every call is open.
    auth: AuthPolicy | None = None
    #: PEM certificate chain and key: Ray's proxy serves HTTPS (read on the head node).
    tls_cert: Path | None = None
    tls_key: Path | None = None

    @property
    def tls(self) -> bool:
        """Whether Ray's proxy serves HTTPS."""
        return self.tls_cert is not None and self.tls_key is not None

    def http_options(self) -> dict[str, Any]:
        """Serve's HTTP options for these settings (certificate paths made absolute)."""
        cert, key = (self.tls_cert, self.tls_key) if self.tls else (None, None)
        return {
            "host": self.host,
            "port": self.http_port,
            "ssl_certfile": None if cert is None else str(cert.absolute()),
            "ssl_keyfile": None if key is None else str(key.absolute()),
        }


def app_name(model: str) -> str:
    """The Serve application of ``model`` (``:`` keeps it apart from any model name)."""
    return f"shipyard:{model}"


#: The environment of every replica process: Ray Serve's throughput mode runs the application
#: on the replica's own event loop (not a second thread's) and keeps Serve's logs off stderr.
#: Measured in benchmarks/RESULTS.md ("Ray Serve"): it is the larger part of the gain there.
#: Throughput mode would also give every replica an HTTP server of its own (direct ingress) on
#: clusters that route through Ray's proxy; that stays off (a node in HAProxy mode still turns
#: it on, which HAProxy needs).
REPLICA_ENV = {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1", "RAY_SERVE_ENABLE_DIRECT_INGRESS": "0"}
#: ``--host`` values on which a replica listens on every interface.
_EVERY_INTERFACE = ("0.0.0.0", "::")


def deployment_options(scale: ScaleConfig) -> dict[str, Any]:
    """Ray Serve deployment options for ``[scale]``: fixed replicas or autoscaling.

    Every replica runs in Ray's throughput mode (:data:`REPLICA_ENV`) and without Ray's
    per-request access log (a file write per request, like ``shipyard serve``'s access log,
    which is off by default too).
    """
    options: dict[str, Any] = {
        "max_ongoing_requests": scale.max_ongoing_requests,
        "ray_actor_options": {
            "num_cpus": scale.num_cpus,
            "runtime_env": {"env_vars": dict(REPLICA_ENV)},
        },
        "health_check_period_s": 2.0,
        "logging_config": {"enable_access_log": False},
    }
    if scale.min_replicas == scale.max_replicas:
        options["num_replicas"] = scale.min_replicas
    else:
        options["autoscaling_config"] = {
            "min_replicas": scale.min_replicas,
            "initial_replicas": scale.min_replicas,
            "max_replicas": scale.max_replicas,
            "target_ongoing_requests": scale.target_ongoing_requests,
            "upscale_delay_s": scale.upscale_delay_s,
            "downscale_delay_s": scale.downscale_delay_s,
        }
    return options


def connect(settings: ClusterSettings) -> Any:
    """Connect to the cluster and start Serve's HTTP ingress on it; return ``ray.serve``."""
    try:
        import ray
        from ray import serve
    except ImportError as exc:
        raise ConfigError(f"shipyard ray serve needs Ray Serve: {_HINT}") from exc
    try:
        ray.init(address=settings.address, namespace="shipyard", log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ConfigError(
            f"cannot connect to the Ray cluster at {settings.address!r}: {exc}; start one with "
            "`ray start --head`, or pass --address ray://HOST:10001"
        ) from exc
    wanted = settings.http_options()
    if settings.tls or settings.host not in _EVERY_INTERFACE:
        try:
            haproxy = head_node_env("RAY_SERVE_ENABLE_HA_PROXY") == "1"
        except ConfigError as exc:
            if settings.tls:  # TLS on HAProxy would serve nothing: do not guess
                raise
            log.warning("%s; deploying without checking --host against it", exc.message)
            haproxy = False
        if haproxy and settings.tls:
            raise ConfigError(HAPROXY_NO_TLS)
        alive = [node for node in ray.nodes() if node.get("Alive")]  # type: ignore[no-untyped-call]
        nodes = {str(node["NodeManagerAddress"]) for node in alive}
        problem = unreachable_replicas(settings.host, haproxy, nodes)
        if problem:
            raise ConfigError(problem)
    serve.start(proxy_location="HeadOnly", http_options=wanted)
    _check_running_options(wanted)
    return serve


def unreachable_replicas(host: str, haproxy: bool, node_addresses: set[str]) -> str | None:
    """Why HAProxy could not reach every replica with ``--host host``, or None.

    With HAProxy, each replica serves HTTP itself on Serve's ``host``; HAProxy reaches the
    replicas of its own node over loopback and those of other nodes at their node's address.
    On nodes with several addresses only a host of every interface serves both (a loopback
    host misses the other nodes, one node's address the loopback and the other nodes).
    """
    if not haproxy or host in _EVERY_INTERFACE or len(node_addresses) < 2:
        return None
    where = "loopback only" if is_loopback(host) else f"{host} only"
    return (
        f"--host {host} makes every replica listen on {where}, but this cluster's nodes have "
        f"{len(node_addresses)} addresses ({', '.join(sorted(node_addresses))}) and Ray's "
        "HAProxy ingress reaches replicas on other nodes at their address: pass --host 0.0.0.0 "
        "(HAProxy and the replicas then listen on every interface; keep the replicas' ports "
        "30000-31000 inside the cluster's network, docs/ray.md)"
    )


def head_node_env(name: str) -> str | None:
    """The environment variable ``name`` as Ray's workers on the head node see it: what the
    Serve controller, which runs there and picks the ingress, reads its settings from."""
    import ray

    def read() -> str | None:  # a closure: sent by value, the head needs no Shipyard import
        return os.environ.get(name)

    task = ray.remote(num_cpus=0, resources={_HEAD_NODE: 0.001})(read)
    try:
        value: str | None = ray.get(task.remote(), timeout=_HEAD_TIMEOUT_S)
    except TimeoutError as exc:  # Ray's GetTimeoutError
        raise ConfigError(
            f"the Ray cluster's head node did not run a task within {_HEAD_TIMEOUT_S:.0f} s "
            "(needed to check which ingress it runs: Ray's proxy or HAProxy)"
        ) from exc
    return value


def _check_running_options(wanted: dict[str, Any]) -> None:
    """Raise ConfigError when Serve already ran on the cluster with other HTTP options.

    Ray fixes them when Serve first starts on a cluster and ignores new ones afterwards (with
    only a log line), so the command would otherwise print a URL nobody serves.
    """
    try:  # no public API reads them (Ray 2.60): a later Ray may move this
        from ray.serve.context import _get_global_client

        client = _get_global_client()
        running = None if client is None else client.http_config
    except (ImportError, AttributeError) as exc:
        log.warning("cannot read Serve's running HTTP options (%s): not checked", exc)
        return
    if running is None:
        raise ConfigError("Ray Serve did not start on the cluster")
    if all(getattr(running, key) == value for key, value in wanted.items()):
        return
    tls = f"HTTPS with {running.ssl_certfile}" if running.ssl_certfile else "plain HTTP"
    raise ConfigError(
        f"Ray Serve already runs on this cluster on {running.host}:{running.port} with {tls}; "
        "its HTTP options are fixed when Serve first starts on a cluster and Ray ignores new "
        "ones: deploy with those (--host, --http-port, --tls-cert/--tls-key), or shut Serve "
        "down first (`serve shutdown`; it removes every application) and deploy again"
    )


def _generation(store_root: Path, name: str) -> str:
    """A fingerprint of the model's folder: a changed one makes every replica reload."""
    digest = hashlib.sha256()
    for path in sorted((store_root / name).rglob("*")):
        if path.is_file():
            stat = path.stat()
            digest.update(
                f"{path.relative_to(store_root)}:{stat.st_size}:{stat.st_mtime_ns}".encode()
            )
    return digest.hexdigest()[:16]


def deploy_repository(repository: str, settings: ClusterSettings) -> list[str]:
    """Deploy every model of ``repository`` (or ``settings.models``); return their names.

    Blocks until every application runs. Running it again is a rollout: models whose files
    changed reload on every replica, and ``[scale]`` changes apply. Raises ConfigError for an
    unusable repository or cluster, ModelLoadError-like errors from Ray for a model that
    cannot load.
    """
    store = open_repository(repository, settings.cache_dir, settings.models)
    names = list(settings.models) or list(scan_repository(store.root))
    if not names:
        raise ConfigError(f"the repository {repository} holds no model to deploy")
    configs: dict[str, ModelConfig] = {
        name: find_model(store.root, name).config() for name in names
    }
    serve = connect(settings)
    replica_class = serve.ingress()(ModelReplica)
    cache = str(settings.cache_dir) if settings.cache_dir else None
    for name, config in configs.items():
        spec = ReplicaSpec(
            repository,
            name,
            cache,
            settings.max_request_bytes,
            settings.max_tensor_elements,
            settings.drain_timeout_s,
            auth=settings.auth,
        )
        deployment = serve.deployment(replica_class).options(
            name=name,
            user_config={"generation": _generation(store.root, name)},
            **deployment_options(config.scale),
        )
        log.info("deploying %s (%s)", name, config.scale)
        serve.run(deployment.bind(spec), name=app_name(name), route_prefix=f"/v2/models/{name}")
    root = serve.deployment(serve.ingress()(RootIngress)).options(
        name="root", num_replicas=1, ray_actor_options={"num_cpus": 0}
    )
    models = {name: (app_name(name), name) for name in configs}
    serve.run(root.bind(models, auth=settings.auth), name=ROOT_APP, route_prefix="/")
    return names


def remove_repository(names: list[str]) -> None:
    """Delete the applications of ``names`` and the root application from the cluster."""
    from ray import serve

    for name in [*names, None]:
        try:
            serve.delete(app_name(name) if name else ROOT_APP)
        except Exception as exc:  # the cluster may be gone already: say so, do not fail
            log.warning("could not delete %s: %s", name or ROOT_APP, exc)


def wait_then_remove(names: list[str]) -> None:
    """Block until SIGINT or SIGTERM, then remove the applications of ``names``."""
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)
    remove_repository(names)
