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
     ├── ConversionError              INVALID_ARGUMENT   ``shipyard convert`` failed at a named step
     │    └── ParityError                                converted outputs differ from the source's
     ├── UnsupportedError             UNIMPLEMENTED      a feature Shipyard does not implement
     ├── UnauthenticatedError         UNAUTHENTICATED    no API key, or not a valid one
     ├── PermissionDeniedError        PERMISSION_DENIED  a key without the role; a remote client
     │                                                   where only loopback may call
     ├── LoadGeneratorError           UNAVAILABLE        bench cannot reach a server or model
     └── InternalError                INTERNAL           a genuine server fault
          └── InstanceFailedError                        a model instance died (its worker crashed)
"""

from __future__ import annotations

import enum
import reprlib

__all__ = [
    "ConfigError",
    "ConversionError",
    "DeadlineExceededError",
    "ErrorCode",
    "InstanceFailedError",
    "InternalError",
    "InvalidInputError",
    "LoadGeneratorError",
    "ModelLoadError",
    "ModelNotReadyError",
    "NotFoundError",
    "OverloadedError",
    "ParityError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "ShipyardError",
    "UnauthenticatedError",
    "UnavailableError",
    "UnsupportedError",
    "brief",
]

#: How a client's value is shown in an error message: a few levels, items and characters, so
#: a value nested 1,000 deep or megabytes long neither recurses nor floods the message.
_BRIEF = reprlib.Repr()
_BRIEF.maxlevel, _BRIEF.maxlist, _BRIEF.maxtuple, _BRIEF.maxdict = 3, 8, 8, 4
_BRIEF.maxstring, _BRIEF.maxlong, _BRIEF.maxother = 60, 40, 60


def brief(value: object) -> str:
    """A bounded ``repr`` of ``value`` (a client's JSON) for an error message."""
    return _BRIEF.repr(value)


class ErrorCode(enum.Enum):
    """Transport-neutral error codes (named after their gRPC counterparts)."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    NOT_FOUND = "NOT_FOUND"
    UNAVAILABLE = "UNAVAILABLE"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    UNIMPLEMENTED = "UNIMPLEMENTED"
    INTERNAL = "INTERNAL"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    PERMISSION_DENIED = "PERMISSION_DENIED"


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


class ConversionError(ShipyardError):
    """A model could not be converted; says which step, for which framework, and the likely fix.

    ``message`` is one line for the user; ``detail`` holds the full converter error (shown only
    with ``--verbose``).
    """

    code = ErrorCode.INVALID_ARGUMENT

    def __init__(
        self, message: str, *, step: str, framework: str = "", hint: str = "", detail: str = ""
    ) -> None:
        super().__init__(message)
        self.step = step
        self.framework = framework
        self.hint = hint
        self.detail = detail

    def __str__(self) -> str:
        where = f" ({self.framework})" if self.framework else ""
        fix = f" -- likely fix: {self.hint}" if self.hint else ""
        return f"{self.step} failed{where}: {self.message}{fix}"


class ParityError(ConversionError):
    """The converted model's outputs differ from the source model's beyond the tolerances."""

    def __init__(self, message: str, *, framework: str, report: dict[str, object]) -> None:
        super().__init__(
            message,
            step="parity check",
            framework=framework,
            hint="inspect the report; pass --allow-mismatch to publish anyway",
        )
        self.report = report


class UnsupportedError(ShipyardError):
    """The request asks for something Shipyard does not implement."""

    code = ErrorCode.UNIMPLEMENTED


class UnauthenticatedError(ShipyardError):
    """The call needs an API key and has none, or one the server does not know."""

    code = ErrorCode.UNAUTHENTICATED


class PermissionDeniedError(ShipyardError):
    """The caller is known but may not make this call (its key lacks the role)."""

    code = ErrorCode.PERMISSION_DENIED


class LoadGeneratorError(ShipyardError):
    """The load generator cannot reach the server, find the model or build its request."""

    code = ErrorCode.UNAVAILABLE


class InternalError(ShipyardError):
    """A fault inside the server (a bug or a backend failure on valid input)."""

    code = ErrorCode.INTERNAL


class InstanceFailedError(InternalError):
    """A model instance can no longer run (its worker process died); it is replaced."""
