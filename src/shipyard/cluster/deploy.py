"""Deploy a model repository onto a Ray cluster with Ray Serve.

Each model becomes its own Serve application whose replicas run
:class:`~shipyard.cluster.replica.ModelReplica`. Replica counts and autoscaling come from
``[scale]`` in each model.toml. Two ingresses (``ClusterSettings.ingress``, docs/ray.md):

* ``shipyard`` (the default, the fastest): every replica serves with Shipyard's own HTTP server
  on a port of its node, and the front door (:mod:`~shipyard.cluster.front`, the application
  ``shipyard-front`` on the head node) runs HAProxy on the cluster URL, routing each request
  to a replica of the model it names. Ray places, restarts and scales the replicas; no request
  passes through Ray. TLS is HAProxy's.
* ``ray``: Ray Serve's own ingress routes ``/v2/models/<name>`` to the model's application and
  ``/`` to ``shipyard-root`` (the server-level routes); the hop is Ray's Python proxy, or
  HAProxy on clusters started with ``RAY_SERVE_ENABLE_HA_PROXY=1``.

API keys travel to every replica in :class:`~shipyard.cluster.replica.ReplicaSpec` (digests
only). With ``--ingress ray``, TLS is Ray's own: ``ssl_certfile``/``ssl_keyfile`` in Serve's HTTP
options, which only Ray's Python proxy serves (its HAProxy ingress has none, so :func:`connect`
refuses TLS there).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shipyard.cluster.autoscale import ongoing_requests_policy
from shipyard.cluster.front import Front, FrontSpec
from shipyard.cluster.haproxy import Backend
from shipyard.cluster.replica import (
    EVERY_INTERFACE,
    FRONT_APP,
    ModelReplica,
    ReplicaSpec,
    RootIngress,
)
from shipyard.config import ModelConfig, ScaleConfig
from shipyard.errors import ConfigError
from shipyard.repository.layout import find_model, scan_repository
from shipyard.repository.stores import open_repository
from shipyard.server.auth import AuthPolicy, is_loopback

__all__ = [
    "HAPROXY_NO_TLS",
    "INGRESSES",
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
ROOT_APP = "shipyard-root"  # no model's application can have it (theirs: shipyard:<model>)
_HINT = "pip install 'shipyard[ray]'"
#: Why TLS is refused on a cluster whose ingress is HAProxy.
HAPROXY_NO_TLS = (
    "Ray's HAProxy ingress has no TLS: terminate TLS at a load balancer in front of it, or "
    "start the cluster without RAY_SERVE_ENABLE_HA_PROXY to let Ray's proxy serve HTTPS "
    "(slower: docs/ray.md)"
)
#: The ways into the cluster (``--ingress``): Shipyard's front door, or Ray Serve's own.
INGRESSES = ("shipyard", "ray")
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
    #: PEM CA whose client certificates the front door requires (mutual TLS; ``shipyard`` only).
    tls_client_ca: Path | None = None
    #: ``shipyard``: HAProxy on the head node straight to each replica's own server;
    #: ``ray``: Ray Serve's ingress (its proxy, or its HAProxy mode).
    ingress: str = "shipyard"

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
#: Seconds a stopping replica needs besides its own drain (Ray's HAProxy mode waits 30 s first).
_RAY_SHUTDOWN_STEPS_S = 40.0


def deployment_options(
    scale: ScaleConfig, own_metric: bool = False, drain_timeout_s: float = 30.0
) -> dict[str, Any]:
    """Ray Serve deployment options for ``[scale]``: fixed replicas or autoscaling.

    Every replica runs in Ray's throughput mode (:data:`REPLICA_ENV`) and without Ray's
    per-request access log (a file write per request, like ``shipyard serve``'s access log,
    which is off by default too). ``own_metric``: autoscale on the replicas' own count of
    requests (``--ingress shipyard``, where Ray sees none of them). A stopping replica has
    ``drain_timeout_s`` for its requests, plus room for Ray's own steps (Ray's HAProxy mode
    alone waits 30 s before the replica's shutdown starts), before Ray kills it.
    """
    options: dict[str, Any] = {
        "max_ongoing_requests": scale.max_ongoing_requests,
        "ray_actor_options": {
            "num_cpus": scale.num_cpus,
            "runtime_env": {"env_vars": dict(REPLICA_ENV)},
        },
        "health_check_period_s": 2.0,
        "graceful_shutdown_timeout_s": drain_timeout_s + _RAY_SHUTDOWN_STEPS_S,
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
        if own_metric:
            policy = f"{ongoing_requests_policy.__module__}:{ongoing_requests_policy.__name__}"
            options["autoscaling_config"]["policy"] = {"policy_function": policy}
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
    if settings.ingress == "shipyard":
        if settings.host not in EVERY_INTERFACE:
            problem = unreachable_replicas(settings.host, True, _node_addresses())
            if problem:
                raise ConfigError(problem)
        serve.start(proxy_location="Disabled")  # the front door is the way in, not Ray's proxy
        _check_proxy_location("Disabled")
        return serve
    wanted = settings.http_options()
    if settings.tls or settings.host not in EVERY_INTERFACE:
        try:
            haproxy = head_node_env("RAY_SERVE_ENABLE_HA_PROXY") == "1"
        except ConfigError as exc:
            if settings.tls:  # TLS on HAProxy would serve nothing: do not guess
                raise
            log.warning("%s; deploying without checking --host against it", exc.message)
            haproxy = False
        if haproxy and settings.tls:
            raise ConfigError(HAPROXY_NO_TLS)
        problem = unreachable_replicas(settings.host, haproxy, _node_addresses())
        if problem:
            raise ConfigError(problem)
    serve.start(proxy_location="HeadOnly", http_options=wanted)
    _check_proxy_location("HeadOnly")
    _check_running_options(wanted)
    return serve


def _node_addresses() -> set[str]:
    """The addresses of the cluster's live nodes."""
    import ray

    alive = [node for node in ray.nodes() if node.get("Alive")]  # type: ignore[no-untyped-call]
    return {str(node["NodeManagerAddress"]) for node in alive}


