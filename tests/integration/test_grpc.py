"""gRPC-specific behaviour on a real server: contents forms, limits, deadlines, clients, batching.

The protocol cases both transports share live in the golden suite (test_golden.py); this file
holds what only gRPC has: typed vs raw contents, message size limits, call deadlines, the sync
and aio tritonclient.grpc clients, and gRPC sharing one event loop and batcher with HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import numpy.typing as npt
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as grpcaio
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from shipyard.config import ServerConfig
from shipyard.errors import ConfigError
from shipyard.protocol import grpc_service_pb2 as pb
from shipyard.protocol import grpc_service_pb2_grpc as pb_grpc
from shipyard.protocol.binary import array_from_raw
from shipyard.protocol.grpc import CONTENTS_FIELD
from shipyard.server.app import ShipyardServer
from shipyard.testing import (
    RunningServer,
    add_sub_model,
    identity_model,
    running_server,
    slow_model,
    wait_until,
    wait_until_blocking,
    write_model,
)
from shipyard.types import DataType

TYPED = [dt for dt in DataType if dt is not DataType.FP16]
WAIT_S = 10.0


def identity_name(datatype: DataType) -> str:
    """The identity model of ``datatype`` in the module's repository."""
    return f"identity_{datatype.value.lower()}"


def sample(datatype: DataType) -> npt.NDArray[Any]:
    """A 2x4 array of ``datatype`` (the identity models take [-1, 4])."""
    if datatype is DataType.BYTES:
        return np.array([b"", b"a", "é".encode(), b"xyz"] * 2, dtype=object).reshape(2, 4)
    if datatype is DataType.BOOL:
        return np.array([True, False, True, True] * 2).reshape(2, 4)
    dtype = datatype.numpy
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return np.array([info.min, 0, 1, info.max] * 2, dtype=dtype).reshape(2, 4)
    return np.array([-1.5, 0.0, 2.25, 1e3] * 2, dtype=dtype).reshape(2, 4)


@pytest.fixture(scope="module")
def grpc_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """Identity models of every datatype, add/sub, and a one-row identity of any width."""
    repo = tmp_path_factory.mktemp("grpc")
    for datatype in DataType:
        write_model(repo, identity_name(datatype), identity_model(datatype))
    write_model(repo, "simple", add_sub_model())
    write_model(repo, "wide", identity_model(DataType.FP32, [1, "n"]))
    with running_server(repo) as running:
        yield running


@contextlib.contextmanager
def raw_stub(address: str) -> Iterator[Any]:
    """Our generated stub on a plain channel, for requests tritonclient cannot build."""
    channel = grpc.insecure_channel(address)
    try:
        yield pb_grpc.GRPCInferenceServiceStub(channel)
    finally:
        channel.close()


def infer_input(name: str, array: npt.NDArray[Any], module: Any = grpcclient) -> Any:
    """A tritonclient InferInput holding ``array`` (raw contents)."""
    from tritonclient.utils import np_to_triton_dtype

    tensor = module.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
    tensor.set_data_from_numpy(array)
    return tensor


# -- tensor contents ------------------------------------------------------------------------


@pytest.mark.parametrize("datatype", TYPED, ids=str)
def test_typed_contents_for_every_datatype(grpc_server: RunningServer, datatype: DataType) -> None:
    """Typed contents are accepted for every datatype and answered in raw_output_contents."""
    array = sample(datatype)
    request = pb.ModelInferRequest(model_name=identity_name(datatype), id="t")
    tensor = request.inputs.add(name="INPUT0", datatype=datatype.value, shape=array.shape)
    getattr(tensor.contents, CONTENTS_FIELD[datatype]).extend(array.reshape(-1).tolist())
    with raw_stub(grpc_server.grpc_address) as stub:
        response = stub.ModelInfer(request, timeout=WAIT_S)
    assert response.id == "t"
    (output,) = response.outputs
    assert (output.name, output.datatype, list(output.shape)) == ("OUTPUT0", datatype.value, [2, 4])
    assert not output.HasField("contents")
    decoded = array_from_raw("OUTPUT0", datatype, [2, 4], response.raw_output_contents[0], 8)
    assert decoded.tolist() == array.tolist()


@pytest.mark.parametrize("datatype", list(DataType), ids=str)
def test_raw_contents_for_every_datatype(grpc_server: RunningServer, datatype: DataType) -> None:
    """tritonclient.grpc's raw contents round-trip every datatype, FP16 and BYTES included."""
    array = sample(datatype)
    client = grpcclient.InferenceServerClient(grpc_server.grpc_address)
    result = client.infer(identity_name(datatype), [infer_input("INPUT0", array)])
    output = result.as_numpy("OUTPUT0")
    assert output.dtype == (np.object_ if datatype is DataType.BYTES else datatype.numpy)
    assert output.tolist() == array.tolist()


