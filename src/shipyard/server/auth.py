"""Who may call what: API keys with roles, checked before the service runs, on both transports.

The core is transport-neutral: :class:`AuthPolicy` answers whether a call that needs some
:class:`Access` may go ahead, given the client's ``authorization`` value (``Bearer KEY``) and
whether it came from loopback. Each transport has a thin adapter: :func:`http_access` and
:class:`HttpAuth` (an ASGI middleware) for HTTP, :func:`grpc_access` and :func:`check_grpc_call`
for gRPC.

Keys live in a TOML file (``--api-keys``), one ``[[key]]`` table per client with ``name``,
``sha256`` (the hex SHA-256 of the key: keys are never stored or logged in clear) and
``roles``. A presented key is hashed and compared with every stored digest by
:func:`hmac.compare_digest`, so the time taken says nothing about the keys.

- ``infer``: inference, ``/predict``, model metadata/config/ready, one model's statistics and
  server metadata.
- ``admin``: everything, including repository index/load/unload and server-wide statistics.
- ``metrics``: ``/metrics`` only (a Prometheus scraper's key); it matters with
  ``--metrics-auth``.

Health (HTTP ``/v2/health/*``, gRPC ServerLive/ServerReady, ``grpc.health.v1``) is always
open, and so is ``/metrics`` unless ``metrics_auth``. Without a key file every call is open
except repository control, which answers loopback clients only.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import ipaddress
import json
import secrets
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shipyard.config import ServerConfig
from shipyard.errors import ConfigError, ErrorCode, PermissionDeniedError, UnauthenticatedError

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = [
    "Access",
    "ApiKey",
    "AuthPolicy",
    "ClientAccess",
    "HttpAuth",
    "Role",
    "check_grpc_call",
    "grpc_access",
    "hash_key",
    "http_access",
    "is_loopback",
    "load_keys",
    "new_key",
]


class Role(enum.Enum):
    """What a key may do."""

    INFER = "infer"
    ADMIN = "admin"
    METRICS = "metrics"


class Access(enum.Enum):
    """What a call needs."""

    #: Health: always open.
    OPEN = "open"
    #: ``/metrics``: open unless ``metrics_auth``; then role ``metrics`` or ``admin``.
    METRICS = "metrics"
    #: Inference and what one model's clients read: role ``infer`` or ``admin``.
    INFER = "infer"
    #: Server-wide statistics: role ``admin``.
    ADMIN = "admin"
    #: Repository index, load and unload: role ``admin``; without keys, loopback clients only.
    CONTROL = "control"


#: The roles that grant each access (OPEN needs none).
_GRANTS: dict[Access, frozenset[Role]] = {
    Access.METRICS: frozenset({Role.METRICS, Role.ADMIN}),
    Access.INFER: frozenset({Role.INFER, Role.ADMIN}),
    Access.ADMIN: frozenset({Role.ADMIN}),
    Access.CONTROL: frozenset({Role.ADMIN}),
}

#: Prefix of the keys ``shipyard keys new`` makes (so a leaked one is recognisable).
KEY_PREFIX = "sy_"


@dataclass(frozen=True, slots=True)
class ApiKey:
    """One client's key: its name, the SHA-256 digest of the key, and its roles."""

    name: str
    digest: bytes
    roles: frozenset[Role]


def hash_key(key: str) -> str:
    """The hex SHA-256 of ``key``: what the key file stores."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key() -> str:
    """A new random key: ``sy_`` and 43 URL-safe characters (256 bits)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def load_keys(path: Path) -> tuple[ApiKey, ...]:
    """Read a key file; raise ConfigError naming the file and the entry on any problem."""
    try:
        parsed = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read API keys: {exc}") from exc
    unknown = sorted(set(parsed) - {"key"})
    entries = parsed.get("key", [])
    if unknown or not isinstance(entries, list):
        raise ConfigError(f"{path}: an API key file holds [[key]] tables only")
    keys = [_parse_key(entry, f"{path}: [[key]] #{i + 1}") for i, entry in enumerate(entries)]
    names = [key.name for key in keys]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ConfigError(f"{path}: key name(s) used twice: {', '.join(repeated)}")
    if len({key.digest for key in keys}) != len(keys):
        raise ConfigError(f"{path}: the same sha256 appears twice")
    return tuple(keys)


