"""The transports the golden suite runs through, as unmodified tritonclient clients.

tritonclient's HTTP and gRPC clients share one API, so each golden test is written once and
parametrized over TRANSPORTS. A transport is added here when it is implemented.
"""

from __future__ import annotations

from typing import Any

from shipyard.testing import RunningServer

TRANSPORTS = ["http"]


def make_client(transport: str, server: RunningServer) -> Any:
    """An unmodified tritonclient client of ``transport`` connected to ``server``."""
    if transport == "http":
        import tritonclient.http as httpclient

        return httpclient.InferenceServerClient(server.address)
    raise ValueError(f"unknown transport {transport!r}")


def client_module(transport: str) -> Any:
    """The tritonclient module of ``transport`` (for InferInput, InferRequestedOutput)."""
    if transport == "http":
        import tritonclient.http as httpclient

        return httpclient
    raise ValueError(f"unknown transport {transport!r}")
