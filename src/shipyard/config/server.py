"""The settings of one server process: :class:`ServerConfig`, typed and frozen.

:meth:`ServerConfig.resolve` merges defaults < config file < environment (``SHIPYARD_*``) < CLI
flags (:func:`~shipyard.config.resolve.layered`), then coerces and checks every value. See
``docs/configuration.md``.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from shipyard.config.resolve import check_bool, check_keys, layered
from shipyard.errors import ConfigError

__all__ = ["LOG_FORMATS", "LOG_LEVELS", "ServerConfig", "is_store_url"]

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
_STORE_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")


def is_store_url(text: str) -> bool:
    """Whether ``text`` names an object store (``s3://bucket/prefix``), not a local folder."""
    return _STORE_URL.match(text) is not None and not text.startswith("file://")


#: The gRPC connection limits of ServerConfig, by type, and their smallest values.
_GRPC_INT_LIMITS = {
    "grpc_max_connections": 1,
    "grpc_max_header_list_bytes": 1024,
    "grpc_max_unsent_bytes": 1,
    "grpc_max_resets": 1,
    "grpc_max_pings": 1,
    "grpc_max_settings": 1,
}
_GRPC_FLOAT_LIMITS = (
    "grpc_flood_window_s",
    "grpc_handshake_timeout_s",
    "grpc_idle_timeout_s",
    "grpc_keepalive_interval_s",
    "grpc_keepalive_timeout_s",
)


def _check_grpc_limits(config: ServerConfig) -> None:
    """Refuse gRPC connection limits out of range (time limits of 0 turn idle/keepalive off)."""
    for key, smallest in _GRPC_INT_LIMITS.items():
        value = getattr(config, key)
        if not smallest <= value <= 2**31 - 1:
            raise ConfigError(f"{key} must be in {smallest}..2147483647, got {value}")
    for key in _GRPC_FLOAT_LIMITS:
        value = getattr(config, key)
        may_be_off = key in ("grpc_idle_timeout_s", "grpc_keepalive_interval_s")
        if not (value >= 0 if may_be_off else value > 0) or value == float("inf"):
            bound = ">= 0 (0: off)" if may_be_off else "> 0"
            raise ConfigError(f"{key} must be a finite number of seconds {bound}, got {value}")


#: The HTTP/1.1 connection limits of ServerConfig and their smallest values.
_HTTP_COUNTS = {"http_max_connections": 1, "http_max_header_bytes": 1024}
_HTTP_TIMEOUTS = ("http_header_timeout_s", "http_body_timeout_s", "http_idle_timeout_s")
#: Settings that name a file, or None.
_OPTIONAL_PATHS = ("tls_cert", "tls_key", "tls_client_ca", "api_keys")


def _check_http_limits(config: ServerConfig) -> None:
    """Refuse HTTP connection limits out of range."""
    for key, smallest in _HTTP_COUNTS.items():
        value = getattr(config, key)
        if not smallest <= value <= 2**31 - 1:
            raise ConfigError(f"{key} must be in {smallest}..2147483647, got {value}")
    for key in _HTTP_TIMEOUTS:
        value = getattr(config, key)
        if not 0 < value < float("inf"):  # also refuses NaN
            raise ConfigError(f"{key} must be a finite number of seconds > 0, got {value}")


def _check_security(config: ServerConfig) -> None:
    """Refuse TLS and key settings that cannot work together (the files are read at start)."""
    if (config.tls_cert is None) != (config.tls_key is None):
        raise ConfigError("tls_cert and tls_key go together: give both (--tls-cert, --tls-key)")
    if config.tls_client_ca is not None and config.tls_cert is None:
        raise ConfigError(
            "tls_client_ca (mutual TLS) needs TLS itself: give tls_cert and tls_key too"
        )
    if config.metrics_auth and config.api_keys is None:
        raise ConfigError("metrics_auth needs API keys to check: give api_keys (--api-keys)")


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Settings of one server process. See ``docs/configuration.md``."""

    #: A local folder (Path) or an object-store URL (str, ``s3://bucket/prefix``).
    repository: Path | str = Path("model-repository")
    host: str = "127.0.0.1"
    http_port: int = 8000
    #: gRPC port (``inference.GRPCInferenceService``); 0 turns gRPC off.
    grpc_port: int = 8001
    #: Largest gRPC message received or sent (RESOURCE_EXHAUSTED above it).
    grpc_max_message_bytes: int = 64 * 1024 * 1024
    #: Calls one gRPC connection may have open at once (more are refused: REFUSED_STREAM),
    #: and may run at once (a complete request waits, unconsumed, while that many run).
    grpc_max_concurrent_streams: int = 1000
    # -- gRPC connection limits: what one client may cost (docs/grpc.md, "Connection limits").
    #: gRPC connections open at once; past it a new one is accepted, sent
    #: GOAWAY(ENHANCE_YOUR_CALM) "too many connections" and closed.
    grpc_max_connections: int = 1000
    #: Largest header list of one call (RFC 7541 sizes) and largest encoded header block; over
    #: it, GOAWAY(ENHANCE_YOUR_CALM).
    grpc_max_header_list_bytes: int = 16 * 1024
    #: Answer bytes one connection may hold while its client's flow-control window is closed;
    #: past it, no new call starts on that connection until the client reads.
    grpc_max_unsent_bytes: int = 64 * 1024 * 1024
    #: Stream resets per connection (the client's RST_STREAM plus streams the server refused)
    #: per ``grpc_flood_window_s``; past it, GOAWAY(ENHANCE_YOUR_CALM) and close.
    grpc_max_resets: int = 200
    #: PING frames per connection per ``grpc_flood_window_s``; past it, the same.
    grpc_max_pings: int = 100
    #: SETTINGS frames per connection per ``grpc_flood_window_s``; past it, the same.
    grpc_max_settings: int = 100
    #: The window, in seconds, in which the three budgets above are counted.
    grpc_flood_window_s: float = 10.0
    #: Seconds a new connection has to send the HTTP/2 preface and its first SETTINGS.
    grpc_handshake_timeout_s: float = 10.0
    #: Seconds a connection may stay without open streams and running calls; 0: forever.
    grpc_idle_timeout_s: float = 300.0
    #: Seconds without a frame from the client before the server sends a PING; 0: never.
    grpc_keepalive_interval_s: float = 60.0
    #: Seconds the client has to acknowledge that PING before its connection is closed.
    grpc_keepalive_timeout_s: float = 20.0
    #: Models to load at start; empty: every model in the repository.
    models: tuple[str, ...] = ()
    #: Largest request body accepted (413 above it).
    max_request_bytes: int = 64 * 1024 * 1024
    #: Largest element count of one tensor (400 above it), checked before any allocation.
    max_tensor_elements: int = 64 * 1024 * 1024
    #: Seconds in-flight requests get to finish after SIGINT/SIGTERM.
    drain_timeout_s: float = 30.0
    log_level: str = "info"
    #: Serve the web dashboard at ``/ui/`` (and redirect ``/`` there); ``--no-ui`` turns it off.
    ui: bool = True
    #: Where versions from an object-store repository are cached (None: the user cache,
    #: ``$XDG_CACHE_HOME/shipyard/repositories``). Safe to share between processes.
    cache_dir: Path | None = None
    #: Whether models may run Python code from the repository (``backend = "python"``,
    #: Python steps): loading it is code execution, so it is refused unless this is set.
    allow_python_models: bool = False
    #: Worker processes sharing the ports (SO_REUSEPORT) under one supervisor; ``"auto"``:
    #: one per usable core. 1 serves from this process alone (docs/scaling.md).
    workers: int | Literal["auto"] = 1
    # -- operations (docs/operations.md) --------------------------------------------------
    #: Request body bytes all requests in flight may hold together: past it a request gets
    #: 503 with Retry-After before its body is read (0: no limit; else >= max_request_bytes).
    max_inflight_bytes: int = 256 * 1024 * 1024
    #: Inference requests in flight over all models (503 with Retry-After past it; 0: none).
    max_inflight_requests: int = 0
    #: Seconds an overloaded server asks clients to wait (``Retry-After``, gRPC pushback).
    retry_after_s: int = 1
    #: JSON documents up to this size are decoded on the event loop; larger ones in a worker.
    decode_inline_bytes: int = 64 * 1024
    #: Worker processes for the larger JSON decodes (0: decode every body on the event loop).
    decode_workers: int = 1
    #: Log lines as ``text`` or ``json`` (one object per line).
    log_format: str = "text"
    #: Write an access log line per request (logger ``shipyard.access``).
    access_log: bool = False
    #: Share of requests the access log writes, in (0, 1].
    access_log_sample: float = 1.0
    #: Latency histogram bucket bounds in seconds; empty: 50 µs to 10 s (docs/operations.md).
    metrics_buckets_s: tuple[float, ...] = ()
    #: Record OpenTelemetry spans (the ``otel`` extra; ``OTEL_*`` variables set the exporter).
    otel: bool = False
    #: Seconds between scans of the repository for changed models (0: no polling).
    poll_interval_s: float = 0.0
    # -- HTTP/1.1 connection limits: what one client may cost (docs/configuration.md).
    #: Seconds a request has to send its headers, from its first byte (from the connection's
    #: opening for the first request); past it, 408 and close.
    http_header_timeout_s: float = 10.0
    #: Seconds a request has to send its body once its headers are in; past it, 408 and close.
    http_body_timeout_s: float = 60.0
    #: Seconds an idle keep-alive connection stays open.
    http_idle_timeout_s: float = 30.0
    #: HTTP connections open at once; past it a new one is answered 503 and closed.
    http_max_connections: int = 1000
    #: Largest request line and headers of one request (431 above it).
    http_max_header_bytes: int = 64 * 1024
    # -- TLS and API keys, on both transports (docs/security.md).
    #: PEM certificate chain; with ``tls_key``, HTTP serves HTTPS and gRPC TLS (ALPN h2).
    tls_cert: Path | None = None
    #: PEM private key of ``tls_cert``.
    tls_key: Path | None = None
    #: PEM CA bundle: clients must present a certificate it signed (mutual TLS).
    tls_client_ca: Path | None = None
    #: TOML file of API keys (``[[key]]`` name, sha256, roles); None: no keys, and repository
    #: control answers loopback clients only.
    api_keys: Path | None = None
    #: Whether ``/metrics`` needs a key (role ``metrics`` or ``admin``); it is open by default.
    metrics_auth: bool = False

    @classmethod
    def resolve(
        cls,
        file: Path | None = None,
        env: Mapping[str, str] | None = None,
        flags: Mapping[str, Any] | None = None,
    ) -> ServerConfig:
        """Merge defaults < ``file`` ([server] table) < ``SHIPYARD_*`` env < ``flags``."""
        names = [f.name for f in dataclasses.fields(cls)]
        return cls._coerce(layered(names, file, env, flags))

    @classmethod
    def _coerce(cls, values: Mapping[str, Any]) -> ServerConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        check_keys(values, names, "server config")
        out: dict[str, Any] = {}
        for key, value in values.items():
            try:
                if key == "repository":
                    if not isinstance(value, str | Path):
                        raise TypeError("expected a folder or a store URL")
                    text = str(value)
                    out[key] = text if is_store_url(text) else Path(text.removeprefix("file://"))
                elif key == "cache_dir":
                    out[key] = None if value in (None, "") else Path(value)
                elif key == "models":
                    items = value.split(",") if isinstance(value, str) else value
                    out[key] = tuple(str(v).strip() for v in items if str(v).strip())
                elif key in (
                    "http_port",
                    "grpc_port",
                    "grpc_max_message_bytes",
                    "grpc_max_concurrent_streams",
                    "max_request_bytes",
                    "max_tensor_elements",
                    *_GRPC_INT_LIMITS,
                    *_HTTP_COUNTS,
                ):
                    if isinstance(value, bool | float):  # int() would truncate or accept true
                        raise TypeError(f"{key} must be an integer")
                    out[key] = int(value)
                elif key == "drain_timeout_s" or key in (*_GRPC_FLOAT_LIMITS, *_HTTP_TIMEOUTS):
                    out[key] = float(value)
                elif key == "ui":
                    out[key] = check_bool(value, "server config: ui")
                elif key == "allow_python_models":
                    out[key] = check_bool(value, "server config: allow_python_models")
                elif key == "workers":
                    out[key] = _workers(value)
                elif key in _OPERATIONS:
                    out[key] = _operations_value(key, value)
                elif key in _OPTIONAL_PATHS:
                    out[key] = None if value is None or value == "" else Path(value)
                elif key == "metrics_auth":
                    out[key] = check_bool(value, "server config: metrics_auth")
                else:
                    out[key] = str(value)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"server config: invalid {key} {value!r}: {exc}") from exc
        config = cls(**out)
        if not 0 <= config.http_port <= 65535:
            raise ConfigError(f"http_port must be in 0..65535, got {config.http_port}")
        if not 0 <= config.grpc_port <= 65535:
            raise ConfigError(f"grpc_port must be in 0..65535 (0: off), got {config.grpc_port}")
        if not 1024 <= config.grpc_max_message_bytes <= 2**31 - 1:
            raise ConfigError(
                "grpc_max_message_bytes must be in 1024..2147483647 (gRPC's limit), got "
                f"{config.grpc_max_message_bytes}"
            )
        if not 1 <= config.grpc_max_concurrent_streams <= 2**31 - 1:
            raise ConfigError(
                "grpc_max_concurrent_streams must be in 1..2147483647, got "
                f"{config.grpc_max_concurrent_streams}"
            )
        _check_grpc_limits(config)
        if config.max_request_bytes < 1024 or config.max_tensor_elements < 1:
            raise ConfigError("max_request_bytes must be >= 1024 and max_tensor_elements >= 1")
        if not config.drain_timeout_s >= 0:  # also refuses NaN
            raise ConfigError("drain_timeout_s must be >= 0")
        _check_http_limits(config)
        _check_security(config)
        if config.log_level.lower() not in LOG_LEVELS:
            raise ConfigError(
                f"log_level must be one of {', '.join(LOG_LEVELS)}, got {config.log_level!r}"
            )
        _check_operations(config)
        return config


#: The most worker processes ``workers`` may ask for.
MAX_WORKERS = 1024


def _workers(value: Any) -> int | Literal["auto"]:
    """``workers`` as an integer in 1..:data:`MAX_WORKERS`, or ``"auto"``."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    if isinstance(value, bool | float):
        raise TypeError("expected an integer or 'auto'")
    try:
        count = int(value)
    except ValueError:
        raise ValueError("expected an integer or 'auto'") from None
    if not 1 <= count <= MAX_WORKERS:
        raise ValueError(f"expected 1..{MAX_WORKERS} or 'auto'")
    return count


# -- operations settings (docs/operations.md) ------------------------------------------------

LOG_FORMATS = ("text", "json")
_OPERATIONS = {
    "max_inflight_bytes": int,
    "max_inflight_requests": int,
    "retry_after_s": int,
    "decode_inline_bytes": int,
    "decode_workers": int,
    "access_log": bool,
    "access_log_sample": float,
    "metrics_buckets_s": tuple,
    "otel": bool,
    "poll_interval_s": float,
}


def _operations_value(key: str, value: Any) -> Any:
    """Coerce one operations setting (from TOML, the environment or a flag)."""
    kind = _OPERATIONS[key]
    if kind is bool:
        return check_bool(value, f"server config: {key}")
    if kind is tuple:
        items = value.split(",") if isinstance(value, str) else value
        return tuple(float(v) for v in items if str(v).strip())
    if isinstance(value, bool) or (kind is int and isinstance(value, float)):
        raise TypeError(f"{key} must be {'an integer' if kind is int else 'a number'}")
    return kind(value)


def _check_operations(config: ServerConfig) -> None:
    """Check the operations settings against each other (ConfigError naming the setting)."""
    if config.max_inflight_bytes and config.max_inflight_bytes < config.max_request_bytes:
        raise ConfigError(
            f"max_inflight_bytes ({config.max_inflight_bytes}) must be 0 (no limit) or at least "
            f"max_request_bytes ({config.max_request_bytes})"
        )
    for name in ("max_inflight_bytes", "max_inflight_requests", "decode_workers"):
        if getattr(config, name) < 0:
            raise ConfigError(f"{name} must be >= 0, got {getattr(config, name)}")
    if config.retry_after_s < 1:
        raise ConfigError(f"retry_after_s must be an integer >= 1, got {config.retry_after_s}")
    if config.decode_inline_bytes < 0:
        raise ConfigError(f"decode_inline_bytes must be >= 0, got {config.decode_inline_bytes}")
    if config.log_format not in LOG_FORMATS:
        raise ConfigError(
            f"log_format must be one of {', '.join(LOG_FORMATS)}, got {config.log_format!r}"
        )
    if not 0 < config.access_log_sample <= 1:
        raise ConfigError(f"access_log_sample must be in (0, 1], got {config.access_log_sample}")
    if not config.poll_interval_s >= 0 or config.poll_interval_s == float("inf"):
        raise ConfigError(f"poll_interval_s must be >= 0 (0: off), got {config.poll_interval_s}")
    bounds = config.metrics_buckets_s
    if bounds and (
        any(not 0 < b < float("inf") for b in bounds)
        or any(a >= b for a, b in itertools.pairwise(bounds))
    ):
        raise ConfigError(
            f"metrics_buckets_s must be positive, finite and increasing, got {list(bounds)}"
        )
