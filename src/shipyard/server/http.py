"""The HTTP/REST transport: decode the wire, call InferenceService, encode the answer.

Errors become ``{"error": "..."}`` with the status from :data:`HTTP_STATUS`, the one table this
transport has; every 503 carries ``Retry-After``. Unexpected exceptions are logged with their
traceback and answered with a 500 whose body holds no traceback.

Bodies are read by :class:`~shipyard.server.body.BodyReader` (size limits, the server-wide
in-flight budget, client disconnects) and decoded on the event loop only when small: larger
JSON goes to :class:`~shipyard.server.decoding.DecodePool`. The app is wrapped in
:class:`~shipyard.server.observe.ObservedApp` (request IDs, metrics, access log, spans).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from shipyard.context import RequestContext, current_request, open_request
from shipyard.errors import ErrorCode, InvalidInputError, ShipyardError
from shipyard.explain import heatmap_png
from shipyard.metrics import outcome
from shipyard.processing.predict import decode_instances
from shipyard.protocol.rest import (
    decode_infer_request,
    decode_json,
    encode_infer_response,
    encode_json,
    encode_model_config,
    encode_prediction,
    encode_repository_index,
    encode_server_metadata,
    encode_statistics,
    parse_decimal,
)
from shipyard.server.admission import Admission
from shipyard.server.auth import AuthPolicy, HttpAuth
from shipyard.server.body import BodyReader, ClientGone, Held, log_client_gone
from shipyard.server.decoding import DecodePool
from shipyard.server.observe import ObservedApp, Observer
from shipyard.server.service import InferenceService
from shipyard.types import JSONObject, JSONValue

__all__ = ["CONTROL_BODY_BYTES", "HTTP_STATUS", "HttpLimits", "create_http_app"]

log = logging.getLogger(__name__)

#: The transport's one error table.
HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.INVALID_ARGUMENT: 400,
    ErrorCode.PAYLOAD_TOO_LARGE: 413,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.UNAVAILABLE: 503,
    ErrorCode.DEADLINE_EXCEEDED: 504,
    ErrorCode.UNIMPLEMENTED: 501,
    ErrorCode.INTERNAL: 500,
    ErrorCode.UNAUTHENTICATED: 401,
    ErrorCode.PERMISSION_DENIED: 403,
}

HEADER_LENGTH = "inference-header-content-length"
HEADER_LENGTH_NAME = "Inference-Header-Content-Length"
#: Largest body of a repository-control request (index, load, unload): they are tiny, and
#: parsed on the event loop.
CONTROL_BODY_BYTES = 64 * 1024
_JSON = "application/json"
#: An exception handler of this transport (the one table of answers to errors).
_Handler = Callable[[Request, Exception], Awaitable[Response]]


def _json(value: object, status: int = 200) -> Response:
    return Response(encode_json(value), status_code=status, media_type=_JSON)


def _flag(ok: bool, key: str) -> Response:
    return _json({key: ok}, 200 if ok else 503)


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """How the HTTP transport bounds the requests it takes on."""

    #: Largest request body (413 above it).
    max_request_bytes: int
    #: The server-wide limits on request bytes and inference requests in flight.
    admission: Admission
    #: Where JSON too large for the event loop is decoded.
    decoder: DecodePool
    #: Seconds of ``Retry-After`` on a 503.
    retry_after_s: int = 1


class _Endpoints:
    """Route handlers bound to one service (kept apart from wiring for readability)."""

    def __init__(self, service: InferenceService, limits: HttpLimits, metrics: CollectorRegistry):
        self.service = service
        self.admission = limits.admission
        self.reader = BodyReader(limits.max_request_bytes, limits.admission)
        self.control = BodyReader(
            CONTROL_BODY_BYTES, Admission(), "repository-control requests are small"
        )
        self.decoder = limits.decoder
        self.metrics = metrics

    async def json_body(self, request: Request) -> JSONObject:
        body = await self.control.read(request, Held(self.control.admission))
        if not body.strip():
            return {}
        value = decode_json(body)
        if not isinstance(value, dict):
            raise InvalidInputError("request body must be a JSON object")
        return value

    async def live(self, request: Request) -> Response:
        return _flag(self.service.live(), "live")

    async def ready(self, request: Request) -> Response:
        return _flag(await self.service.server_ready(), "ready")

    async def server_metadata(self, request: Request) -> Response:
        return _json(encode_server_metadata(self.service.server_metadata()))

    async def model_metadata(self, request: Request) -> Response:
        name, version = _model(request)
        return _json(self.service.model_metadata(name, version).to_dict())

    async def model_ready(self, request: Request) -> Response:
        name, version = _model(request)
        ready = self.service.model_ready(name, version)
        return Response(
            encode_json({"name": name, "ready": ready}),
            status_code=200 if ready else 503,
            media_type=_JSON,
        )

    async def model_config(self, request: Request) -> Response:
        name, version = _model(request)
        return _json(encode_model_config(self.service.model_config(name, version)))

    async def infer(self, request: Request) -> Response:
        ctx = _context("infer")
        name, version = _model(request)
        header = request.headers.get(HEADER_LENGTH)
        header_length = None
        if header is not None:
            header_length = parse_decimal(header, HEADER_LENGTH_NAME)
        held = Held(self.admission)
        self.admission.acquire_request()
        try:
            body = await self.reader.read(request, held)
            ctx.bytes_in = len(body)
            limit = self.service.max_tensor_elements
            json_size = len(body) if header_length is None else header_length
            if self.decoder.offload(json_size):
                infer_request = await self.decoder.run(
                    decode_infer_request, body, header_length, name, version, limit
                )
            else:
                infer_request = decode_infer_request(body, header_length, name, version, limit)
            ctx.decoded_at = time.perf_counter_ns()
            response = await self.service.infer(infer_request)
            ctx.encode_at = start = time.perf_counter_ns()
            payload, json_length = encode_infer_response(response, infer_request)
            ctx.encode_ns = time.perf_counter_ns() - start
        finally:
            held.release()
            self.admission.release_request()
        ctx.outcome = "success"
        if json_length is None:
            return Response(payload, media_type=_JSON)
        return Response(
            payload,
            media_type="application/octet-stream",
            headers={"Inference-Header-Content-Length": str(json_length)},
        )

    async def predict(self, request: Request) -> Response:
        ctx = _context("predict")
        name, version = _model(request)
        top_k = request.query_params.get("top_k")
        top_k_count = None if top_k is None else parse_decimal(top_k, "top_k")
        held = Held(self.admission)
        self.admission.acquire_request()
        try:
            body = bytes(await self.reader.read(request, held))
            ctx.bytes_in = len(body)
            target = self.service.predict_input(name, version)
            content_type = request.headers.get("content-type", "")
            where = f"model {target.model_name!r}"
            media = content_type.split(";")[0].strip().lower()
            if media == "application/json" and self.decoder.offload(len(body)):
                instances = await self.decoder.run(
                    decode_instances, body, content_type, target.kind, where
                )
            else:
                instances = decode_instances(body, content_type, target.kind, where)
            ctx.decoded_at = time.perf_counter_ns()
            prediction = await self.service.predict(name, version, instances, top_k_count)
        finally:
            held.release()
            self.admission.release_request()
        ctx.encode_at = start = time.perf_counter_ns()
        answer = encode_json(encode_prediction(prediction))
        ctx.encode_ns = time.perf_counter_ns() - start
        ctx.outcome = "success"
        return Response(answer, media_type=_JSON)

    async def explain(self, request: Request) -> Response:
        """Explain one instance: a V2 request (JSON or binary) or a raw image/text body."""
        name, version = _model(request)
        held = Held(self.admission)  # the body counts against max_inflight_bytes until answered
        try:
            body = bytes(await self.reader.read(request, held))
            return await self._explain(request, name, version, body)
        finally:
            held.release()

    async def _explain(
        self, request: Request, name: str, version: str | None, body: bytes
    ) -> Response:
        content_type = request.headers.get("content-type", "")
        header = request.headers.get(HEADER_LENGTH)
        parameters: dict[str, JSONValue] = dict(request.query_params)
        media = content_type.split(";")[0].strip().lower()
        if header is not None or media == _JSON:
            length = None if header is None else parse_decimal(header, HEADER_LENGTH_NAME)
            infer_request = decode_infer_request(
                body,
                length,
                name,
                version,
                self.service.max_tensor_elements,
            )
            infer_request.parameters.update(parameters)
            explanation = await self.service.explain(infer_request)
        else:
            target = self.service.explain_input(name, version)
            where = f"model {target.model_name!r}"
            instances = decode_instances(body, content_type, target.kind, where)
            if media == "text/plain" and target.kind == "text":
                instances = [body]  # the whole body is one text, whatever its lines
            if len(instances) != 1:
                raise InvalidInputError(
                    f"{where}: explain takes one instance, got {len(instances)}"
                )
            explanation = await self.service.explain_instance(
                name, version, instances[0], parameters
            )
        if "image/png" in request.headers.get("accept", ""):
            return Response(heatmap_png(explanation), media_type="image/png")
        return _json(explanation.to_dict())

    async def repository_index(self, request: Request) -> Response:
        body = await self.json_body(request)
        ready = body.get("ready", False)
        if not isinstance(ready, bool):
            raise InvalidInputError("repository index: 'ready' must be true or false")
        return _json(encode_repository_index(self.service.repository_index(ready)))

    async def load(self, request: Request) -> Response:
        body = await self.json_body(request)
        await self.service.load_model(request.path_params["name"], _parameters(body))
        return _json({})

    async def unload(self, request: Request) -> Response:
        body = await self.json_body(request)
        await self.service.unload_model(request.path_params["name"], _parameters(body))
        return _json({})

    async def stats(self, request: Request) -> Response:
        name = request.path_params.get("name")
        version = request.path_params.get("version")
        return _json(encode_statistics(await self.service.server_statistics(name, version)))

    async def prometheus(self, request: Request) -> Response:
        cluster = self.service.cluster  # --workers: the sum over every worker
        text = generate_latest(self.metrics) if cluster is None else await cluster.metrics_text()
        return Response(text, media_type=CONTENT_TYPE_LATEST)


def _model(request: Request) -> tuple[str, str | None]:
    return request.path_params["name"], request.path_params.get("version")


def _parameters(body: JSONObject) -> JSONObject:
    params = body.get("parameters", {})
    if not isinstance(params, dict):
        raise InvalidInputError("'parameters' must be a JSON object")
    return params


def _context(endpoint: str) -> RequestContext:
    """The current request's context (ObservedApp opened it), marked as an inference."""
    ctx = current_request.get() or open_request("http", None)
    ctx.endpoint = endpoint
    return ctx


