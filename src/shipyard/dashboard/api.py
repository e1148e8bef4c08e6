"""The dashboard's read-only JSON routes (``/ui/api/...``), documented in docs/protocol.md.

* ``GET /ui/api/session``: whether the server needs keys, the key sent (its name and roles)
  and what this client is offered (:mod:`.access`); open to everyone.
* ``GET /ui/api/models``: every model with state, versions, signature, processing, batching.
* ``GET /ui/api/models/{name}/versions/{version}/report``: that version's ``report.json``.
* ``GET /ui/api/models/{name}/tune-report``: ``shipyard tune``'s HTML report of the model.
* ``GET /ui/api/server``: version, uptime, settings in force (no secrets), hardware.

Everything else the pages show comes from the public routes (``/v2/...``, ``/metrics``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from shipyard.config import ServerConfig
from shipyard.dashboard.access import Policy, control_access
from shipyard.dashboard.catalog import (
    Service,
    model_rows,
    read_version_report,
    tune_report_path,
)
from shipyard.dashboard.server_info import HardwareCache, server_info
from shipyard.protocol.rest import encode_json

__all__ = ["TUNE_REPORT_POLICY", "DashboardApi"]

#: The tuning report is self-contained (inline style and SVG, no script): nothing else may run.
TUNE_REPORT_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox"


def _json(value: Any) -> Response:
    return Response(
        encode_json(value),
        media_type="application/json",
        headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"},
    )


class DashboardApi:
    """The ``/ui/api`` handlers of one server."""

    def __init__(
        self, service: Service, config: ServerConfig, policy: Policy, started: float
    ) -> None:
        self.service = service
        self.config = config
        #: The server's API keys and rules, which decide what the pages offer.
        self.policy = policy
        #: Unix time the server started (for the uptime).
        self.started = started
        self.hardware = HardwareCache()

    async def session(self, request: Request) -> Response:
        """What this client is offered: see :meth:`.access.ControlAccess.to_dict`."""
        return _json(control_access(request, self.policy).to_dict())

    async def models(self, request: Request) -> Response:
        """``{"models": [...]}``: see :func:`~shipyard.dashboard.catalog.model_rows`."""
        return _json({"models": await model_rows(self.service)})

    async def report(self, request: Request) -> Response:
        """A version's ``report.json`` as stored (400 bad name, 404 absent)."""
        name, version = request.path_params["name"], request.path_params["version"]
        root = self.service.registry.root
        return _json(await asyncio.to_thread(read_version_report, root, name, version))

    async def tune_report(self, request: Request) -> Response:
        """The model's ``tune-report.html``, sandboxed (400 bad name, 404 absent)."""
        path = tune_report_path(self.service.registry.root, request.path_params["name"])
        body = await asyncio.to_thread(path.read_bytes)
        return Response(
            body,
            media_type="text/html; charset=utf-8",
            headers={
                "Content-Security-Policy": TUNE_REPORT_POLICY,
                "Cache-Control": "no-cache",
                "X-Content-Type-Options": "nosniff",
            },
        )

    async def server(self, request: Request) -> Response:
        """Version, uptime, settings in force and this machine's hardware."""
        extensions = list(self.service.server_metadata().extensions)
        hardware = await self.hardware.get()
        return _json(server_info(self.config, extensions, self.started, hardware))
