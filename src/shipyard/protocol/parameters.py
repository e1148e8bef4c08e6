"""Request parameters that mean something to the server, decoded the same way on every wire.

Both codecs call :func:`pop_timeout_us` once per request, so the ``timeout`` parameter is
checked in this one place and reaches the core request as :attr:`InferRequest.timeout_us`.
"""

from __future__ import annotations

from shipyard.errors import InvalidInputError, brief
from shipyard.types import Parameters

__all__ = ["pop_timeout_us"]


def pop_timeout_us(parameters: Parameters, model_name: str) -> int:
    """Remove the ``timeout`` parameter from ``parameters`` and return it (0 when absent).

    Raise InvalidInputError unless it is a non-negative integer of microseconds.
    """
    if "timeout" not in parameters:
        return 0
    value = parameters.pop("timeout")
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInputError(
            f"model {model_name!r}: parameter 'timeout' must be a non-negative integer "
            f"(microseconds), got {brief(value)}"
        )
    return value