def _error_handlers(retry_after_s: int) -> dict[type[Exception], _Handler]:
    """The one place exceptions become answers (and their outcome is recorded)."""
    retry_after = {"Retry-After": str(retry_after_s)}

    async def shipyard_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ShipyardError)
        _set_outcome(outcome(exc))
        status = HTTP_STATUS[exc.code]
        headers = retry_after if status == 503 else None
        return Response(
            encode_json({"error": exc.message}), status, headers=headers, media_type=_JSON
        )

    async def client_gone(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ClientGone)
        _set_outcome("cancelled")
        log_client_gone(request, exc)
        return Response(status_code=499)  # nginx's "client closed request": never sent

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        detail = exc.detail
        if exc.status_code == 404:
            detail = f"no route {request.method} {request.url.path}"
        elif exc.status_code == 405:
            detail = f"method {request.method} is not allowed on {request.url.path}"
        return _json({"error": detail}, exc.status_code)

    async def unexpected(request: Request, exc: Exception) -> Response:
        _set_outcome("internal")
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        message = f"internal server error ({type(exc).__name__}); see server log"
        return _json({"error": message}, 500)

    return {
        ShipyardError: shipyard_error,
        ClientGone: client_gone,
        HTTPException: http_error,
        Exception: unexpected,
    }