def _parse_key(entry: Any, where: str) -> ApiKey:
    if not isinstance(entry, Mapping):
        raise ConfigError(f"{where} must be a table")
    unknown = sorted(set(entry) - {"name", "sha256", "roles"})
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}")
    name, digest, roles = entry.get("name"), entry.get("sha256"), entry.get("roles")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}: 'name' must be a non-empty string")
    where = f"{where} ({name!r})"
    if not isinstance(digest, str) or len(digest) != 64:
        raise ConfigError(f"{where}: 'sha256' must be the 64 hex digits of the key's SHA-256")
    try:
        raw = bytes.fromhex(digest)
    except ValueError:
        raise ConfigError(f"{where}: 'sha256' is not hexadecimal") from None
    allowed = ", ".join(role.value for role in Role)
    if not isinstance(roles, list) or not roles:
        raise ConfigError(f"{where}: 'roles' must be a non-empty list of {allowed}")
    try:
        parsed = frozenset(Role(role) for role in roles)
    except ValueError:
        raise ConfigError(f"{where}: unknown role in {roles!r}; roles are {allowed}") from None
    return ApiKey(name, raw, parsed)


def is_loopback(host: str | None) -> bool:
    """Whether ``host`` (a peer's address) is a loopback address (127.0.0.0/8, ::1)."""
    if not host:
        return False
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


@dataclass(frozen=True, slots=True)
class ClientAccess:
    """What one client may do under an :class:`AuthPolicy` (:meth:`AuthPolicy.client_access`)."""

    #: Whether the policy has a key file.
    keys: bool
    #: Whether the client's address is a loopback address.
    loopback: bool
    #: The name and roles (sorted values) of the key the client sent, when the policy knows it.
    key_name: str | None
    key_roles: tuple[str, ...]
    #: Why the key the client sent was refused (None: no key sent, a known one, or no key file).
    key_error: str | None
    #: For each :class:`Access` value but ``open``: whether the call would go ahead.
    allows: Mapping[str, bool]


