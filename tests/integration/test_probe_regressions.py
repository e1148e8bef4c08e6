"""What the hostile probe of issue 11 answered with 500, now a clear 4xx or a correct answer.

Each case failed before the fix: a model name longer than a file name may be, an
``Inference-Header-Content-Length`` past Python's integer digit limit, ``"outputs": []``
(500 alone, 200 without outputs in a batch), a shape of more than 64 dimensions, and unload
with Triton's load-only ``config`` / ``file:`` parameters (501 where the docs said 400).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from shipyard.protocol import grpc_service_pb2 as pb
from shipyard.protocol import grpc_service_pb2_grpc as pb_grpc
from shipyard.testing import (
    RunningServer,
    add_sub_model,
    identity_model,
    running_server,
    write_model,
)
from shipyard.types import DataType

ROW = list(range(16))
#: A batch of two is run as soon as two requests are queued, never before (2 s delay).
PAIRED = "max_batch_size = 8\n[dynamic_batching]\nmax_queue_delay_us = 2000000\n"
PAIRED += "preferred_batch_sizes = [2]\n"


@pytest.fixture(scope="module")
def probe_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """``simple`` (add/sub), ``paired`` (batches of exactly two requests) and ``strings``."""
    repo = tmp_path_factory.mktemp("probe")
    write_model(repo, "simple", add_sub_model())
    write_model(repo, "paired", add_sub_model(), config=PAIRED)
    write_model(repo, "strings", identity_model(DataType.BYTES))
    with running_server(repo) as running:
        yield running


@pytest.fixture
def http(probe_server: RunningServer) -> Iterator[httpx.Client]:
    """An httpx client of the module's server."""
    with httpx.Client(base_url=probe_server.url, timeout=30) as client:
        yield client


@pytest.fixture
def stub(probe_server: RunningServer) -> Iterator[Any]:
    """The generated gRPC stub on a plain channel to the module's server."""
    channel = grpc.insecure_channel(probe_server.grpc_address)
    try:
        yield pb_grpc.GRPCInferenceServiceStub(channel)
    finally:
        channel.close()


def infer_body(**extra: Any) -> dict[str, Any]:
    """A good request to the add/sub model, plus ``extra`` fields."""
    inputs = [
        {"name": n, "shape": [1, 16], "datatype": "FP32", "data": ROW} for n in ("INPUT0", "INPUT1")
    ]
    return {"inputs": inputs, **extra}


def error_of(response: httpx.Response, status: int) -> str:
    """The ``{"error"}`` message of ``response``, which must have ``status``."""
    assert response.status_code == status, response.text
    payload = response.json()
    assert set(payload) == {"error"}, payload
    assert "Traceback" not in payload["error"]
    return str(payload["error"])


def assert_serves(http: httpx.Client) -> None:
    """A good request still gets both outputs."""
    response = http.post("/v2/models/simple/infer", json=infer_body())
    assert response.status_code == 200, response.text
    assert [o["name"] for o in response.json()["outputs"]] == ["OUTPUT0", "OUTPUT1"]


@pytest.mark.parametrize("action", ["load", "unload"])
def test_model_name_longer_than_a_file_name_is_400(http: httpx.Client, action: str) -> None:
    """A 256-character name is an invalid name (400), not an OSError; 255 is simply unknown."""
    message = error_of(http.post(f"/v2/repository/models/{'a' * 256}/{action}"), 400)
    assert "at most 255" in message
    assert len(message) < 200  # the name is not echoed in full
    assert "a" * 255 in error_of(http.post(f"/v2/repository/models/{'a' * 255}/{action}"), 404)
    assert_serves(http)


def test_model_name_longer_than_a_file_name_over_grpc(stub: Any) -> None:
    """Over gRPC the same name is INVALID_ARGUMENT with the same message."""
    for call, message in (
        (stub.RepositoryModelLoad, pb.RepositoryModelLoadRequest),
        (stub.RepositoryModelUnload, pb.RepositoryModelUnloadRequest),
    ):
        with pytest.raises(grpc.RpcError) as caught:
            call(message(model_name="a" * 4096), timeout=30)
        assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "at most 255" in caught.value.details()


@pytest.mark.parametrize("digits", [19, 4300, 5000])
def test_header_length_of_many_digits_is_400(http: httpx.Client, digits: int) -> None:
    """An Inference-Header-Content-Length of thousands of digits is a 400, not int()'s error."""
    response = http.post(
        "/v2/models/simple/infer",
        content=json.dumps(infer_body()).encode(),
        headers={"Inference-Header-Content-Length": "9" * digits},
    )
    message = error_of(response, 400)
    assert "Inference-Header-Content-Length" in message
    assert len(message) < 200
    assert_serves(http)