def _rpc_error(call: Callable[[], Any]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value


def test_mixing_raw_and_typed_contents_is_invalid_argument(grpc_server: RunningServer) -> None:
    """A request with raw_input_contents and an input's typed contents is INVALID_ARGUMENT."""
    request = pb.ModelInferRequest(model_name="simple")
    ones = np.ones((1, 16), np.float32)
    request.inputs.add(name="INPUT0", datatype="FP32", shape=[1, 16])
    typed = request.inputs.add(name="INPUT1", datatype="FP32", shape=[1, 16])
    typed.contents.fp32_contents.extend(ones.reshape(-1).tolist())
    request.raw_input_contents.extend([ones.tobytes(), ones.tobytes()])
    with raw_stub(grpc_server.grpc_address) as stub:
        error = _rpc_error(lambda: stub.ModelInfer(request, timeout=WAIT_S))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "no input may set 'contents'" in error.details()


def test_raw_size_mismatch_is_invalid_argument(grpc_server: RunningServer) -> None:
    """A raw blob one byte short of shape x datatype is INVALID_ARGUMENT, naming the sizes."""
    request = pb.ModelInferRequest(model_name=identity_name(DataType.INT32))
    request.inputs.add(name="INPUT0", datatype="INT32", shape=[1, 4])
    request.raw_input_contents.append(b"\x00" * 15)
    with raw_stub(grpc_server.grpc_address) as stub:
        error = _rpc_error(lambda: stub.ModelInfer(request, timeout=WAIT_S))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "15 bytes of binary data" in error.details()
    assert "needs 16" in error.details()


def test_errors_carry_the_same_text_as_http(grpc_server: RunningServer) -> None:
    """A bad request gives the same message over gRPC as over HTTP, with the mapped status."""
    array = np.ones((1, 3), np.float32)
    messages = {}
    for module, address in (
        (grpcclient, grpc_server.grpc_address),
        (httpclient, grpc_server.address),
    ):
        client = module.InferenceServerClient(address)
        inputs = [infer_input("INPUT0", array, module), infer_input("INPUT1", array, module)]
        with pytest.raises(InferenceServerException) as info:
            client.infer("simple", inputs)
        messages[module.__name__] = (info.value.status(), info.value.message())
    grpc_status, grpc_text = messages["tritonclient.grpc"]
    http_status, http_text = messages["tritonclient.http"]
    assert (grpc_status, http_status) == ("StatusCode.INVALID_ARGUMENT", "400")
    assert grpc_text == http_text
    assert "shape [1, 3] does not match" in grpc_text


def test_naming_a_repository_is_unimplemented(grpc_server: RunningServer) -> None:
    """repository_name is refused (one repository per server), as Triton does."""
    with raw_stub(grpc_server.grpc_address) as stub:
        error = _rpc_error(
            lambda: stub.RepositoryIndex(
                pb.RepositoryIndexRequest(repository_name="other"), timeout=WAIT_S
            )
        )
    assert error.code() is grpc.StatusCode.UNIMPLEMENTED


# -- message size limits --------------------------------------------------------------------


def test_default_limit_is_far_above_grpc_4mb(grpc_server: RunningServer) -> None:
    """A 10 MB tensor goes through in both directions (gRPC's own default would refuse it)."""
    array = np.arange(2_500_000, dtype=np.float32).reshape(1, -1)
    client = grpcclient.InferenceServerClient(grpc_server.grpc_address)
    result = client.infer("wide", [infer_input("INPUT0", array)])
    assert np.array_equal(result.as_numpy("OUTPUT0"), array)


def test_configured_message_limit_is_resource_exhausted(tmp_path: Path) -> None:
    """Over grpc_max_message_bytes a request is RESOURCE_EXHAUSTED; under it, it is served."""
    repo = tmp_path / "repo"
    write_model(repo, "wide", identity_model(DataType.FP32, [1, "n"]))
    with running_server(repo, grpc_max_message_bytes=64 * 1024) as server:
        client = grpcclient.InferenceServerClient(server.grpc_address)
        small = np.ones((1, 4096), np.float32)  # 16 KiB
        assert np.array_equal(
            client.infer("wide", [infer_input("INPUT0", small)]).as_numpy("OUTPUT0"), small
        )
        large = np.ones((1, 32768), np.float32)  # 128 KiB
        with pytest.raises(InferenceServerException) as info:
            client.infer("wide", [infer_input("INPUT0", large)])
    assert info.value.status() == "StatusCode.RESOURCE_EXHAUSTED"


# -- every call, sync and aio ---------------------------------------------------------------


def test_sync_client_every_call(grpc_server: RunningServer) -> None:
    """Unmodified tritonclient.grpc (sync) works for every RPC Shipyard implements."""
    client = grpcclient.InferenceServerClient(grpc_server.grpc_address)
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("simple")
    assert client.is_model_ready("simple", "1")
    metadata = client.get_server_metadata(as_json=True)
    assert metadata["name"] == "shipyard"
    assert "model_repository" in metadata["extensions"]
    model = client.get_model_metadata("simple", as_json=True)
    assert [i["name"] for i in model["inputs"]] == ["INPUT0", "INPUT1"]
    config = client.get_model_config("simple", as_json=True)["config"]
    assert int(config["max_batch_size"]) == 32
    a = np.arange(16, dtype=np.float32).reshape(1, 16)
    outputs = [grpcclient.InferRequestedOutput("OUTPUT1")]
    result = client.infer(
        "simple", [infer_input("INPUT0", a), infer_input("INPUT1", a)], outputs=outputs
    )
    assert result.as_numpy("OUTPUT0") is None
    assert np.array_equal(result.as_numpy("OUTPUT1"), np.zeros_like(a))
    stats = client.get_inference_statistics("simple", as_json=True)["model_stats"]
    assert int(stats[0]["inference_count"]) >= 1
    names = [m["name"] for m in client.get_model_repository_index(as_json=True)["models"]]
    assert "simple" in names
    client.unload_model("wide")
    assert not client.is_model_ready("wide")
    client.load_model("wide")
    assert client.is_model_ready("wide")
    client.close()


def test_aio_client_every_call(grpc_server: RunningServer) -> None:
    """Unmodified tritonclient.grpc.aio works for every RPC Shipyard implements."""

    async def scenario() -> None:
        client = grpcaio.InferenceServerClient(grpc_server.grpc_address)
        try:
            assert await client.is_server_live()
            assert await client.is_server_ready()
            assert await client.is_model_ready("simple")
            metadata = await client.get_server_metadata(as_json=True)
            assert metadata["name"] == "shipyard"
            model = await client.get_model_metadata("simple", as_json=True)
            assert model["platform"]
            config = await client.get_model_config("simple", as_json=True)
            assert config["config"]["name"] == "simple"
            a = np.full((2, 16), 3, np.float32)
            inputs = [infer_input("INPUT0", a, grpcaio), infer_input("INPUT1", a, grpcaio)]
            result = await client.infer("simple", inputs, request_id="r1")
            assert np.array_equal(result.as_numpy("OUTPUT0"), a * 2)
            assert result.get_response().id == "r1"
            stats = await client.get_inference_statistics("simple", as_json=True)
            assert stats["model_stats"][0]["name"] == "simple"
            index = await client.get_model_repository_index(as_json=True)
            assert {m["name"] for m in index["models"]} >= {"simple", "wide"}
            await client.unload_model("wide")
            assert not await client.is_model_ready("wide")
            await client.load_model("wide")
            assert await client.is_model_ready("wide")
            with pytest.raises(InferenceServerException) as info:
                await client.get_model_metadata("no_such_model")
            assert info.value.status() == "StatusCode.NOT_FOUND"
        finally:
            await client.close()

    asyncio.run(asyncio.wait_for(scenario(), 60))


# -- a slow model: deadlines, health under load, batching with HTTP ----------------------------


def calibrated_iterations(seconds: float) -> int:
    """slow_model iterations that compute for about ``seconds`` on this machine (one thread)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    probe = 100
    session = ort.InferenceSession(
        slow_model(probe).SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    x = np.zeros((1, 4), np.float32)
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        session.run(None, {"INPUT0": x})
        best = min(best, time.perf_counter() - start)
    return max(probe, round(probe * seconds / best))


@pytest.fixture(scope="module")
def slow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server whose model ``slow`` computes for about a second per execution."""
    repo = tmp_path_factory.mktemp("slow")
    write_model(repo, "slow", slow_model(calibrated_iterations(1.0)))
    with running_server(repo) as running:
        yield running


def _batcher(server: RunningServer) -> Any:
    service = server.server.service
    assert service is not None
    return service.registry.get("slow").batcher


def _stats(client: Any) -> dict[str, Any]:
    entry: dict[str, Any] = client.get_inference_statistics("slow", as_json=True)["model_stats"][0]
    return entry


def test_slow_model_does_not_delay_server_live(slow_server: RunningServer) -> None:
    """While the model computes for ~1 s, ServerLive over gRPC answers in under 50 ms."""
    batcher = _batcher(slow_server)
    x = np.zeros((1, 4), np.float32)

    async def scenario() -> None:
        client = grpcaio.InferenceServerClient(slow_server.grpc_address)
        try:
            assert await client.is_server_live()  # the connection is up before timing
            running = asyncio.create_task(client.infer("slow", [infer_input("INPUT0", x, grpcaio)]))
            await wait_until(lambda: batcher.busy == 1, "the model to start")
            start = time.perf_counter()
            assert await client.is_server_live()
            elapsed = time.perf_counter() - start
            assert not running.done(), "the model finished before the check; nothing was proved"
            assert elapsed < 0.05, f"ServerLive took {elapsed * 1000:.1f} ms"
            await running
        finally:
            await client.close()

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_call_deadline_drops_the_queued_request(slow_server: RunningServer) -> None:
    """A call whose deadline passes while queued is dropped by the server, never run."""
    batcher = _batcher(slow_server)
    sync_client = grpcclient.InferenceServerClient(slow_server.grpc_address)
    before = _stats(sync_client)
    x = np.zeros((1, 4), np.float32)

    async def scenario() -> InferenceServerException:
        client = grpcaio.InferenceServerClient(slow_server.grpc_address)
        try:
            running = asyncio.create_task(client.infer("slow", [infer_input("INPUT0", x, grpcaio)]))
            await wait_until(lambda: batcher.busy == 1, "the model to start")
            with pytest.raises(InferenceServerException) as info:
                await client.infer("slow", [infer_input("INPUT0", x, grpcaio)], client_timeout=0.2)
            await running
            return info.value
        finally:
            await client.close()

    error = asyncio.run(asyncio.wait_for(scenario(), 60))
    after = _stats(sync_client)
    assert error.status() == "StatusCode.DEADLINE_EXCEEDED"
    # The server expired it itself (a failure in its statistics), and it never ran.
    assert (
        int(after["inference_stats"]["fail"].get("count", 0))
        - int(before["inference_stats"]["fail"].get("count", 0))
        == 1
    )
    assert int(after["execution_count"]) - int(before.get("execution_count", 0)) == 1


def test_cancelled_call_never_reaches_the_model(slow_server: RunningServer) -> None:
    """A queued call the client cancels (RST_STREAM) is dropped; the model never runs it."""
    batcher = _batcher(slow_server)
    sync_client = grpcclient.InferenceServerClient(slow_server.grpc_address)
    before = _stats(sync_client)
    x = np.zeros((1, 4), np.float32)

    async def scenario() -> None:
        client = grpcaio.InferenceServerClient(slow_server.grpc_address)
        try:
            running = asyncio.create_task(client.infer("slow", [infer_input("INPUT0", x, grpcaio)]))
            await wait_until(lambda: batcher.busy == 1, "the model to start")
            queued = asyncio.create_task(client.infer("slow", [infer_input("INPUT0", x, grpcaio)]))
            await wait_until(lambda: batcher.queued == 1, "the second call to queue")
            queued.cancel()
            await wait_until(lambda: batcher.queued == 0, "the server to drop the cancelled call")
            await running
        finally:
            await client.close()

    asyncio.run(asyncio.wait_for(scenario(), 60))
    after = _stats(sync_client)
    assert int(after["execution_count"]) - int(before.get("execution_count", 0)) == 1
    assert int(after["inference_count"]) - int(before.get("inference_count", 0)) == 1


def test_many_calls_multiplexed_on_one_connection(grpc_server: RunningServer) -> None:
    """300 concurrent calls on one channel each get their own answer back."""

    async def scenario() -> None:
        client = grpcaio.InferenceServerClient(grpc_server.grpc_address)
        try:
            arrays = [np.full((1, 1000 + i), i, np.float32) for i in range(300)]
            results = await asyncio.gather(
                *(client.infer("wide", [infer_input("INPUT0", a, grpcaio)]) for a in arrays)
            )
            for array, result in zip(arrays, results, strict=True):
                assert np.array_equal(result.as_numpy("OUTPUT0"), array)
        finally:
            await client.close()

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_http_and_grpc_requests_are_batched_together(slow_server: RunningServer) -> None:
    """Requests queued from HTTP and gRPC run as one batch of the same batcher."""
    batcher = _batcher(slow_server)
    sync_client = grpcclient.InferenceServerClient(slow_server.grpc_address)
    before = _stats(sync_client)
    x = np.zeros((1, 4), np.float32)

    def http_infer() -> npt.NDArray[Any]:
        client = httpclient.InferenceServerClient(slow_server.address, network_timeout=60)
        result: npt.NDArray[Any] = client.infer(
            "slow", [infer_input("INPUT0", x + 2, httpclient)]
        ).as_numpy("OUTPUT0")
        return result

    async def scenario() -> list[Any]:
        client = grpcaio.InferenceServerClient(slow_server.grpc_address)
        loop = asyncio.get_running_loop()
        try:
            first = asyncio.create_task(client.infer("slow", [infer_input("INPUT0", x, grpcaio)]))
            await wait_until(lambda: batcher.busy == 1, "the model to start")
            by_grpc = asyncio.create_task(
                client.infer("slow", [infer_input("INPUT0", x + 1, grpcaio)])
            )
            by_http = loop.run_in_executor(None, http_infer)
            await wait_until(lambda: batcher.queued == 2, "both requests to queue")
            return list(await asyncio.gather(first, by_grpc, by_http))
        finally:
            await client.close()

    _, grpc_result, http_result = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert np.array_equal(grpc_result.as_numpy("OUTPUT0"), x + 1)
    assert np.array_equal(http_result, x + 2)
    after = _stats(sync_client)
    assert int(after["execution_count"]) - int(before.get("execution_count", 0)) == 2
    assert int(after["inference_count"]) - int(before.get("inference_count", 0)) == 3
    sizes = {int(b["batch_size"]) for b in after.get("batch_stats", [])}
    assert 2 in sizes


# -- wiring ---------------------------------------------------------------------------------


def test_stop_drains_in_flight_grpc_calls(tmp_path: Path) -> None:
    """Stopping the server lets an in-flight gRPC inference finish, then refuses new calls."""
    repo = tmp_path / "repo"
    write_model(repo, "slow", slow_model(calibrated_iterations(0.5)))
    x = np.ones((1, 4), np.float32)
    results: dict[str, Any] = {}
    with running_server(repo) as server:
        client = grpcclient.InferenceServerClient(server.grpc_address)
        batcher = _batcher(server)

        def call() -> None:
            try:
                results["out"] = client.infer("slow", [infer_input("INPUT0", x)]).as_numpy(
                    "OUTPUT0"
                )
            except InferenceServerException as exc:
                results["error"] = exc

        worker = threading.Thread(target=call)
        worker.start()
        wait_until_blocking(lambda: batcher.busy == 1, "the model to start", WAIT_S)
        server.server.stop()
        worker.join(WAIT_S)
        assert not worker.is_alive()
        with pytest.raises(InferenceServerException):
            client.is_server_live(client_timeout=2)
    assert "error" not in results, results.get("error")
    assert np.array_equal(results["out"], x)


def test_grpc_port_in_use_is_a_config_error(tmp_path: Path) -> None:
    """A gRPC port another socket holds fails startup with a ConfigError naming the flag."""
    repo = tmp_path / "repo"
    write_model(repo, "simple", add_sub_model())
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    try:
        port = holder.getsockname()[1]
        config = ServerConfig(repository=repo, http_port=0, grpc_port=port)
        with pytest.raises(ConfigError, match="--grpc-port"):
            asyncio.run(asyncio.wait_for(ShipyardServer(config).serve(), 60))
    finally:
        holder.close()


def test_grpc_can_be_turned_off(tmp_path: Path) -> None:
    """grpc=False (grpc_port 0 in production) serves HTTP only and reports no gRPC URL."""
    repo = tmp_path / "repo"
    write_model(repo, "simple", add_sub_model())
    with running_server(repo, grpc=False) as server:
        assert server.info.grpc_url is None
        with pytest.raises(RuntimeError, match="without gRPC"):
            _ = server.grpc_address
        assert httpclient.InferenceServerClient(server.address).is_server_live()


def test_server_info_reports_the_grpc_url(grpc_server: RunningServer) -> None:
    """ServerInfo carries grpc://host:port of a listening gRPC server on 127.0.0.1."""
    info = grpc_server.info
    assert info.grpc_port
    assert info.grpc_url == f"grpc://127.0.0.1:{info.grpc_port}"
    assert grpc_server.grpc_address == f"127.0.0.1:{info.grpc_port}"
    assert info.grpc_port != info.http_port