class AuthPolicy:
    """Decide whether a call may go ahead: the keys (None: no key file) and ``/metrics``'s rule."""

    def __init__(self, keys: Sequence[ApiKey] | None, metrics_auth: bool = False) -> None:
        self.keys = None if keys is None else tuple(keys)
        self.metrics_auth = metrics_auth

    def __repr__(self) -> str:
        """The keys (names, roles, digests: no secret) and the rule, the same for equal
        policies (``shipyard ray serve`` compares deployments by it)."""
        keys = None
        if self.keys is not None:  # roles sorted: a frozenset's order changes between processes
            keys = [(k.name, k.digest.hex(), sorted(r.value for r in k.roles)) for k in self.keys]
        return f"AuthPolicy(keys={keys!r}, metrics_auth={self.metrics_auth!r})"

    @classmethod
    def from_config(cls, config: ServerConfig) -> AuthPolicy:
        """The policy of ``config``: its key file read now (a bad file is a ConfigError)."""
        keys = None if config.api_keys is None else load_keys(config.api_keys)
        return cls(keys, config.metrics_auth)

    def is_open(self, access: Access) -> bool:
        """Whether a call that needs ``access`` goes ahead whoever sends it, from anywhere.

        The adapters skip reading the credentials and the peer's address for these calls.
        """
        if access is Access.OPEN or (access is Access.METRICS and not self.metrics_auth):
            return True
        return self.keys is None and access is not Access.CONTROL

    def authorize(self, access: Access, authorization: str | None, loopback: bool) -> ApiKey | None:
        """Return the caller's key (None when the call needs none), or raise.

        Raise UnauthenticatedError when a key is needed and ``authorization`` holds none or
        an unknown one, PermissionDeniedError when the key lacks the role (or, without a key
        file, when a client that is not on loopback asks for repository control).
        """
        if access is Access.OPEN or (access is Access.METRICS and not self.metrics_auth):
            return None
        if self.keys is None:
            if access is Access.CONTROL and not loopback:
                raise PermissionDeniedError(
                    "repository control answers loopback clients only: this server has no "
                    "API keys (start it with --api-keys FILE to allow admin keys from anywhere)"
                )
            return None
        key = self._identify(authorization)
        needed = _GRANTS[access]
        if not key.roles & needed:
            held = ", ".join(sorted(role.value for role in key.roles))
            wanted = " or ".join(sorted(role.value for role in needed))
            raise PermissionDeniedError(
                f"API key {key.name!r} (roles: {held}) may not make this call: it needs "
                f"role {wanted}"
            )
        return key

    def allows(self, access: Access, authorization: str | None, loopback: bool) -> bool:
        """Whether :meth:`authorize` would let the call go ahead."""
        try:
            self.authorize(access, authorization, loopback)
        except (UnauthenticatedError, PermissionDeniedError):
            return False
        return True

    def client_access(self, authorization: str | None, host: str | None) -> ClientAccess:
        """Say what a client at ``host`` sending ``authorization`` may do (for pages that
        offer only what the server will allow: the dashboard)."""
        loopback = is_loopback(host)
        allows = {
            access.value: self.allows(access, authorization, loopback)
            for access in Access
            if access is not Access.OPEN
        }
        key, error = None, None
        if self.keys is not None and authorization is not None:
            try:
                key = self._identify(authorization)
            except UnauthenticatedError as exc:
                error = exc.message
        return ClientAccess(
            keys=self.keys is not None,
            loopback=loopback,
            key_name=None if key is None else key.name,
            key_roles=() if key is None else tuple(sorted(role.value for role in key.roles)),
            key_error=error,
            allows=allows,
        )

    def _identify(self, authorization: str | None) -> ApiKey:
        """The key that ``Bearer KEY`` names; compared in constant time with every key."""
        scheme, _, token = (authorization or "").strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise UnauthenticatedError(
                "this call needs an API key: send the header 'Authorization: Bearer KEY' "
                "(gRPC: the metadata 'authorization')"
            )
        digest = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
        found = None
        for key in self.keys or ():  # every key, matched or not: no early exit
            if hmac.compare_digest(digest, key.digest):
                found = key
        if found is None:
            raise UnauthenticatedError("the API key is not valid")
        return found

    def describe(self) -> str:
        """One line for the startup banner: which calls need a key, and for whom."""
        metrics = "a key" if self.metrics_auth else "open"
        if self.keys is None:
            return (
                "no API keys: every call is open, but repository control (index, load, "
                f"unload) answers loopback clients only; /metrics {metrics}"
            )
        return (
            f"API keys: {len(self.keys)} key(s); every call but health needs one; "
            f"/metrics {metrics}"
        )


# -- HTTP adapter --------------------------------------------------------------------------------

#: RFC 6750's challenge, sent with every 401.
CHALLENGE = b'Bearer realm="shipyard"'


