"""Deploy a model repository onto a Ray cluster with Ray Serve.

Each model becomes its own Serve application, routed at ``/v2/models/<name>``, whose replicas run
:class:`~shipyard.cluster.replica.ModelReplica`; the application ``shipyard:root`` at ``/``
answers the server-level routes. Ray's ingress forwards a request straight to a replica of the
model it names, so the only hop is Ray's own proxy (or HAProxy, see docs/ray.md). Replica counts
and autoscaling come from ``[scale]`` in each model.toml.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
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

__all__ = [
    "ROOT_APP",
    "ClusterSettings",
    "app_name",
    "connect",
    "deploy_repository",
    "deployment_options",
    "remove_repository",
    "wait_then_remove",
]

log = logging.getLogger(__name__)

#: The Serve application answering health, server metadata and the repository index.
ROOT_APP = "shipyard:root"
_HINT = "pip install 'shipyard[ray]'"


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


def app_name(model: str) -> str:
    """The Serve application of ``model`` (``:`` keeps it apart from any model name)."""
    return f"shipyard:{model}"


#: The environment of every replica process: Ray Serve's throughput mode runs the application
#: on the replica's own event loop (not a second thread's) and keeps Serve's logs off stderr.
#: Measured in benchmarks/RESULTS.md ("Ray Serve"): it is the larger part of the gain there.
REPLICA_ENV = {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}


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
    serve.start(
        proxy_location="HeadOnly",
        http_options={"host": settings.host, "port": settings.http_port},
    )
    return serve


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
    serve.run(root.bind(models), name=ROOT_APP, route_prefix="/")
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
