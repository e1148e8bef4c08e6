"""The web dashboard: static pages under ``/ui/`` and the read-only JSON routes they need.

:func:`routes` returns the Starlette routes that :mod:`shipyard.server.app` hands to the HTTP
transport (``--no-ui`` leaves them out). The pages are committed files in ``static/`` (plain
ES modules, CSS and SVG: no build step, nothing from a CDN) and use the same public routes as
any client (``/v2/...``, ``/metrics``) plus the ``/ui/api/...`` routes of :mod:`.api`. Who may
load and unload models from the pages is decided in one place, :mod:`.access`.
See ``docs/dashboard.md``.
"""

from shipyard.dashboard.access import ControlAccess, control_access
from shipyard.dashboard.routes import routes

__all__ = ["ControlAccess", "control_access", "routes"]
