"""Operating gRPC: request IDs in metadata, metrics per call, UNAVAILABLE with retry pushback
for overload, the server-wide limits, and a clean UNAVAILABLE for calls cut by the drain."""

from __future__ import annotations

import concurrent.futures
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest

from shipyard.protocol import grpc_service_pb2 as pb
from shipyard.protocol import grpc_service_pb2_grpc as pb_grpc
from shipyard.testing import (
    RunningServer,
    add_sub_model,
    running_server,
    slow_model,
    wait_until_blocking,
    write_model,
)

SLOW = "max_batch_size = 0\n[dynamic_batching]\nmax_queue_size = 1\n"


def _simple() -> pb.ModelInferRequest:
    row = np.ones((1, 16), np.float32).tobytes()
    request = pb.ModelInferRequest(model_name="simple")
    for name in ("INPUT0", "INPUT1"):
        request.inputs.add(name=name, datatype="FP32", shape=[1, 16])
        request.raw_input_contents.append(row)
    return request


def _slow() -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="slow")
    request.inputs.add(name="INPUT0", datatype="FP32", shape=[1, 4])
    request.raw_input_contents.append(np.zeros((1, 4), np.float32).tobytes())
    return request


def _stub(server: RunningServer) -> tuple[grpc.Channel, pb_grpc.GRPCInferenceServiceStub]:
    channel = grpc.insecure_channel(server.grpc_address)
    return channel, pb_grpc.GRPCInferenceServiceStub(channel)


def _call_all(server: RunningServer, count: int) -> list[grpc.RpcError | pb.ModelInferResponse]:
    """``count`` concurrent ModelInfer calls to ``slow``; each one's answer or error."""
    channel, stub = _stub(server)

    def call(_: int) -> grpc.RpcError | pb.ModelInferResponse:
        try:
            return stub.ModelInfer(_slow(), timeout=60)
        except grpc.RpcError as exc:
            return exc

    with channel, concurrent.futures.ThreadPoolExecutor(count) as pool:
        return list(pool.map(call, range(count)))


def test_request_id_metadata_is_echoed_and_calls_are_counted(repository: Path) -> None:
    """The client's x-request-id comes back in the trailing metadata; ModelInfer is counted
    per model with transport grpc and status code 0, and timed per stage."""
    write_model(repository, "simple", add_sub_model())
    with running_server(repository) as server:
        channel, stub = _stub(server)
        with channel:
            _, call = stub.ModelInfer.with_call(_simple(), metadata=[("x-request-id", "g-1")])
            missing = _simple()
            missing.model_name = "nope"
            with pytest.raises(grpc.RpcError) as error:
                stub.ModelInfer(missing)
        metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
    assert ("x-request-id", "g-1") in call.trailing_metadata()
    assert error.value.code() is grpc.StatusCode.NOT_FOUND
    assert (
        'shipyard_requests_total{code="0",model="simple",outcome="success",transport="grpc",'
        'version="1"} 1.0'
    ) in metrics
    assert (
        'shipyard_requests_total{code="5",model="",outcome="not_found",transport="grpc",'
        'version=""} 1.0'
    ) in metrics
    assert (
        'shipyard_stage_duration_seconds_count{model="simple",stage="decode",version="1"} 1.0'
    ) in metrics


def test_queue_full_is_unavailable_with_retry_pushback(repository: Path) -> None:
    """A full queue answers UNAVAILABLE, naming the queue, with grpc-retry-pushback-ms."""
    write_model(repository, "slow", slow_model(600), config=SLOW)
    with running_server(repository) as server:
        answers = _call_all(server, 6)
    refused = [a for a in answers if isinstance(a, grpc.RpcError)]
    assert refused
    assert len(refused) < len(answers)
    for error in refused:
        assert error.code() is grpc.StatusCode.UNAVAILABLE
        assert "queue full" in error.details()
        assert ("grpc-retry-pushback-ms", "1000") in error.trailing_metadata()


def test_server_wide_request_limit_covers_grpc(repository: Path) -> None:
    """max_inflight_requests refuses gRPC calls past it with UNAVAILABLE and pushback."""
    write_model(repository, "slow", slow_model(600), config="max_batch_size = 0\n")
    with running_server(repository, max_inflight_requests=1) as server:
        answers = _call_all(server, 4)
        metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
    refused = [a for a in answers if isinstance(a, grpc.RpcError)]
    assert refused
    assert all("max_inflight_requests" in e.details() for e in refused)
    assert all(e.code() is grpc.StatusCode.UNAVAILABLE for e in refused)
    assert f'shipyard_rejected_requests_total{{reason="inflight_requests"}} {len(refused)}.0' in (
        metrics
    )


def test_calls_cut_off_by_the_drain_are_unavailable(repository: Path) -> None:
    """Calls still queued when drain_timeout_s runs out end UNAVAILABLE with a reason."""
    write_model(repository, "slow", slow_model(1500), config="max_batch_size = 0\n")
    with running_server(repository, drain_timeout_s=1.0) as server:
        service = server.server.service
        assert service is not None
        batcher = service.registry.get("slow").batcher
        channel, stub = _stub(server)
        with channel, concurrent.futures.ThreadPoolExecutor(5) as pool:
            futures = [pool.submit(stub.ModelInfer, _slow(), timeout=60) for _ in range(5)]
            wait_until_blocking(lambda: batcher.queued == 4, "four calls wait in the queue")
            server.server.stop()
            errors = [f.exception(timeout=60) for f in futures]
    cut = [e for e in errors if e is not None]
    assert cut
    for error in cut:
        assert isinstance(error, grpc.RpcError)
        assert error.code() is grpc.StatusCode.UNAVAILABLE, error
        assert "shut down before the call finished" in error.details()
