"""The dashboard's routes: ``/`` and ``/ui`` redirect to ``/ui/``, the pages, and ``/ui/api``."""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from shipyard.config import ServerConfig
from shipyard.dashboard.access import Policy
from shipyard.dashboard.api import DashboardApi
from shipyard.dashboard.assets import Assets, load_assets
from shipyard.dashboard.catalog import Service

__all__ = ["PAGES", "UI_PATH", "routes"]

#: Where the dashboard lives.
UI_PATH = "/ui/"
#: The pages, each at ``/ui/<page>`` (``/ui/`` shows the first); all are ``index.html``, whose
#: script mounts the page the path names.
PAGES = ("models", "live", "playground", "server")


def routes(
    service: Service, config: ServerConfig, policy: Policy, assets: Assets | None = None
) -> list[BaseRoute]:
    """The dashboard's routes for ``service``; reads the static files (``assets``: given ones).

    ``policy`` is the server's auth policy (:class:`~.access.Policy`): it decides what the
    pages offer.
    """
    api = DashboardApi(service, config, policy, time.time())
    files = assets if assets is not None else load_assets()

    async def to_ui(request: Request) -> Response:
        return RedirectResponse(UI_PATH, status_code=307)

    async def index(request: Request) -> Response:
        return files.get("index.html").response(request)

    async def asset(request: Request) -> Response:
        path = request.path_params["path"]
        return files.get("index.html" if path in PAGES else path).response(request)

    return [
        Route("/", to_ui, methods=["GET"]),
        Route("/ui", to_ui, methods=["GET"]),
        Route(UI_PATH, index, methods=["GET"]),
        Route("/ui/api/session", api.session, methods=["GET"]),
        Route("/ui/api/models", api.models, methods=["GET"]),
        Route("/ui/api/models/{name}/versions/{version}/report", api.report, methods=["GET"]),
        Route("/ui/api/models/{name}/tune-report", api.tune_report, methods=["GET"]),
        Route("/ui/api/server", api.server, methods=["GET"]),
        Route("/ui/{path:path}", asset, methods=["GET"]),
    ]