def test_header_length_of_many_digits_on_explain_is_400(http: httpx.Client) -> None:
    """/explain reads the same header the same way: thousands of digits are a 400."""
    response = http.post(
        "/v2/models/simple/explain",
        content=json.dumps(infer_body()).encode(),
        headers={"Inference-Header-Content-Length": "9" * 5000, "Content-Type": "application/json"},
    )
    assert "Inference-Header-Content-Length" in error_of(response, 400)
    assert_serves(http)


def test_leading_zeros_do_not_count_as_digits(http: httpx.Client) -> None:
    """5,000 digits that are zeros but the last still name a small, valid length."""
    body = json.dumps(infer_body()).encode()
    response = http.post(
        "/v2/models/simple/infer",
        content=body,
        headers={"Inference-Header-Content-Length": str(len(body)).zfill(5000)},
    )
    assert response.status_code == 200, response.text


def test_top_k_of_many_digits_is_400(http: httpx.Client) -> None:
    """A top_k query value of 5,000 digits is refused with 400 naming top_k."""
    response = http.post("/v2/models/simple/predict", params={"top_k": "7" * 5000}, content=b"x")
    assert "top_k" in error_of(response, 400)
    assert_serves(http)


def test_empty_outputs_list_returns_every_output(http: httpx.Client) -> None:
    """``"outputs": []`` asks for every output, as an omitted list does (Triton's answer)."""
    response = http.post("/v2/models/simple/infer", json=infer_body(outputs=[]))
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o["data"] for o in response.json()["outputs"]}
    assert outputs == {"OUTPUT0": [2 * v for v in ROW], "OUTPUT1": [0] * 16}


def test_empty_outputs_list_in_a_shared_batch(
    http: httpx.Client, probe_server: RunningServer
) -> None:
    """Batched with a request for one output, ``[]`` still gets both and the other gets one."""
    service = probe_server.server.service
    assert service is not None
    before = service.statistics("paired")[0].execution_count
    bodies = [infer_body(outputs=[]), infer_body(outputs=[{"name": "OUTPUT1"}])]
    with ThreadPoolExecutor(2) as pool:
        responses = list(pool.map(lambda b: http.post("/v2/models/paired/infer", json=b), bodies))
    assert [r.status_code for r in responses] == [200, 200], [r.text for r in responses]
    names = [[o["name"] for o in r.json()["outputs"]] for r in responses]
    assert names == [["OUTPUT0", "OUTPUT1"], ["OUTPUT1"]]
    assert service.statistics("paired")[0].execution_count == before + 1  # one batch of two


def test_empty_outputs_over_grpc_returns_every_output(stub: Any) -> None:
    """gRPC's empty ``outputs`` (indistinguishable from none) gets every output too."""
    request = pb.ModelInferRequest(model_name="simple")
    for name in ("INPUT0", "INPUT1"):
        tensor = request.inputs.add(name=name, datatype="FP32", shape=[1, 16])
        tensor.contents.fp32_contents.extend(ROW)
    response = stub.ModelInfer(request, timeout=30)
    assert [o.name for o in response.outputs] == ["OUTPUT0", "OUTPUT1"]


@pytest.mark.parametrize("dims", [64, 65, 1000])
def test_shape_of_more_than_64_dimensions_is_400(http: httpx.Client, dims: int) -> None:
    """Any rank gives a 400: past 64 the message says so rather than NumPy failing."""
    body = {"inputs": [{"name": "INPUT0", "shape": [1] * dims, "datatype": "FP32", "data": [1]}]}
    message = error_of(http.post("/v2/models/simple/infer", json=body), 400)
    assert "INPUT0" in message
    if dims > 64:
        assert "at most 64" in message
    assert_serves(http)


@pytest.mark.parametrize("parameter", ["config", "file:1/model.onnx"])
def test_unload_with_load_only_parameters_is_400(
    http: httpx.Client, stub: Any, parameter: str
) -> None:
    """Unload's ``config``/``file:`` are unknown parameters (400, as documented), not 501."""
    body = {"parameters": {parameter: "{}"}}
    message = error_of(http.post("/v2/repository/models/simple/unload", json=body), 400)
    assert f"unload: unknown parameter {parameter!r}" in message
    request = pb.RepositoryModelUnloadRequest(model_name="simple")
    request.parameters[parameter].string_param = "{}"
    with pytest.raises(grpc.RpcError) as caught:
        stub.RepositoryModelUnload(request, timeout=30)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert_serves(http)  # still loaded: nothing was unloaded


def test_load_with_config_is_still_501(http: httpx.Client) -> None:
    """Load's ``config`` is a Triton feature Shipyard lacks: 501, as documented."""
    body = {"parameters": {"config": "{}"}}
    assert "config" in error_of(http.post("/v2/repository/models/simple/load", json=body), 501)


