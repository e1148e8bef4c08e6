"""Unmodified tritonclient.http against a real server: every JSON/binary combination."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from shipyard.testing import (
    RunningServer,
    add_sub_model,
    identity_model,
    running_server,
    write_model,
)
from shipyard.types import DataType


@pytest.fixture(scope="module")
def triton_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server with Triton's ``simple`` add/sub model, a BYTES and an FP16 identity."""
    repo = tmp_path_factory.mktemp("tritonclient")
    write_model(repo, "simple", add_sub_model())
    write_model(repo, "strings", identity_model(DataType.BYTES))
    write_model(repo, "half", identity_model(DataType.FP16))
    write_model(repo, "spare", identity_model(DataType.INT32))
    with running_server(repo) as running:
        yield running


@pytest.fixture
def client(triton_server: RunningServer) -> Iterator[Any]:
    """A tritonclient.http client of the module's server."""
    value = httpclient.InferenceServerClient(triton_server.address)
    try:
        yield value
    finally:
        value.close()


def simple_inputs(binary: bool) -> tuple[list[Any], Any, Any]:
    """INPUT0 = 0..15, INPUT1 = ones, for the ``simple`` model."""
    a = np.arange(16, dtype=np.float32).reshape(1, 16)
    b = np.ones((1, 16), dtype=np.float32)
    inputs = [
        httpclient.InferInput("INPUT0", [1, 16], "FP32"),
        httpclient.InferInput("INPUT1", [1, 16], "FP32"),
    ]
    inputs[0].set_data_from_numpy(a, binary_data=binary)
    inputs[1].set_data_from_numpy(b, binary_data=binary)
    return inputs, a, b


@pytest.mark.parametrize("input_binary", [False, True], ids=["in-json", "in-binary"])
@pytest.mark.parametrize("output_binary", [False, True], ids=["out-json", "out-binary"])
def test_infer_json_and_binary(client: Any, input_binary: bool, output_binary: bool) -> None:
    """Inputs and outputs work as JSON or binary, in any combination, encoded as asked."""
    inputs, a, b = simple_inputs(input_binary)
    outputs = [
        httpclient.InferRequestedOutput("OUTPUT0", binary_data=output_binary),
        httpclient.InferRequestedOutput("OUTPUT1", binary_data=output_binary),
    ]
    result = client.infer("simple", inputs, outputs=outputs, request_id="r1")
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)
    response = result.get_response()
    assert response["id"] == "r1"
    assert response["model_name"] == "simple"
    for output in response["outputs"]:
        assert ("data" in output) is not output_binary
        if output_binary:
            assert output["parameters"]["binary_data_size"] == 64


def test_mixed_output_encodings(client: Any) -> None:
    """One output as binary and the other as JSON in the same response."""
    inputs, a, b = simple_inputs(binary=True)
    outputs = [
        httpclient.InferRequestedOutput("OUTPUT0", binary_data=True),
        httpclient.InferRequestedOutput("OUTPUT1", binary_data=False),
    ]
    result = client.infer("simple", inputs, outputs=outputs)
    first, second = result.get_response()["outputs"]
    assert "data" not in first
    assert second["data"] == (a - b).reshape(-1).tolist()
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)


def test_no_requested_outputs_come_back_binary(client: Any) -> None:
    """Without requested outputs tritonclient asks for binary_data_output and gets every output."""
    inputs, a, b = simple_inputs(binary=False)
    result = client.infer("simple", inputs)
    names = [o["name"] for o in result.get_response()["outputs"]]
    assert names == ["OUTPUT0", "OUTPUT1"]
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_bytes_roundtrip(client: Any, binary: bool) -> None:
    """BYTES (text, empty, multi-byte UTF-8) round-trip as JSON strings and as binary."""
    values = np.array([[b"hello", b"", "na\u00efve".encode(), b"x" * 1000]], dtype=np.object_)
    tensor = httpclient.InferInput("INPUT0", [1, 4], "BYTES")
    tensor.set_data_from_numpy(values, binary_data=binary)
    output = httpclient.InferRequestedOutput("OUTPUT0", binary_data=binary)
    result = client.infer("strings", [tensor], outputs=[output])
    got = result.as_numpy("OUTPUT0")
    assert got.shape == (1, 4)
    as_bytes = [v.encode() if isinstance(v, str) else v for v in got.reshape(-1)]
    assert as_bytes == list(values.reshape(-1))


def test_fp16_binary_roundtrip_and_json_refused(client: Any) -> None:
    """FP16 works as binary; as JSON numbers the server refuses it with 400."""
    values = np.array([[0.5, -2.0, 65504.0, 1e-3]], dtype=np.float16)
    tensor = httpclient.InferInput("INPUT0", [1, 4], "FP16")
    tensor.set_data_from_numpy(values, binary_data=True)
    result = client.infer("half", [tensor])
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), values)
    tensor.set_data_from_numpy(values, binary_data=False)
    with pytest.raises(InferenceServerException) as caught:
        client.infer("half", [tensor])
    assert caught.value.status() == "400"
    assert "FP16" in (caught.value.message() or "")


def test_health_and_metadata(client: Any) -> None:
    """Health, server metadata, model metadata and config through tritonclient.http."""
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("simple")
    assert not client.is_model_ready("simple", "2")
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    metadata = client.get_model_metadata("strings")
    assert metadata["inputs"] == [{"name": "INPUT0", "datatype": "BYTES", "shape": [-1, 4]}]
    config = client.get_model_config("simple")
    assert config["max_batch_size"] == 32
    assert [i["data_type"] for i in config["input"]] == ["TYPE_FP32", "TYPE_FP32"]


def test_repository_index_load_unload(client: Any) -> None:
    """Index, unload and load through tritonclient.http."""
    index = {row["name"]: row for row in client.get_model_repository_index()}
    assert index["spare"]["state"] == "READY"
    client.unload_model("spare")
    assert not client.is_model_ready("spare")
    index = {row["name"]: row for row in client.get_model_repository_index()}
    assert index["spare"]["state"] == "UNAVAILABLE"
    client.load_model("spare")
    assert client.is_model_ready("spare")
    with pytest.raises(InferenceServerException) as caught:
        client.load_model("spare", config='{"max_batch_size": 4}')
    assert caught.value.status() == "501"


def test_statistics(client: Any) -> None:
    """Statistics through tritonclient.http count the requests served."""
    before = client.get_inference_statistics("strings")["model_stats"][0]
    tensor = httpclient.InferInput("INPUT0", [2, 4], "BYTES")
    tensor.set_data_from_numpy(np.full((2, 4), b"s", dtype=np.object_))
    for _ in range(3):
        client.infer("strings", [tensor])
    after = client.get_inference_statistics("strings")["model_stats"][0]
    assert after["inference_count"] - before["inference_count"] == 6
    assert after["execution_count"] - before["execution_count"] == 3
    assert (
        after["inference_stats"]["success"]["count"] - before["inference_stats"]["success"]["count"]
        == 3
    )
    every = client.get_inference_statistics()["model_stats"]
    assert {"simple", "strings", "half", "spare"} <= {s["name"] for s in every}


def test_request_timeout_parameter_is_accepted(client: Any) -> None:
    """tritonclient's ``timeout`` (µs) parameter is honoured without error when there is time."""
    inputs, a, b = simple_inputs(binary=True)
    result = client.infer("simple", inputs, timeout=10_000_000)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
