"""Tests for shipyard.errors: one hierarchy, one transport-neutral code per error."""

from __future__ import annotations

import pytest

from shipyard import errors
from shipyard.errors import (
    ConfigError,
    ConversionError,
    DeadlineExceededError,
    ErrorCode,
    InstanceFailedError,
    InternalError,
    InvalidInputError,
    LoadGeneratorError,
    ModelLoadError,
    ModelNotReadyError,
    NotFoundError,
    OverloadedError,
    ParityError,
    PayloadTooLargeError,
    PermissionDeniedError,
    ShipyardError,
    UnauthenticatedError,
    UnavailableError,
    UnsupportedError,
)

_CODES: dict[type[ShipyardError], ErrorCode] = {
    ShipyardError: ErrorCode.INTERNAL,
    InvalidInputError: ErrorCode.INVALID_ARGUMENT,
    PayloadTooLargeError: ErrorCode.PAYLOAD_TOO_LARGE,
    NotFoundError: ErrorCode.NOT_FOUND,
    UnavailableError: ErrorCode.UNAVAILABLE,
    ModelNotReadyError: ErrorCode.UNAVAILABLE,
    OverloadedError: ErrorCode.UNAVAILABLE,
    DeadlineExceededError: ErrorCode.DEADLINE_EXCEEDED,
    ConfigError: ErrorCode.INVALID_ARGUMENT,
    ModelLoadError: ErrorCode.INVALID_ARGUMENT,
    ConversionError: ErrorCode.INVALID_ARGUMENT,
    ParityError: ErrorCode.INVALID_ARGUMENT,
    UnsupportedError: ErrorCode.UNIMPLEMENTED,
    LoadGeneratorError: ErrorCode.UNAVAILABLE,
    InternalError: ErrorCode.INTERNAL,
    InstanceFailedError: ErrorCode.INTERNAL,
    UnauthenticatedError: ErrorCode.UNAUTHENTICATED,
    PermissionDeniedError: ErrorCode.PERMISSION_DENIED,
}

#: Errors whose constructor takes only the message.
_PLAIN = [cls for cls in _CODES if cls not in (ConversionError, ParityError)]

_PARENTS: dict[type[ShipyardError], type[Exception]] = {
    ShipyardError: Exception,
    InvalidInputError: ShipyardError,
    PayloadTooLargeError: InvalidInputError,
    NotFoundError: ShipyardError,
    UnavailableError: ShipyardError,
    ModelNotReadyError: UnavailableError,
    OverloadedError: UnavailableError,
    DeadlineExceededError: ShipyardError,
    ConfigError: ShipyardError,
    ModelLoadError: ShipyardError,
    ConversionError: ShipyardError,
    ParityError: ConversionError,
    UnsupportedError: ShipyardError,
    LoadGeneratorError: ShipyardError,
    InternalError: ShipyardError,
    InstanceFailedError: InternalError,
    UnauthenticatedError: ShipyardError,
    PermissionDeniedError: ShipyardError,
}


@pytest.mark.parametrize(("cls", "code"), list(_CODES.items()))
def test_each_error_carries_its_code(cls: type[ShipyardError], code: ErrorCode) -> None:
    """Each error class carries the documented ErrorCode."""
    assert cls.code is code


@pytest.mark.parametrize("cls", _PLAIN)
def test_instances_carry_code_and_message(cls: type[ShipyardError]) -> None:
    """An instance built from a message exposes that message and its class's code."""
    error = cls("boom")
    assert error.code is _CODES[cls]
    assert error.message == "boom"


def test_conversion_error_names_step_framework_and_fix() -> None:
    """ConversionError's str says which step failed, for which framework, and the fix."""
    error = ConversionError("no opset 99", step="export", framework="torch", hint="use 17")
    assert error.message == "no opset 99"
    text = str(error)
    for part in ("export", "torch", "no opset 99", "use 17"):
        assert part in text
    assert text.index("export") < text.index("no opset 99") < text.index("use 17")
    bare = str(ConversionError("bad", step="load"))
    assert "load" in bare
    assert "bad" in bare
    assert "fix" not in bare


def test_parity_error_keeps_its_report() -> None:
    """ParityError is a ConversionError of the parity step that carries the report."""
    error = ParityError("max abs diff 0.5", framework="keras", report={"max_abs": 0.5})
    assert error.step == "parity check"
    assert error.report == {"max_abs": 0.5}
    assert error.code is ErrorCode.INVALID_ARGUMENT


@pytest.mark.parametrize(("cls", "parent"), list(_PARENTS.items()))
def test_hierarchy_matches_the_documented_tree(
    cls: type[ShipyardError], parent: type[Exception]
) -> None:
    """Each error's direct base is the one drawn in the module docstring."""
    assert cls.__bases__ == (parent,)
    assert issubclass(cls, ShipyardError)


def test_every_exported_error_is_covered_and_named_error() -> None:
    """__all__ exports exactly the tested classes plus ErrorCode and brief(); every class ends
    in Error."""
    exported = {getattr(errors, name) for name in errors.__all__}
    assert exported == {*_CODES, ErrorCode, errors.brief}
    assert all(cls.__name__.endswith("Error") for cls in _CODES)


def test_every_code_is_used() -> None:
    """No ErrorCode is unreachable: each is carried by at least one error class."""
    assert set(ErrorCode) == set(_CODES.values())


def test_message_is_kept_and_is_the_str() -> None:
    """The client-facing message is available as .message and str(error)."""
    error = NotFoundError("unknown model 'x'")
    assert error.message == "unknown model 'x'"
    assert str(error) == "unknown model 'x'"
    assert error.args == ("unknown model 'x'",)


def test_catching_a_parent_catches_the_child() -> None:
    """An OverloadedError is caught by handlers for UnavailableError and ShipyardError."""
    with pytest.raises(UnavailableError):
        raise OverloadedError("queue full")
    with pytest.raises(InvalidInputError):
        raise PayloadTooLargeError("too big")


def test_brief_bounds_a_clients_value() -> None:
    """brief() shows a value nested 5,000 deep or a megabyte long in a few dozen characters."""
    deep: object = 1
    for _ in range(5000):
        deep = [deep]
    assert errors.brief(deep) == "[[[[...]]]]"
    assert len(errors.brief("x" * 1_000_000)) < 80
    assert errors.brief([1, "a", None]) == "[1, 'a', None]"