class HttpAuth:
    """ASGI middleware: check each HTTP request against the policy before the app sees it.

    A refusal is answered here, ``{"error": ...}`` with the status of ``statuses`` (the HTTP
    transport's one error table), and a 401 carries ``WWW-Authenticate``. The caller's key
    name, when there is one, is left in ``scope["state"]["api_key"]`` for logs.
    """

    def __init__(self, app: ASGIApp, policy: AuthPolicy, statuses: Mapping[ErrorCode, int]) -> None:
        self.app = app
        self.policy = policy
        self.statuses = statuses

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        access = http_access(scope["path"])
        if not self.policy.is_open(access):
            authorization = None
            for name, value in scope["headers"]:
                if name == b"authorization":
                    authorization = value.decode("latin-1")
                    break
            client = scope.get("client")
            try:
                key = self.policy.authorize(
                    access, authorization, is_loopback(client and client[0])
                )
            except (UnauthenticatedError, PermissionDeniedError) as exc:
                await self._refuse(send, self.statuses[exc.code], exc.message)
                return
            if key is not None:
                scope.setdefault("state", {})["api_key"] = key.name
        await self.app(scope, receive, send)

    async def _refuse(self, send: Send, status: int, message: str) -> None:
        body = json.dumps({"error": message}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        if status == 401:
            headers.append((b"www-authenticate", CHALLENGE))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def http_access(path: str) -> Access:
    """What an HTTP request to ``path`` needs.

    Unknown routes under ``/v2`` and ``/ui/api`` need admin (today's 404s, tomorrow's routes);
    the dashboard's pages and ``/ui/api/session`` (what this client is offered) are open.
    """
    if path in ("/v2/health/live", "/v2/health/ready", "/ui/api/session"):
        return Access.OPEN
    if path == "/metrics":
        return Access.METRICS
    if path.startswith("/v2/repository/"):
        return Access.CONTROL
    if path == "/v2/models/stats":
        return Access.ADMIN
    if path == "/v2" or path.startswith(("/v2/models/", "/ui/api/models")):
        return Access.INFER
    if path.startswith(("/v2/", "/ui/api/")):
        return Access.ADMIN  # /ui/api/server (settings, hardware) and any route to come
    return Access.OPEN


# -- gRPC adapter --------------------------------------------------------------------------------

_GRPC_SERVICE = "/inference.GRPCInferenceService/"
_GRPC_ACCESS: dict[str, Access] = {
    _GRPC_SERVICE + "ServerLive": Access.OPEN,
    _GRPC_SERVICE + "ServerReady": Access.OPEN,
    _GRPC_SERVICE + "ServerMetadata": Access.INFER,
    _GRPC_SERVICE + "ModelReady": Access.INFER,
    _GRPC_SERVICE + "ModelMetadata": Access.INFER,
    _GRPC_SERVICE + "ModelConfig": Access.INFER,
    _GRPC_SERVICE + "ModelInfer": Access.INFER,
    _GRPC_SERVICE + "ModelStatistics": Access.INFER,  # ADMIN without a model name
    _GRPC_SERVICE + "RepositoryIndex": Access.CONTROL,
    _GRPC_SERVICE + "RepositoryModelLoad": Access.CONTROL,
    _GRPC_SERVICE + "RepositoryModelUnload": Access.CONTROL,
    "/grpc.health.v1.Health/Check": Access.OPEN,
    "/grpc.health.v1.Health/Watch": Access.OPEN,
}


def grpc_access(method: str, request: Any) -> Access:
    """What a gRPC call of ``method`` (``/package.Service/Rpc``) with ``request`` needs."""
    access = _GRPC_ACCESS.get(method, Access.ADMIN)
    if access is Access.INFER and method.endswith("/ModelStatistics") and not request.name:
        return Access.ADMIN  # every model's statistics: server-wide
    return access


def check_grpc_call(
    policy: AuthPolicy,
    method: str,
    request: Any,
    metadata: Sequence[tuple[bytes, bytes]],
    peer: str | None,
) -> ApiKey | None:
    """Authorize a gRPC call from its ``authorization`` metadata and the peer's address.

    Raise UnauthenticatedError or PermissionDeniedError (UNAUTHENTICATED / PERMISSION_DENIED).
    """
    access = grpc_access(method, request)
    if policy.is_open(access):
        return None
    authorization = None
    for name, value in metadata:
        if name == b"authorization":
            authorization = value.decode("latin-1")
            break
    return policy.authorize(access, authorization, is_loopback(peer))
