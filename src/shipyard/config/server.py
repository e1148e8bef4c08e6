"""The settings of one server process: :class:`ServerConfig`, typed and frozen.

:meth:`ServerConfig.resolve` merges defaults < config file < environment (``SHIPYARD_*``) < CLI
flags (:func:`~shipyard.config.resolve.layered`), then coerces and checks every value. See
``docs/configuration.md``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shipyard.config.resolve import check_keys, layered
from shipyard.errors import ConfigError

__all__ = ["LOG_LEVELS", "ServerConfig"]

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Settings of one server process. See ``docs/configuration.md``."""

    repository: Path = Path("model-repository")
    host: str = "127.0.0.1"
    http_port: int = 8000
    #: gRPC port (``inference.GRPCInferenceService``); 0 turns gRPC off.
    grpc_port: int = 8001
    #: Largest gRPC message received or sent (RESOURCE_EXHAUSTED above it).
    grpc_max_message_bytes: int = 64 * 1024 * 1024
    #: Calls one gRPC connection may have open at once (more are refused: REFUSED_STREAM).
    grpc_max_concurrent_streams: int = 1000
    #: Models to load at start; empty: every model in the repository.
    models: tuple[str, ...] = ()
    #: Largest request body accepted (413 above it).
    max_request_bytes: int = 64 * 1024 * 1024
    #: Largest element count of one tensor (400 above it), checked before any allocation.
    max_tensor_elements: int = 64 * 1024 * 1024
    #: Seconds in-flight requests get to finish after SIGINT/SIGTERM.
    drain_timeout_s: float = 30.0
    log_level: str = "info"
    #: Whether models may run Python code from the repository (``backend = "python"``,
    #: Python steps): loading it is code execution, so it is refused unless this is set.
    allow_python_models: bool = False

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
                    out[key] = Path(value)
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
                ):
                    if isinstance(value, bool | float):  # int() would truncate or accept true
                        raise TypeError(f"{key} must be an integer")
                    out[key] = int(value)
                elif key == "drain_timeout_s":
                    out[key] = float(value)
                elif key == "allow_python_models":
                    out[key] = _boolean(value)
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
        if config.max_request_bytes < 1024 or config.max_tensor_elements < 1:
            raise ConfigError("max_request_bytes must be >= 1024 and max_tensor_elements >= 1")
        if not config.drain_timeout_s >= 0:  # also refuses NaN
            raise ConfigError("drain_timeout_s must be >= 0")
        if config.log_level.lower() not in LOG_LEVELS:
            raise ConfigError(
                f"log_level must be one of {', '.join(LOG_LEVELS)}, got {config.log_level!r}"
            )
        return config


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


def _boolean(value: Any) -> bool:
    """A setting that is true or false: a bool, or one of the usual words (environment)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"expected true or false ({', '.join(_TRUE)} / {', '.join(_FALSE[:-1])})")