def _set_outcome(value: str) -> None:
    ctx = current_request.get()
    if ctx is not None:
        ctx.outcome = value


def create_http_app(
    service: InferenceService,
    limits: HttpLimits,
    metrics: CollectorRegistry,
    observer: Observer,
    extra_routes: Sequence[BaseRoute] = (),
    *,
    auth: AuthPolicy | None = None,
) -> ObservedApp:
    """Build the ASGI application serving the V2 REST API (plus ``/metrics``).

    Inference requests take a shorter path than the other routes (:class:`_InferFastPath`).

    ``extra_routes`` (the dashboard's) come last and share the error table. ``auth``, when
    given, checks every request before its route runs (:class:`HttpAuth`).
    """
    e = _Endpoints(service, limits, metrics)
    model = "/v2/models/{name}"
    version = "/v2/models/{name}/versions/{version}"
    # Starlette tries routes in order: the hot path first (no other route matches its paths).
    routes = [Route(f"{prefix}/infer", e.infer, methods=["POST"]) for prefix in (model, version)]
    routes += [Route(f"{p}/predict", e.predict, methods=["POST"]) for p in (model, version)]
    routes += [Route(f"{p}/explain", e.explain, methods=["POST"]) for p in (model, version)]
    routes += [
        Route("/v2/health/live", e.live, methods=["GET"]),
        Route("/v2/health/ready", e.ready, methods=["GET"]),
        Route("/v2", e.server_metadata, methods=["GET"]),
        Route("/v2/models/stats", e.stats, methods=["GET"]),
        Route("/v2/repository/index", e.repository_index, methods=["POST"]),
        Route("/v2/repository/models/{name}/load", e.load, methods=["POST"]),
        Route("/v2/repository/models/{name}/unload", e.unload, methods=["POST"]),
        Route("/metrics", e.prometheus, methods=["GET"]),
    ]
    for prefix in (model, version):
        routes += [
            Route(prefix, e.model_metadata, methods=["GET"]),
            Route(f"{prefix}/ready", e.model_ready, methods=["GET"]),
            Route(f"{prefix}/config", e.model_config, methods=["GET"]),
            Route(f"{prefix}/stats", e.stats, methods=["GET"]),
        ]
    handlers = _error_handlers(limits.retry_after_s)
    app: ASGIApp = Starlette(routes=[*routes, *extra_routes], exception_handlers=handlers)
    app = _InferFastPath(app, e.infer, handlers)
    if auth is not None:  # who may call what: checked before anything reads the request
        app = HttpAuth(app, policy=auth, statuses=HTTP_STATUS)
    return ObservedApp(app, observer, limits.retry_after_s)


