"""The one exception hierarchy of Shipyard.

Every error carries a transport-neutral :class:`ErrorCode`; each transport maps codes to its own
statuses in exactly one table (``server/http.py``, ``server/grpc.py``). Messages are written for
the client: they name the model and the tensor concerned and never contain a traceback.

    ShipyardError
     ├── InvalidInputError            INVALID_ARGUMENT   bad request: names, datatypes, shapes, data
     │    └── PayloadTooLargeError    PAYLOAD_TOO_LARGE  body or tensor over a configured limit
     ├── NotFoundError                NOT_FOUND          unknown model, version or output
     ├── UnavailableError             UNAVAILABLE        model not ready, queue full, shutting down
     │    ├── ModelNotReadyError
     │    └── OverloadedError
     ├── DeadlineExceededError        DEADLINE_EXCEEDED  request expired before it ran
     ├── ConfigError                  INVALID_ARGUMENT   a bad model.toml, server config or flag
     ├── ModelLoadError               INVALID_ARGUMENT   a model file that cannot be loaded
     ├── UnsupportedError             UNIMPLEMENTED      a feature Shipyard does not implement
     └── InternalError                INTERNAL           a genuine server fault
"""

from __future__ import annotations

import enum

__all__ = [
    "ConfigError",
    "DeadlineExceededError",
    "ErrorCode",
    "InternalError",
    "InvalidInputError",
    "ModelLoadError",
    "ModelNotReadyError",
    "NotFoundError",
    "OverloadedError",
    "PayloadTooLargeError",
    "ShipyardError",
    "UnavailableError",
    "UnsupportedError",
]


class ErrorCode(enum.Enum):
    """Transport-neutral error codes (named after their gRPC counterparts)."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    NOT_FOUND = "NOT_FOUND"
    UNAVAILABLE = "UNAVAILABLE"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    UNIMPLEMENTED = "UNIMPLEMENTED"
    INTERNAL = "INTERNAL"


class ShipyardError(Exception):
    """Base of every error Shipyard raises on purpose."""

    code: ErrorCode = ErrorCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInputError(ShipyardError):
    """The request is malformed or does not match the model's signature."""

    code = ErrorCode.INVALID_ARGUMENT


class PayloadTooLargeError(InvalidInputError):
    """The request body or a tensor exceeds a configured limit."""

    code = ErrorCode.PAYLOAD_TOO_LARGE


class NotFoundError(ShipyardError):
    """An unknown model, version or tensor name."""

    code = ErrorCode.NOT_FOUND


class UnavailableError(ShipyardError):
    """The server or model cannot take the request now; retrying later may succeed."""

    code = ErrorCode.UNAVAILABLE


class ModelNotReadyError(UnavailableError):
    """The model exists but is not loaded (loading, unloading, or failed to load)."""


class OverloadedError(UnavailableError):
    """The model's request queue is full."""


class DeadlineExceededError(ShipyardError):
    """The request's deadline passed before the model ran it."""

    code = ErrorCode.DEADLINE_EXCEEDED


class ConfigError(ShipyardError):
    """A configuration value (model.toml, server settings, CLI flag) is invalid."""

    code = ErrorCode.INVALID_ARGUMENT


class ModelLoadError(ShipyardError):
    """A model file could not be loaded by its backend."""

    code = ErrorCode.INVALID_ARGUMENT


class UnsupportedError(ShipyardError):
    """The request asks for something Shipyard does not implement."""

    code = ErrorCode.UNIMPLEMENTED


class InternalError(ShipyardError):
    """A fault inside the server (a bug or a backend failure on valid input)."""

    code = ErrorCode.INTERNAL
