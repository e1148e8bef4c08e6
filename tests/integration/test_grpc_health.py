"""``grpc.health.v1.Health`` on the gRPC port, probed with grpcio-health-checking's stubs.

This is what Kubernetes' gRPC probes call: the server's health (service ""), each model's
(service = model name), NOT_FOUND for a name that is no model, and UNIMPLEMENTED for Watch.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
import tritonclient.grpc as grpcclient
from grpc_health.v1 import health_pb2, health_pb2_grpc

from shipyard.testing import RunningServer, identity_model, running_server, write_model
from shipyard.types import DataType

TIMEOUT_S = 10.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    repo = tmp_path_factory.mktemp("health")
    write_model(repo, "ident", identity_model(DataType.FP32))
    write_model(repo, "spare", identity_model(DataType.INT32))
    with running_server(repo) as running:
        yield running


def check(server: RunningServer, service: str) -> int:
    """The status a Health/Check call answers for ``service``."""
    with grpc.insecure_channel(server.grpc_address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=TIMEOUT_S)
        return int(response.status)


def test_server_health_is_serving(server: RunningServer) -> None:
    """Service "" (the server) answers SERVING once the models are loaded."""
    assert check(server, "") == health_pb2.HealthCheckResponse.SERVING


def test_model_health_is_serving(server: RunningServer) -> None:
    """A loaded model's name answers SERVING."""
    assert check(server, "ident") == health_pb2.HealthCheckResponse.SERVING


def test_unknown_service_is_not_found(server: RunningServer) -> None:
    """A name that is no model answers NOT_FOUND, as the health checking protocol says."""
    with pytest.raises(grpc.RpcError) as info:
        check(server, "no-such-model")
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert "no-such-model" in (info.value.details() or "")


def test_unloaded_model_is_not_serving(server: RunningServer) -> None:
    """A model unloaded through the repository API answers NOT_SERVING, SERVING once back."""
    client = grpcclient.InferenceServerClient(server.grpc_address)
    client.unload_model("spare")
    try:
        assert check(server, "spare") == health_pb2.HealthCheckResponse.NOT_SERVING
        # The server itself is as ready as /v2/health/ready says: an unload asked for is not
        # a failure.
        assert check(server, "") == health_pb2.HealthCheckResponse.SERVING
    finally:
        client.load_model("spare")
    assert check(server, "spare") == health_pb2.HealthCheckResponse.SERVING


def test_watch_is_unimplemented(server: RunningServer) -> None:
    """Watch answers UNIMPLEMENTED (clients then treat health checking as unsupported)."""
    with grpc.insecure_channel(server.grpc_address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        stream = stub.Watch(health_pb2.HealthCheckRequest(service=""), timeout=TIMEOUT_S)
        with pytest.raises(grpc.RpcError) as info:
            next(iter(stream))
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_draining_server_is_not_serving(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Once shutdown has begun the server answers NOT_SERVING (probes take it out of service)."""
    repo = tmp_path_factory.mktemp("draining")
    write_model(repo, "ident", identity_model(DataType.FP32))
    with running_server(repo) as running:
        assert running.server.service is not None
        running.server.service.start_draining()
        assert check(running, "") == health_pb2.HealthCheckResponse.NOT_SERVING
