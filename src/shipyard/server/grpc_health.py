"""``grpc.health.v1.Health`` on the gRPC port, so that Kubernetes gRPC probes work.

``Check`` with service ``""`` answers for the server (SERVING once it is ready, NOT_SERVING
while it starts or drains); with a model's name, for that model (SERVING when a version of it
can serve). An unknown model is NOT_FOUND, as the health checking protocol says. ``Watch`` (a
server stream) is not offered: it answers UNIMPLEMENTED, which gRPC clients take as "health
checking not supported".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shipyard.protocol import health_pb2
from shipyard.server.service import InferenceService

__all__ = ["HEALTH_PATH", "HealthServicer"]

HEALTH_PATH = "/grpc.health.v1.Health/"

_Handler = Callable[[Any, float | None], Any]


class HealthServicer:
    """The ``Check`` RPC over the service's readiness."""

    def __init__(self, service: InferenceService) -> None:
        self.service = service

    def methods(self) -> dict[str, tuple[Callable[[bytes], Any], _Handler]]:
        """``/grpc.health.v1.Health/Check`` → (request parser, handler)."""
        return {HEALTH_PATH + "Check": (health_pb2.HealthCheckRequest.FromString, self.Check)}

    async def Check(  # noqa: N802
        self, request: health_pb2.HealthCheckRequest, remaining_s: float | None
    ) -> health_pb2.HealthCheckResponse:
        """SERVING or NOT_SERVING for the server (service "") or a model (NotFoundError)."""
        if request.service:
            serving = self.service.model_ready(request.service)
        else:
            serving = await self.service.server_ready()
        status = health_pb2.HealthCheckResponse.SERVING
        if not serving:
            status = health_pb2.HealthCheckResponse.NOT_SERVING
        return health_pb2.HealthCheckResponse(status=status)
