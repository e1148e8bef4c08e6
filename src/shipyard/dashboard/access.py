"""What the dashboard offers a client: decided here, from the server's own key rules.

The server's auth policy (:class:`shipyard.server.auth.AuthPolicy`, seen here through the
:class:`Policy` protocol so that this package does not import the server) decides, exactly as
it does for the routes themselves. Without a key file, clients on the server's own machine (a
loopback address) are offered load, unload and reload. With ``--api-keys``, the pages ask for a
key, and what they show follows the key's roles. The pages ask ``GET /ui/api/session``, which
is open to everyone: it says whether the server needs keys, names the key the request carried
(never the key itself) and says which kinds of call that key may make.

This decides what the pages *offer*. Every route the pages call is guarded by the transport's
``HttpAuth``, not here: with keys, the Models page shows the controls to every valid key, and
a key without ``admin`` gets the server's 403.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from starlette.requests import Request

__all__ = ["ControlAccess", "Policy", "PolicyAnswer", "control_access"]

#: The kind of call (a ``shipyard.server.auth.Access`` value) that load, unload and reload need.
CONTROL = "control"


class PolicyAnswer(Protocol):
    """What one client may do: :class:`shipyard.server.auth.ClientAccess`."""

    @property
    def keys(self) -> bool: ...
    @property
    def key_name(self) -> str | None: ...
    @property
    def key_roles(self) -> tuple[str, ...]: ...
    @property
    def key_error(self) -> str | None: ...
    @property
    def allows(self) -> Mapping[str, bool]: ...


class Policy(Protocol):
    """The server's auth policy: :class:`shipyard.server.auth.AuthPolicy`."""

    def client_access(self, authorization: str | None, host: str | None) -> PolicyAnswer:
        """Say what a client at ``host`` sending ``authorization`` may do."""
        ...


@dataclass(frozen=True, slots=True)
class ControlAccess:
    """What this client is offered, and why (shown on the pages)."""

    #: Whether the server would let this client load, unload and reload models.
    can_control: bool
    reason: str
    #: Whether the server needs API keys (it was started with ``--api-keys``).
    keys: bool = False
    #: The name and roles of the key the request carried, when the server knows it.
    key_name: str | None = None
    key_roles: tuple[str, ...] = ()
    #: Why the key the request carried was refused (None: no key sent, or it is valid).
    key_error: str | None = None
    #: Whether the server would let this client make each kind of call (``Access`` value).
    allows: Mapping[str, bool] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The ``GET /ui/api/session`` answer: the key's name and roles, never the key."""
        key = None
        if self.key_name is not None:
            key = {"name": self.key_name, "roles": list(self.key_roles)}
        return {
            "can_control": self.can_control,
            "reason": self.reason,
            "keys": self.keys,
            "key": key,
            "key_error": self.key_error,
            "allows": dict(self.allows),
        }


def control_access(request: Request, policy: Policy) -> ControlAccess:
    """Decide what the client of ``request`` is offered, under the server's ``policy``."""
    host = request.client.host if request.client is not None else None
    authorization = request.headers.get("authorization")
    answer = policy.client_access(authorization, host)
    allows = dict(answer.allows)
    can_control = allows.get(CONTROL, False)
    if not answer.keys:
        if can_control:
            reason = "this client is on the server's machine (loopback address)"
        else:
            reason = (
                "model control is offered only to clients on the server's machine "
                "(127.0.0.1, ::1): this server has no API keys"
            )
        return ControlAccess(can_control, reason, allows=allows)
    if answer.key_error is not None:
        error = answer.key_error
        return ControlAccess(False, error, keys=True, key_error=error, allows=allows)
    if answer.key_name is None:
        reason = "this server needs an API key: enter one in the API key form"
        return ControlAccess(False, reason, keys=True, allows=allows)
    who = f"signed in as {answer.key_name} ({', '.join(answer.key_roles)})"
    if not can_control:
        who += (
            "; load, unload and reload need a key with the admin role, so the server refuses "
            "them for this key"
        )
    return ControlAccess(
        can_control,
        who,
        keys=True,
        key_name=answer.key_name,
        key_roles=answer.key_roles,
        allows=allows,
    )
