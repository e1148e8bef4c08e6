"""Who may load, unload and reload models from the dashboard: decided here and nowhere else.

Until the server has API keys, the dashboard offers repository control only to clients on the
server's own machine (a loopback address). When keys exist, :func:`control_access` becomes
"the request carries a key with the ``admin`` role"; the pages ask ``GET /ui/api/session``
and show the controls only when it answers ``{"can_control": true}``.

This decides what the pages *offer*. The repository routes themselves
(``POST /v2/repository/models/{name}/load|unload``) are guarded by the transport, not here.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

__all__ = ["ControlAccess", "control_access", "is_loopback"]


@dataclass(frozen=True, slots=True)
class ControlAccess:
    """Whether this client is offered model control, and why (shown on the pages)."""

    can_control: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """The ``GET /ui/api/session`` answer."""
        return {"can_control": self.can_control, "reason": self.reason}


def is_loopback(host: str | None) -> bool:
    """Whether ``host`` is a loopback address (127.0.0.0/8, ::1, or IPv4-mapped 127.x)."""
    if not host:
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def control_access(request: Request) -> ControlAccess:
    """Decide whether the client of ``request`` is offered load, unload and reload."""
    host = request.client.host if request.client is not None else None
    if is_loopback(host):
        return ControlAccess(True, "this client is on the server's machine (loopback address)")
    return ControlAccess(
        False,
        "model control is offered only to clients on the server's machine (127.0.0.1, ::1) "
        "until the server has API keys",
    )
