"""Request IDs and W3C trace context: what a client may send, what the server makes."""

from __future__ import annotations

import re

import pytest

from shipyard.context import new_request_id, open_request, parse_traceparent, valid_request_id

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"


def test_new_request_ids_are_32_hex_digits_and_distinct() -> None:
    """Generated IDs have a W3C trace ID's shape and do not repeat."""
    ids = {new_request_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)


@pytest.mark.parametrize("value", [b"abc", b"req-42:x/y", b"A" * 128, b"550e8400-e29b-41d4"])
def test_client_request_ids_are_kept(value: bytes) -> None:
    """A visible-ASCII ID of up to 128 characters is the request's ID."""
    assert open_request("http", value).request_id == value.decode()


@pytest.mark.parametrize("value", [b"", b"a b", b"A" * 129, b"line\nbreak", "é".encode()])
def test_unsafe_request_ids_are_replaced(value: bytes) -> None:
    """An ID with spaces, control characters, non-ASCII or over 128 bytes is not logged as is."""
    assert valid_request_id(value) is None
    assert re.fullmatch(r"[0-9a-f]{32}", open_request("http", value).request_id)


def test_traceparent_is_parsed_with_tracestate() -> None:
    """A valid version-00 traceparent gives the caller's trace and span, and keeps tracestate."""
    trace = parse_traceparent(f"00-{TRACE}-{SPAN}-01", "congo=t61rcWkgMzE")
    assert trace is not None
    assert (trace.trace_id, trace.span_id, trace.sampled) == (TRACE, SPAN, True)
    assert trace.tracestate == "congo=t61rcWkgMzE"
    assert trace.header() == f"00-{TRACE}-{SPAN}-01"


@pytest.mark.parametrize(
    "value",
    [
        f"ff-{TRACE}-{SPAN}-01",  # version ff is invalid
        f"00-{'0' * 32}-{SPAN}-01",  # all-zero trace ID
        f"00-{TRACE}-{'0' * 16}-01",  # all-zero span ID
        f"00-{TRACE.upper()}-{SPAN}-01",  # uppercase hex
        f"00-{TRACE}-{SPAN}-01-extra",  # version 00 has exactly four fields
        "garbage",
    ],
)
def test_invalid_traceparent_is_ignored(value: str) -> None:
    """An invalid traceparent is dropped (the request starts a trace of its own)."""
    assert parse_traceparent(value, "a=b") is None


def test_future_versions_may_carry_more_fields() -> None:
    """A later version's traceparent is read by its first four fields, as the spec says."""
    trace = parse_traceparent(f"01-{TRACE}-{SPAN}-00-more", None)
    assert trace is not None
    assert trace.sampled is False
