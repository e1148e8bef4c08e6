"""What runs inside a Ray Serve replica: Shipyard's own service, nothing copied.

:class:`ModelReplica` serves one model. It syncs the repository (a folder every node can read,
or a store URL cached on each node), loads the model with :class:`ModelRegistry` (its dynamic
batcher batches inside the replica) and answers the V2 REST routes under
``/v2/models/<name>`` with the same Starlette app as ``shipyard serve``. :class:`RootIngress`
answers the server-level routes (health, server metadata, repository index) by asking every
model's deployment. Neither imports Ray: :mod:`~shipyard.cluster.deploy` wraps them.

With API keys, both check every request with :class:`~shipyard.server.auth.HttpAuth`, as
``shipyard serve`` does: the policy travels in :class:`ReplicaSpec` and holds only the keys'
SHA-256 digests, so no key crosses the cluster in clear.

With ``--ingress shipyard`` (``ReplicaSpec.listen_host`` set) Ray's HTTP path is bypassed: the
replica serves the same app with ``shipyard serve``'s own HTTP server on a port of its node and
announces that address to the front door (:mod:`~shipyard.cluster.front`) every second; it
reports the requests it serves to Ray's autoscaler itself
(:data:`~shipyard.cluster.autoscale.ONGOING_METRIC`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import json
import logging
import re
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from shipyard import __version__
from shipyard.cluster.autoscale import ONGOING_METRIC
from shipyard.cluster.listener import Listener, is_address, start_listener
from shipyard.config import ServerConfig
from shipyard.metrics import build_metrics_registry
from shipyard.protocol.rest import encode_repository_index, encode_statistics
from shipyard.repository.registry import ModelRegistry
from shipyard.repository.stores import open_repository
from shipyard.server.admission import Admission
from shipyard.server.auth import AuthPolicy, HttpAuth
from shipyard.server.decoding import DecodePool
from shipyard.server.http import HTTP_STATUS, HttpLimits, create_http_app
from shipyard.server.observe import Observer
from shipyard.server.service import EXTENSIONS, InferenceService
from shipyard.types import JSONObject

__all__ = [
    "CLUSTER_EXTENSIONS",
    "FRONT_APP",
    "ModelReplica",
    "ReplicaSpec",
    "RootIngress",
    "control_refusal",
    "full_path",
    "no_repository_control",
]

log = logging.getLogger(__name__)

#: The Serve application of the front door (``--ingress shipyard``); its deployment is "front".
#: No model's application can have this name (theirs are ``shipyard:<model>``).
FRONT_APP = "shipyard-front"
#: Seconds between a replica's announcements of its address to the front door.
ANNOUNCE_EVERY_S = 1.0
#: ``listen_host`` values that mean every interface (the replica announces its node's address).
EVERY_INTERFACE = ("0.0.0.0", "::")

#: Through Ray, repository load/unload are not offered (a rollout replaces replicas instead).
CLUSTER_EXTENSIONS = tuple(e for e in EXTENSIONS if e != "model_repository")

_Scope = MutableMapping[str, Any]
_ASGI = Callable[[_Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Any]


@dataclass(frozen=True, slots=True)
class ReplicaSpec:
    """What a replica needs to start: where the repository is, which model, the limits, who
    may call it."""

    #: A folder every node can read, or a store URL (each node caches it in ``cache_dir``).
    repository: str
    model: str
    cache_dir: str | None = None
    max_request_bytes: int = 64 * 1024 * 1024
    max_tensor_elements: int = 64 * 1024 * 1024
    drain_timeout_s: float = 30.0
    #: API keys (digests only) checked on every request; None: no key file, every call open.
    auth: AuthPolicy | None = None
    #: ``--ingress shipyard``: serve on this host (a free port) and announce it to the front
    #: door; None: Ray's ingress (its proxy or HAProxy) is the only way in.
    listen_host: str | None = None


def full_path(app: _ASGI) -> _ASGI:
    """Wrap ``app`` so it routes on the full request path, whatever route prefix Ray mounted
    it at (Shipyard's routes are absolute: ``/v2/models/{name}/infer``)."""

    async def wrapped(scope: _Scope, receive: Any, send: Any) -> None:
        if scope.get("type") in ("http", "websocket") and scope.get("root_path"):
            root = scope["root_path"]
            path = scope["path"] if scope["path"].startswith(root) else root + scope["path"]
            scope = {**scope, "root_path": "", "path": path}
        await app(scope, receive, send)

    return wrapped


def control_refusal(name: str, action: str) -> JSONObject:
    """The answer to repository load/unload through Ray (501): what to do instead."""
    return {
        "error": f"repository {action} of {name!r} is not available through Ray Serve: run "
        "`shipyard ray serve` again to roll out new versions (each replica reloads), or change "
        "[scale] in model.toml"
    }


_CONTROL_PATH = re.compile(r"/v2/repository/models/([^/]+)/(load|unload)")


def no_repository_control(app: _ASGI) -> _ASGI:
    """Wrap a replica's app so that repository load/unload answer 501 as the cluster URL does:
    a replica's model changes only by a rollout, never by a call that one replica would obey and
    the others not. (Ray 2.60's routing sends a replica only its model's paths, so this is for
    whatever path a later Ray would let through.)"""

    async def wrapped(scope: _Scope, receive: Any, send: Any) -> None:
        match = _CONTROL_PATH.fullmatch(scope.get("path", "")) if scope["type"] == "http" else None
        if match is None:
            await app(scope, receive, send)
            return
        body = json.dumps(control_refusal(match.group(1), match.group(2))).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 501, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return wrapped


class ModelReplica:
    """One replica of one model: Shipyard's registry, service, batcher and V2 HTTP app."""

    def __init__(self, spec: ReplicaSpec) -> None:
        self.spec = spec
        self.registry: ModelRegistry | None = None
        self.service: InferenceService | None = None
        self._generation: object = None
        self._decoder: DecodePool | None = None
        self._listener: Listener | None = None
        self._announcer: asyncio.Task[None] | None = None
        self._replica_id = ""
        self._digest: object = None

    async def __serve_build_asgi_app__(self) -> _ASGI:
        """Sync the repository, load the model and return the replica's ASGI app.

        Ray calls this once, when the replica starts; a model that cannot load fails the
        replica (and the deployment, with the reason).
        """
        spec = self.spec
        store = await asyncio.to_thread(
            open_repository,
            spec.repository,
            Path(spec.cache_dir) if spec.cache_dir else None,
            (spec.model,),
        )
        registry = self.registry = ModelRegistry(store.root, spec.drain_timeout_s, store=store)
        service = self.service = InferenceService(registry, spec.max_tensor_elements)
        await registry.load(spec.model)
        metrics = build_metrics_registry(
            lambda: [(v.stats, v.batcher.queued) for v in registry.served()],
            registry.metrics,
            lambda: [(e.name, e.state.value) for e in registry.index()],
        )
        defaults = ServerConfig()  # the server's limits, as `shipyard serve` has them
        admission = Admission(
            max(defaults.max_inflight_bytes, spec.max_request_bytes), 0, registry.metrics
        )
        self._decoder = DecodePool(defaults.decode_workers, defaults.decode_inline_bytes)
        limits = HttpLimits(spec.max_request_bytes, admission, self._decoder)
        app = full_path(
            no_repository_control(
                create_http_app(
                    service, limits, metrics, Observer(registry.metrics), auth=spec.auth
                )
            )
        )
        # What is loaded by now (Ray's worker, the model) lives as long as the replica: keep it
        # out of the cyclic GC's scans, as `shipyard serve` does (cli/serve.py).
        gc.freeze()
        if spec.listen_host is not None:
            drain = ServerConfig(drain_timeout_s=spec.drain_timeout_s)
            self._listener = await start_listener(app, spec.listen_host, config=drain)
            self._announcer = asyncio.get_running_loop().create_task(
                self._announce(spec.listen_host, self._listener)
            )
        return app

    async def _announce(self, host: str, listener: Listener) -> None:
        """Tell the front door where this replica serves, every ANNOUNCE_EVERY_S, for as long as
        it runs (the front door forgets a replica that falls silent). Nothing stops it but
        cancellation: every failure (the front door not deployed yet, or restarting) is retried."""
        import ray
        from ray import serve

        failed = False
        while True:
            try:
                if host in EVERY_INTERFACE:
                    host = ray.util.get_node_ip_address()  # type: ignore[no-untyped-call]
                elif not is_address(host):  # HAProxy takes addresses: the one bound, not a name
                    host = listener.host
                self._replica_id = str(serve.get_replica_context().replica_id)
                front = serve.get_deployment_handle("front", FRONT_APP, _check_exists=False)
                await front.announce.remote(self.spec.model, self._replica_id, host, listener.port)
                failed = False
            except Exception as exc:
                if not failed:
                    log.warning(
                        "cannot announce %s:%d to the front door: %s", host, listener.port, exc
                    )
                failed = True
            await asyncio.sleep(ANNOUNCE_EVERY_S)

    async def record_autoscaling_stats(self) -> dict[str, float]:
        """Ray's autoscaler reads this (``--ingress shipyard``: Ray sees none of the requests)."""
        if self.registry is None:
            return {ONGOING_METRIC: 0.0}
        return {ONGOING_METRIC: float(sum(m.inflight for m in self.registry.metrics.versions()))}

    async def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Reload the model when the deployment's ``generation`` changes (a rollout)."""
        self._digest = user_config.get("digest")
        generation = user_config.get("generation")
        first = self._generation is None  # the model was just loaded with these files
        if self.registry is not None and not first and generation != self._generation:
            await self.registry.load(self.spec.model)
        self._generation = generation

    def check_health(self) -> None:
        """Raise when the model is not serving (or, with ``--ingress shipyard``, its HTTP server
        has stopped), so Ray replaces this replica."""
        if self.service is not None and not self.service.ready():
            raise RuntimeError(f"model {self.spec.model!r} is not ready")
        if self._listener is not None and self._listener.task.done():
            raise RuntimeError(f"the HTTP server of model {self.spec.model!r} has stopped")
        if self._announcer is not None and self._announcer.done():
            raise RuntimeError(f"model {self.spec.model!r} stopped announcing to the front door")

    def deployed_digest(self) -> object:
        """The digest of the arguments and options this replica was deployed with."""
        return self._digest

    def ready(self) -> bool:
        """Whether this replica's model is ready (for the cluster's readiness route)."""
        return self.service is not None and self.service.ready()

    def index(self) -> list[JSONObject]:
        """This replica's repository index rows (its one model), as REST JSON."""
        rows = [] if self.service is None else self.service.repository_index()
        return encode_repository_index([row for row in rows if row.name == self.spec.model])

    def statistics(self) -> JSONObject:
        """This replica's statistics as REST JSON (the replica that answers; not summed over
        replicas)."""
        return encode_statistics([] if self.service is None else self.service.statistics())

    async def __del__(self) -> None:
        """Release the model (drain in-flight requests) when Ray stops the replica."""
        if self._announcer is not None:
            self._announcer.cancel()
            with contextlib.suppress(Exception):  # the front door may be gone already
                from ray import serve

                front = serve.get_deployment_handle("front", FRONT_APP, _check_exists=False)
                await asyncio.wait_for(front.withdraw.remote(self._replica_id), 5.0)
        if self._listener is not None:
            await self._listener.stop()  # no new requests; in-flight ones finish
        if self.service is not None and self.registry is not None:
            self.service.start_draining()
            await self.registry.close()
        if self._decoder is not None:
            self._decoder.close()
        parent = getattr(super(), "__del__", None)  # Ray's ASGI wrapper: the app's lifespan
        if parent is not None:
            result = parent()
            if inspect.isawaitable(result):
                await result


class RootIngress:
    """The server-level V2 routes of the cluster: health, metadata, repository index."""

    def __init__(
        self,
        models: dict[str, tuple[str, str]],
        timeout_s: float = 10.0,
        auth: AuthPolicy | None = None,
    ) -> None:
        #: ``{model: (Ray application, deployment)}``
        self.models = models
        self.timeout_s = timeout_s
        #: API keys checked on every request but health; None: every call open (the loopback
        #: rule of ``shipyard serve`` does not apply: behind HAProxy every peer is loopback).
        self.auth = auth
        self._digest: object = None

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Keep the digest of what this deployment was deployed with."""
        self._digest = user_config.get("digest")

    def deployed_digest(self) -> object:
        """The digest of the arguments and options this replica was deployed with."""
        return self._digest

    def __serve_build_asgi_app__(self) -> _ASGI:
        """Return the root ASGI app (Ray calls this once the replica is constructed)."""
        app = Starlette(
            routes=[
                Route("/v2/health/live", self._live, methods=["GET"]),
                Route("/v2/health/ready", self._ready, methods=["GET"]),
                Route("/v2", self._metadata, methods=["GET"]),
                Route("/v2/repository/index", self._index, methods=["POST"]),
                Route("/v2/repository/models/{name}/{action}", self._control, methods=["POST"]),
                Route("/v2/models/stats", self._stats, methods=["GET"]),
                Route("/v2/models/{name}{rest:path}", self._unknown, methods=["GET", "POST"]),
            ],
            exception_handlers={404: self._not_found, 405: self._not_found},
        )
        if self.auth is None or self.auth.keys is None:
            return app
        return HttpAuth(app, self.auth, HTTP_STATUS)

    async def _stats(self, request: Request) -> Response:
        try:
            answers = await self._ask("statistics")
        except TimeoutError:
            return JSONResponse({"error": "the model deployments did not answer"}, 503)
        rows = [row for a in answers.values() if isinstance(a, dict) for row in a["model_stats"]]
        return JSONResponse({"model_stats": rows})

    async def _unknown(self, request: Request) -> Response:
        name = request.path_params["name"]
        return JSONResponse({"error": f"unknown model {name!r}"}, 404)

    async def _not_found(self, request: Request, exc: Exception) -> Response:
        return JSONResponse({"error": f"no route {request.method} {request.url.path}"}, 404)

    async def _ask(self, method: str) -> dict[str, Any]:
        from ray import serve

        async def one(app: str, deployment: str) -> Any:
            handle = serve.get_deployment_handle(deployment, app_name=app)
            return await getattr(handle, method).remote()

        names = sorted(self.models)
        calls = [one(*self.models[name]) for name in names]
        results = await asyncio.wait_for(
            asyncio.gather(*calls, return_exceptions=True), self.timeout_s
        )
        return dict(zip(names, results, strict=True))

    async def _live(self, request: Request) -> Response:
        return Response(status_code=200)

    async def _ready(self, request: Request) -> Response:
        try:
            answers = await self._ask("ready")
        except TimeoutError:
            return Response(status_code=503)
        return Response(status_code=200 if all(a is True for a in answers.values()) else 503)

    async def _metadata(self, request: Request) -> Response:
        return JSONResponse(
            {"name": "shipyard", "version": __version__, "extensions": list(CLUSTER_EXTENSIONS)}
        )

    async def _index(self, request: Request) -> Response:
        try:
            answers = await self._ask("index")
        except TimeoutError:
            return JSONResponse({"error": "the model deployments did not answer"}, 503)
        rows: list[dict[str, Any]] = []
        for name, answer in answers.items():
            if isinstance(answer, BaseException):
                rows.append({"name": name, "state": "UNAVAILABLE", "reason": str(answer)})
            else:
                rows.extend(answer)
        return JSONResponse(rows)

    async def _control(self, request: Request) -> Response:
        params = request.path_params
        return JSONResponse(control_refusal(params["name"], params["action"]), 501)