#: The inference route's paths, ``{name}`` and ``{version}`` as Starlette's routes match them.
_INFER_PATH = re.compile(r"/v2/models/([^/]+)(?:/versions/([^/]+))?/infer")


class _InferFastPath:
    """ASGI: serve ``POST .../infer`` without Starlette's middleware stack and router.

    The same endpoint and the same error handlers as the routed app, so the answers are the
    same; per request it skips four ASGI layers, the route scan and their ``send`` wrappers
    (about a fifth of the event loop's time per request: benchmarks/RESULTS.md). Every other
    request goes to the Starlette app.
    """

    def __init__(
        self,
        app: ASGIApp,
        infer: Callable[[Request], Awaitable[Response]],
        handlers: Mapping[type[Exception], _Handler],
    ) -> None:
        self.app = app
        self.infer = infer
        self.handlers = handlers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve an inference request here, anything else through the wrapped app."""
        if scope["type"] == "http" and scope["method"] == "POST":
            match = _INFER_PATH.fullmatch(scope["path"])
            if match is not None:
                name, version = match.groups()
                scope["path_params"] = (
                    {"name": name} if version is None else {"name": name, "version": version}
                )
                request = Request(scope, receive)
                try:
                    response = await self.infer(request)
                except Exception as exc:  # answered as the routed app would
                    response = await self._handle(request, exc)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _handle(self, request: Request, exc: Exception) -> Response:
        for kind in type(exc).__mro__:
            handler = self.handlers.get(kind)
            if handler is not None:
                return await handler(request, exc)
        raise exc