def test_find_model_checks_the_length_before_the_disk(tmp_path: Path) -> None:
    """A name of 256 characters cannot be checked on disk, so the check comes first."""
    from shipyard.errors import InvalidInputError
    from shipyard.repository.layout import find_model

    with pytest.raises(InvalidInputError, match="at most 255"):
        find_model(tmp_path, "b" * 256)


# -- classes of input the fuzzers found (tests/fuzz, tests/adversarial/test_http1_blackbox.py) --


def nested(depth: int, leaf: str) -> str:
    """JSON text of ``leaf`` inside ``depth`` lists."""
    return "[" * depth + leaf + "]" * depth


@pytest.mark.parametrize("depth", [990, 1020])
def test_bytes_data_nested_a_thousand_deep(http: httpx.Client, depth: int) -> None:
    """BYTES data nested ~1,000 deep (JSON's limit is 1,024) is flattened without recursion:
    it was a RecursionError, answered 500."""
    data = nested(depth, '"a", "b", "c", "d"')
    body = (
        '{"inputs": [{"name": "INPUT0", "datatype": "BYTES", "shape": [1, 4], '
        f'"data": {data}}}]}}'
    )
    response = http.post("/v2/models/strings/infer", content=body.encode())
    assert response.status_code == 200, response.text
    assert response.json()["outputs"][0]["data"] == ["a", "b", "c", "d"]


@pytest.mark.parametrize("binary", [False, True])
def test_empty_shape_whose_other_dimensions_overflow_is_400(
    http: httpx.Client, binary: bool
) -> None:
    """[0, 55056, 55108, 55111, 55161] has no elements, but NumPy refuses to make it (found by
    the binary parser's fuzzer): a 400 naming the limit, JSON or binary, not a 500."""
    tensor: dict[str, Any] = {"name": "INPUT0", "datatype": "FP32"}
    tensor["shape"] = [0, 55056, 55108, 55111, 55161]
    if binary:
        tensor["parameters"] = {"binary_data_size": 0}
    else:
        tensor["data"] = []
    message = error_of(http.post("/v2/models/simple/infer", json={"inputs": [tensor]}), 400)
    assert "is empty but its other dimensions exceed" in message
    assert_serves(http)


@pytest.mark.parametrize(
    ("field", "where"),
    [
        ("shape", "shape must be a list of integers"),
        ("parameters", "'timeout'"),
        ("outputs", "'classification'"),
    ],
)
def test_deeply_nested_values_in_error_messages(http: httpx.Client, field: str, where: str) -> None:
    """A shape, timeout or classification nested 990 deep is refused with a short message:
    repr() of it was a RecursionError (a 500)."""
    value = nested(990, "1")
    if field == "shape":
        body = f'{{"inputs": [{{"name": "INPUT0", "datatype": "FP32", "shape": {value}}}]}}'
    elif field == "parameters":
        inputs = json.dumps(infer_body()["inputs"])
        body = f'{{"inputs": {inputs}, "parameters": {{"timeout": {value}}}}}'
    else:
        inputs = json.dumps(infer_body()["inputs"])
        output = f'{{"name": "OUTPUT0", "parameters": {{"classification": {value}}}}}'
        body = f'{{"inputs": {inputs}, "outputs": [{output}]}}'
    message = error_of(http.post("/v2/models/simple/infer", content=body.encode()), 400)
    assert where in message
    assert len(message) < 300


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ({"masks": "\u00b2"}, "masks must be an integer"),
        ({"masks": "9" * 5000}, "masks must be an integer"),
        ({"patch": "0" * 4999 + "x"}, "patch must be an integer"),
        ({"target": "9" * 5000, "input": "INPUT0"}, "is not a label of the output"),
    ],
)
def test_explain_query_numbers_are_400(
    http: httpx.Client, query: dict[str, str], fragment: str
) -> None:
    """/explain's query numbers: "²" and thousands of digits are a 400 (int() raised, a 500)."""
    response = http.post(
        "/v2/models/simple/explain",
        params=query,
        content=json.dumps(infer_body()).encode(),
        headers={"Content-Type": "application/json"},
    )
    message = error_of(response, 400)
    assert fragment in message
    assert len(message) < 300


def test_explain_deeply_nested_method_is_400(http: httpx.Client) -> None:
    """An explain parameter nested 990 deep is refused with a short message, not a 500."""
    inputs = json.dumps(infer_body()["inputs"])
    body = f'{{"inputs": {inputs}, "parameters": {{"method": {nested(990, "1")}}}}}'
    response = http.post(
        "/v2/models/simple/explain",
        content=body.encode(),
        headers={"Content-Type": "application/json"},
    )
    message = error_of(response, 400)
    assert "method must be occlusion or rise" in message
    assert len(message) < 300