def unreachable_replicas(host: str, haproxy: bool, node_addresses: set[str]) -> str | None:
    """Why HAProxy could not reach every replica with ``--host host``, or None.

    With HAProxy, each replica serves HTTP itself on Serve's ``host``; HAProxy reaches the
    replicas of its own node over loopback and those of other nodes at their node's address.
    On nodes with several addresses only a host of every interface serves both (a loopback
    host misses the other nodes, one node's address the loopback and the other nodes).
    """
    if not haproxy or host in EVERY_INTERFACE or len(node_addresses) < 2:
        return None
    where = "loopback only" if is_loopback(host) else f"{host} only"
    return (
        f"--host {host} makes every replica listen on {where}, but this cluster's nodes have "
        f"{len(node_addresses)} addresses ({', '.join(sorted(node_addresses))}) and HAProxy "
        "reaches replicas on other nodes at their address: pass --host 0.0.0.0 (HAProxy and "
        "the replicas then listen on every interface; keep the replicas' ports inside the "
        "cluster's network, docs/ray.md)"
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


def _check_proxy_location(wanted: str) -> None:
    """Raise ConfigError when Serve already runs on the cluster with Ray's HTTP proxies and the
    front door is wanted (they could share its port), or without them and Ray's ingress is."""
    try:  # no public API reads it (Ray 2.60): a later Ray may move this
        from ray.serve.context import _get_global_client

        import ray

        controller = getattr(_get_global_client(), "_controller", None)
        if controller is None:
            return
        running = ray.get(controller.get_proxy_location.remote(), timeout=30)
    except Exception as exc:
        log.warning("cannot read where Serve runs its proxies (%s): not checked", exc)
        return
    location = str(getattr(running, "value", running))
    if running is None or location == wanted:
        return
    if wanted == "Disabled":
        raise ConfigError(
            f"Ray Serve already runs on this cluster with its own HTTP proxies ({location}), "
            "which would compete with the front door for its port: deploy with --ingress ray, "
            "or shut Serve down first (`serve shutdown`; it removes every application)"
        )
    raise ConfigError(
        "Ray Serve already runs on this cluster without its HTTP proxy (deployed with "
        "--ingress shipyard), so Ray's ingress would serve nothing: deploy with --ingress "
        "shipyard, or shut Serve down first (`serve shutdown`; it removes every application)"
    )


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
    own = settings.ingress == "shipyard"
    models = {name: (app_name(name), name) for name in configs}
    _remove_app(serve, ROOT_APP if own else FRONT_APP)  # the other ingress's, if deployed
    if own:  # first the front door: replicas announce themselves to it as they start
        _deploy_front(serve, settings, configs, models)
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
            listen_host=settings.host if own else None,
        )
        options = deployment_options(config.scale, own, settings.drain_timeout_s)
        options["user_config"] = {"generation": _generation(store.root, name)}
        log.info("deploying %s (%s)", name, config.scale)
        _deploy(serve, ModelReplica, name, options, (spec,), app_name(name), f"/v2/models/{name}")
    if not own:
        options = {"num_replicas": 1, "ray_actor_options": {"num_cpus": 0}}
        _deploy(serve, RootIngress, "root", options, (models, 10.0, settings.auth), ROOT_APP, "/")
    return names


def _deploy_front(
    serve: Any,
    settings: ClusterSettings,
    configs: dict[str, ModelConfig],
    models: dict[str, tuple[str, str]],
) -> None:
    """Deploy the front door (HAProxy and the root routes) on the head node."""
    backends = tuple(
        # Room for every replica autoscaling may start, plus those replacing others.
        Backend(name, index, 2 * config.scale.max_replicas + 2, config.scale.max_ongoing_requests)
        for index, (name, config) in enumerate(configs.items())
    )
    cert, key = (settings.tls_cert, settings.tls_key) if settings.tls else (None, None)
    spec = FrontSpec(
        settings.host,
        settings.http_port,
        backends,
        models,
        settings.auth,
        None if cert is None else str(cert.absolute()),
        None if key is None else str(key.absolute()),
        None if settings.tls_client_ca is None else str(settings.tls_client_ca.absolute()),
    )
    options = {
        "num_replicas": 1,
        "ray_actor_options": {"num_cpus": 0, "resources": {_HEAD_NODE: 0.001}},
        "health_check_period_s": 2.0,
        # Every replica's heartbeat is a call: never make them queue behind Ray's default of 5.
        "max_ongoing_requests": 1000,
        # A new front door starts before the old one stops, and takes HAProxy over from it.
        "max_surge_percent": 100,
        "graceful_shutdown_timeout_s": settings.drain_timeout_s + _RAY_SHUTDOWN_STEPS_S,
        "logging_config": {"enable_access_log": False},
    }
    _deploy(serve, Front, "front", options, (spec,), FRONT_APP, None)


def _deploy(
    serve: Any,
    cls: type,
    name: str,
    options: dict[str, Any],
    args: tuple[Any, ...],
    app: str,
    route_prefix: str | None,
) -> None:
    """Run ``app`` (deployment ``name`` of ``cls(*args)`` with ``options``) unless the cluster
    runs it already with the same arguments and options.

    Ray 2.60 gives every ``serve.run`` a new code version, which replaces every replica even
    when nothing changed; the digest in the deployment's ``user_config`` (answered by the
    replicas' ``deployed_digest``) lets a deploy that changes nothing leave them serving.
    """
    described = repr((cls.__qualname__, args, options))
    digest = hashlib.sha256(described.encode()).hexdigest()[:16]
    if " at 0x" in described:  # an object without a stable repr: never equal, so deploy
        log.warning("%s cannot be compared with what runs: deploying it", app)
    elif _running_digest(serve, app, name) == digest:
        log.info("%s is deployed unchanged: left running", app)
        return
    options = {**options, "user_config": {**options.get("user_config", {}), "digest": digest}}
    deployment = serve.deployment(serve.ingress()(cls)).options(name=name, **options)
    _run(serve, deployment.bind(*args), app, route_prefix)


def _running_digest(serve: Any, app: str, name: str) -> str | None:
    """The digest the running deployment ``name`` of ``app`` was deployed with, or None."""
    try:
        status = serve.status().applications.get(app)
        if status is None or str(getattr(status.status, "value", status.status)) != "RUNNING":
            return None
        handle = serve.get_deployment_handle(name, app)
        digest = handle.deployed_digest.remote().result(timeout_s=30)
    except Exception as exc:  # an older deployment, or one that does not answer: redeploy
        log.info("cannot read the digest of %s (%s): deploying", app, exc)
        return None
    return digest if isinstance(digest, str) else None


def _remove_app(serve: Any, app: str) -> None:
    """Delete ``app`` if the cluster runs it (switching ``--ingress`` on a running cluster)."""
    if app in serve.status().applications:
        log.info("removing %s (the other ingress)", app)
        serve.delete(app)


def _run(serve: Any, bound: Any, app: str, route_prefix: str | None) -> None:
    """``serve.run``, whose failure names the replicas' own error (Ray's says only "failed
    to update the deployments")."""
    try:
        serve.run(bound, name=app, route_prefix=route_prefix)
    except RuntimeError as exc:
        raise RuntimeError(f"{exc} {_failure_reason(serve, app)}".strip()) from exc


#: The last line of a Python traceback: the exception and its message.
_RAISED = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception): ")


def _failure_reason(serve: Any, app: str) -> str:
    """The error a deployment of ``app`` failed with, from Serve's status ("" if none)."""
    try:
        deployments = serve.status().applications[app].deployments.values()
    except Exception:  # the status itself is unavailable: Ray's message has to do
        return ""
    for deployment in deployments:
        lines = str(deployment.message).splitlines()
        raised = [i for i, line in enumerate(lines) if _RAISED.match(line)]
        if raised:
            return "\n".join(lines[raised[-1] :]).strip()
    return ""


def remove_repository(names: list[str]) -> None:
    """Delete the applications of ``names``, the root application and the front door."""
    from ray import serve

    for app in [*map(app_name, names), ROOT_APP, FRONT_APP]:
        try:
            serve.delete(app)
        except Exception as exc:  # the cluster may be gone already: say so, do not fail
            log.warning("could not delete %s: %s", app, exc)


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
