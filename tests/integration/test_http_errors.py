"""Bad input over raw HTTP: every case gets the right status, a clear JSON error, no traceback,
and the server keeps answering good requests afterwards."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import orjson
import pytest

from shipyard.testing import (
    RunningServer,
    add_sub_model,
    identity_model,
    running_server,
    write_model,
)
from shipyard.types import DataType

GOOD_ROW = list(range(16))


def tensor(name: str, shape: Any, datatype: str = "FP32", data: Any = None, **extra: Any) -> Any:
    """A ``$request_input`` (``data`` defaults to ``product(shape)`` ones)."""
    if data is None and "parameters" not in extra:
        data = [1] * int(np.prod(shape))
    item: dict[str, Any] = {"name": name, "shape": shape, "datatype": datatype, **extra}
    if data is not None:
        item["data"] = data
    return item


def simple_inputs(**overrides: Any) -> list[Any]:
    """Good INPUT0/INPUT1 for the add/sub model, with per-input overrides by name."""
    base = {"INPUT0": tensor("INPUT0", [1, 16]), "INPUT1": tensor("INPUT1", [1, 16])}
    base.update(overrides)
    return list(base.values())


def body(**fields: Any) -> bytes:
    """A JSON inference request body."""
    return json.dumps(fields).encode()


@pytest.fixture(scope="module")
def errors_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server with add/sub, INT8/FP16/BYTES identities, a fixed-shape model and a broken one."""
    repo = tmp_path_factory.mktemp("errors")
    write_model(repo, "simple", add_sub_model())
    write_model(repo, "int8", identity_model(DataType.INT8))
    write_model(repo, "half", identity_model(DataType.FP16))
    write_model(repo, "strings", identity_model(DataType.BYTES))
    write_model(repo, "fixed", identity_model(DataType.FP32, shape=[2, 3]))
    write_model(repo, "broken", b"\x08\x01garbage")
    with running_server(repo) as running:
        yield running


@pytest.fixture
def http(errors_server: RunningServer) -> Iterator[httpx.Client]:
    """An httpx client of the module's server."""
    with httpx.Client(base_url=errors_server.url, timeout=30) as client:
        yield client


def assert_clear_error(response: httpx.Response, status: int, *fragments: str) -> str:
    """``response`` has ``status`` and a JSON ``{"error": ...}`` containing ``fragments``."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    payload = response.json()
    assert set(payload) == {"error"}, payload
    message = payload["error"]
    assert isinstance(message, str)
    assert message
    for fragment in fragments:
        assert fragment in message, message
    assert "Traceback" not in response.text
    return message


def assert_still_serves(client: httpx.Client) -> None:
    """A good request to the add/sub model still succeeds."""
    response = client.post(
        "/v2/models/simple/infer",
        content=body(inputs=[tensor(n, [1, 16], data=GOOD_ROW) for n in ("INPUT0", "INPUT1")]),
    )
    assert response.status_code == 200, response.text
    assert response.json()["outputs"][0]["data"] == [2 * v for v in GOOD_ROW]


def _blob(values: Any, dtype: Any) -> bytes:
    return np.asarray(values, dtype=dtype).tobytes()


_BINARY_OK = tensor("INPUT1", [1, 16], parameters={"binary_data_size": 64})
_BYTES_HEADER = {"inputs": [tensor("INPUT0", [1, 4], "BYTES", parameters={"binary_data_size": 13})]}

#: (model, body, extra headers, status, fragments the error must contain)
JSON_CASES = [
    pytest.param("simple", b'{"inputs": [', {}, 400, ["simple", "not valid JSON"], id="malformed"),
    pytest.param("simple", b"", {}, 400, ["simple", "not valid JSON"], id="empty-body"),
    pytest.param("simple", b"[1, 2]", {}, 400, ["simple", "JSON object"], id="not-an-object"),
    pytest.param("simple", body(inputs=[]), {}, 400, ["simple", "inputs"], id="no-inputs"),
    pytest.param("simple", body(inputs="x"), {}, 400, ["simple", "inputs"], id="inputs-not-list"),
    pytest.param(
        "simple",
        body(inputs=[tensor("INPUT0", [1, 16])]),
        {},
        400,
        ["simple", "missing input", "INPUT1"],
        id="missing-input",
    ),
    pytest.param(
        "simple",
        body(inputs=[*simple_inputs(), tensor("INPUT9", [1, 16])]),
        {},
        400,
        ["simple", "unknown input", "INPUT9"],
        id="unknown-input",
    ),
    pytest.param(
        "simple",
        body(inputs=[*simple_inputs(), tensor("INPUT0", [1, 16])]),
        {},
        400,
        ["simple", "INPUT0", "twice"],
        id="duplicated-input",
    ),
    pytest.param(
        "simple",
        body(inputs=[{"shape": [1, 16], "datatype": "FP32", "data": GOOD_ROW}]),
        {},
        400,
        ["simple", "name"],
        id="input-without-name",
    ),
    pytest.param(
        "simple",
        body(inputs=simple_inputs(INPUT0=tensor("INPUT0", [1, 16], "INT32"))),
        {},
        400,
        ["simple", "INPUT0", "INT32", "FP32"],
        id="wrong-datatype",
    ),
    pytest.param(
        "simple",
        body(inputs=simple_inputs(INPUT0=tensor("INPUT0", [1, 16], "FLOAT32"))),
        {},
        400,
        ["simple", "INPUT0", "FLOAT32"],
        id="unknown-datatype",
    ),
    pytest.param(
        "simple",
        body(inputs=simple_inputs(INPUT0=tensor("INPUT0", [16]))),
        {},
        400,
        ["simple", "INPUT0", "[16]", "[-1, 16]"],
        id="rank-mismatch",
    ),
    pytest.param(
        "simple",
        body(inputs=simple_inputs(INPUT0=tensor("INPUT0", [1, 8]))),
        {},
        400,
        ["simple", "INPUT0", "[1, 8]"],
        id="fixed-dim-mismatch",
    ),
    pytest.param(
        "fixed",
        body(inputs=[tensor("INPUT0", [3, 2])]),
        {},
        400,
        ["fixed", "INPUT0", "[3, 2]", "[2, 3]"],
        id="fixed-shape-model-mismatch",
    ),
    pytest.param(
        "simple",
        body(inputs=simple_inputs(INPUT0=tensor("INPUT0", [1, 16], data=[1.0] * 15))),
        {},
        400,
        ["INPUT0", "16 elements", "15"],
        id="too-few-elements",
    ),
    pytest.param(
        "simple",
        body(inputs=simple_inputs(INPUT0=tensor("INPUT0", [1, 16], data=[[1.0] * 16] * 2))),
        {},
        400,
        ["INPUT0", "16 elements", "32"],
        id="too-many-elements",
    ),
    pytest.param(
        "simple",
        body(inputs=simple_inputs(INPUT0=tensor("INPUT0", [2, 8], data=[[1.0] * 8, [1.0] * 7]))),
        {},
        400,
        ["INPUT0"],
        id="ragged-data",
    ),
    pytest.param(
        "simple",
        body(inputs=simple_inputs(INPUT0=tensor("INPUT0", [1, 16], data=["a"] * 16))),
        {},
        400,
        ["INPUT0", "FP32", "numbers"],
        id="non-numeric",
    ),
    pytest.param(
        "simple",
        body(inputs=simple_inputs(INPUT0=tensor("INPUT0", [1, 16], data=[True] * 16))),
        {},
        400,
        ["INPUT0", "FP32", "numbers"],
        id="booleans-for-floats",
    ),
    pytest.param(
        "simple",
        body(inputs=simple_inputs(INPUT0=tensor("INPUT0", [1, 16], data=[1e39] * 16))),
        {},
        400,
        ["INPUT0", "out of range", "FP32"],
        id="fp32-out-of-range",
    ),
    pytest.param(
        "int8",
        body(inputs=[tensor("INPUT0", [1, 4], "INT8", data=[1, 2, 3, 128])]),
        {},
        400,
        ["INPUT0", "out of range", "INT8"],
        id="int8-out-of-range",
    ),
    pytest.param(
        "int8",
        body(inputs=[tensor("INPUT0", [1, 4], "INT8", data=[1, 2, 3, 2**70])]),
        {},
        400,
        ["INPUT0", "INT8"],
        id="int-beyond-64-bits",
    ),
    pytest.param(
        "int8",
        body(inputs=[tensor("INPUT0", [1, 4], "INT8", data=[1, 2, 3, 1.5])]),
        {},
        400,
        ["INPUT0", "integers"],
        id="float-for-int",
    ),
    pytest.param(
        "int8",
        body(inputs=[tensor("INPUT0", [1, 4], "INT8", data=[1, 2, 3, None])]),
        {},
        400,
        ["INPUT0"],
        id="null-element",
    ),
    pytest.param(
        "simple",
        body(inputs=simple_inputs(INPUT0=tensor("INPUT0", [-1, 16], data=GOOD_ROW))),
        {},
        400,
        ["INPUT0", "negative"],
        id="negative-dim",
    ),
    pytest.param(
        "simple",
        body(inputs=simple_inputs(INPUT0=tensor("INPUT0", [1e12], data=[1.0]))),
        {},
        400,
        ["INPUT0", "shape"],
        id="float-dim",
    ),
    pytest.param(
        "simple",
        body(inputs=simple_inputs(INPUT0=tensor("INPUT0", [1000000000000], data=[1.0]))),
        {},
        400,
        ["INPUT0", "max_tensor_elements"],
        id="absurd-dim",
    ),
    pytest.param(
        "simple",
        body(inputs=simple_inputs(INPUT0=tensor("INPUT0", [2**32, 2**32], data=[1.0]))),
        {},
        400,
        ["INPUT0", "max_tensor_elements"],
        id="dims-overflowing-64-bits",
    ),
    pytest.param(
        "simple",
        b'{"inputs": [{"name": "INPUT0", "shape": [100000000000000000000000], '
        b'"datatype": "FP32", "data": [1]}]}',
        {},
        400,
        ["INPUT0", "shape"],
        id="dim-beyond-uint64",
    ),
    pytest.param(
        "simple",
        body(inputs=simple_inputs(INPUT0=tensor("INPUT0", "16", data=GOOD_ROW))),
        {},
        400,
        ["INPUT0", "shape"],
        id="shape-not-a-list",
    ),
    pytest.param(
        "simple",
        body(inputs=[tensor(n, [0, 16], data=[]) for n in ("INPUT0", "INPUT1")]),
        {},
        400,
        ["simple", "batch size 0"],
        id="empty-batch",
    ),
    pytest.param(
        "simple",
        body(
            inputs=[
                tensor("INPUT0", [33, 16], data=[1.0] * 33 * 16),
                tensor("INPUT1", [33, 16], data=[1.0] * 33 * 16),
            ]
        ),
        {},
        400,
        ["simple", "33", "max_batch_size"],
        id="batch-over-max",
    ),
    pytest.param(
        "half",
        body(inputs=[tensor("INPUT0", [1, 4], "FP16", data=[1.0, 2.0, 3.0, 4.0])]),
        {},
        400,
        ["INPUT0", "FP16", "binary"],
        id="fp16-as-json",
    ),
    pytest.param(
        "strings",
        body(inputs=[tensor("INPUT0", [1, 4], "BYTES", data=["a", "b", 3, "d"])]),
        {},
        400,
        ["INPUT0", "strings"],
        id="bytes-not-strings",
    ),
    pytest.param(
        "simple",
        body(id=42, inputs=simple_inputs()),
        {},
        400,
        ["simple", "'id'"],
        id="id-not-a-string",
    ),
    pytest.param(
        "simple",
        body(parameters=[1], inputs=simple_inputs()),
        {},
        400,
        ["simple", "parameters"],
        id="parameters-not-an-object",
    ),
    pytest.param(
        "simple",
        body(parameters={"timeout": "soon"}, inputs=simple_inputs()),
        {},
        400,
        ["simple", "timeout"],
        id="timeout-not-an-integer",
    ),
    pytest.param(
        "simple",
        body(parameters={"timeout": -5}, inputs=simple_inputs()),
        {},
        400,
        ["simple", "timeout"],
        id="timeout-negative",
    ),
    pytest.param(
        "simple",
        body(inputs=simple_inputs(), outputs=[{"name": "OUTPUT7"}]),
        {},
        400,
        ["simple", "OUTPUT7"],
        id="unknown-output",
    ),
    pytest.param(
        "simple",
        body(inputs=simple_inputs(), outputs=[{"name": "OUTPUT0"}, {"name": "OUTPUT0"}]),
        {},
        400,
        ["simple", "OUTPUT0", "twice"],
        id="duplicated-output",
    ),
    pytest.param(
        "simple",
        body(inputs=simple_inputs(), outputs={"name": "OUTPUT0"}),
        {},
        400,
        ["simple", "outputs"],
        id="outputs-not-a-list",
    ),
    pytest.param(
        "simple",
        body(
            inputs=simple_inputs(),
            outputs=[{"name": "OUTPUT0", "parameters": {"classification": 0}}],
        ),
        {},
        400,
        ["simple", "OUTPUT0", "classification"],
        id="classification-not-positive",
    ),
    pytest.param(
        "simple",
        body(inputs=simple_inputs(INPUT1=_BINARY_OK)),
        {},
        400,
        ["simple"],
        id="binary-without-header-length",
    ),
    pytest.param(
        "simple",
        body(inputs=simple_inputs()),
        {"Inference-Header-Content-Length": "abc"},
        400,
        ["Inference-Header-Content-Length", "abc"],
        id="header-length-not-a-number",
    ),
    pytest.param(
        "simple",
        body(inputs=simple_inputs()),
        {"Inference-Header-Content-Length": "100000"},
        400,
        ["simple", "Inference-Header-Content-Length", "100000"],
        id="header-length-past-body",
    ),
    pytest.param(
        "simple",
        body(inputs=simple_inputs(INPUT1=_BINARY_OK)) + _blob([1] * 15, np.float32),
        {
            "Inference-Header-Content-Length": str(
                len(body(inputs=simple_inputs(INPUT1=_BINARY_OK)))
            )
        },
        400,
        ["simple", "INPUT1", "binary_data_size 64"],
        id="binary-size-past-body",
    ),
    pytest.param(
        "simple",
        body(
            inputs=simple_inputs(
                INPUT1=tensor("INPUT1", [1, 16], parameters={"binary_data_size": 60})
            )
        )
        + _blob([1] * 15, np.float32),
        {
            "Inference-Header-Content-Length": str(
                len(
                    body(
                        inputs=simple_inputs(
                            INPUT1=tensor("INPUT1", [1, 16], parameters={"binary_data_size": 60})
                        )
                    )
                )
            )
        },
        400,
        ["INPUT1", "60 bytes", "64"],
        id="binary-size-not-shape-times-itemsize",
    ),
    pytest.param(
        "simple",
        body(inputs=simple_inputs(INPUT1=_BINARY_OK)) + _blob([1] * 17, np.float32),
        {
            "Inference-Header-Content-Length": str(
                len(body(inputs=simple_inputs(INPUT1=_BINARY_OK)))
            )
        },
        400,
        ["simple", "4 bytes", "no input claims them"],
        id="binary-bytes-left-over",
    ),
    pytest.param(
        "simple",
        body(
            inputs=simple_inputs(
                INPUT1=tensor("INPUT1", [1, 16], data=GOOD_ROW, parameters={"binary_data_size": 64})
            )
        ),
        {},
        400,
        ["simple", "INPUT1", "both"],
        id="data-and-binary",
    ),
    pytest.param(
        "simple",
        body(
            inputs=simple_inputs(
                INPUT1=tensor("INPUT1", [1, 16], parameters={"binary_data_size": -4})
            )
        ),
        {"Inference-Header-Content-Length": "0"},
        400,
        ["simple"],
        id="binary-size-negative",
    ),
    pytest.param(
        "strings",
        orjson.dumps(_BYTES_HEADER)
        + struct.pack("<I", 1)
        + b"a"
        + struct.pack("<I", 100)
        + b"bcdefgh"[:4],
        {"Inference-Header-Content-Length": str(len(orjson.dumps(_BYTES_HEADER)))},
        400,
        ["INPUT0", "BYTES"],
        id="bytes-element-length-past-end",
    ),
]


@pytest.mark.parametrize(("model", "content", "headers", "status", "fragments"), JSON_CASES)
def test_bad_infer_request(
    http: httpx.Client,
    model: str,
    content: bytes,
    headers: dict[str, str],
    status: int,
    fragments: list[str],
) -> None:
    """A malformed inference request gets a clear JSON error and the server keeps serving."""
    response = http.post(f"/v2/models/{model}/infer", content=content, headers=headers)
    assert_clear_error(response, status, *fragments)
    assert_still_serves(http)


@pytest.mark.parametrize(
    ("path", "status", "fragments"),
    [
        pytest.param("/v2/models/nope/infer", 404, ["nope"], id="unknown-model"),
        pytest.param("/v2/models/simple/versions/7/infer", 404, ["simple", "7"], id="no-version"),
        pytest.param(
            "/v2/models/simple/versions/latest/infer", 404, ["simple", "latest"], id="bad-version"
        ),
        pytest.param("/v2/models/broken/infer", 503, ["broken", "not ready"], id="not-ready"),
        pytest.param("/v2/models/nope", 404, ["nope"], id="unknown-model-metadata"),
        pytest.param("/v2/models/nope/ready", 404, ["nope"], id="unknown-model-ready"),
        pytest.param("/v2/models/broken", 503, ["broken", "not ready"], id="not-ready-metadata"),
        pytest.param("/v2/nothing/here", 404, ["/v2/nothing/here"], id="unknown-route"),
    ],
)
def test_unknown_or_unavailable_model(
    http: httpx.Client, path: str, status: int, fragments: list[str]
) -> None:
    """Unknown models, versions and routes are 404; a model that failed to load is 503."""
    if path.endswith("/infer"):
        response = http.post(path, content=body(inputs=simple_inputs()))
    else:
        response = http.get(path)
    assert_clear_error(response, status, *fragments)
    assert_still_serves(http)


def test_wrong_method_is_405(http: httpx.Client) -> None:
    """GET on the infer route is refused with 405 and a JSON error."""
    assert_clear_error(http.get("/v2/models/simple/infer"), 405, "GET")
    assert_still_serves(http)


@pytest.mark.parametrize(
    "path",
    [
        "/v2/models/simple/extra/infer",
        "/v2/models/simple/versions/1/extra/infer",
        "/v2/models//infer",
    ],
)
def test_paths_beside_the_infer_route_are_404(http: httpx.Client, path: str) -> None:
    """POSTs to paths that only resemble the inference route (the fast path's pattern) get the
    routed app's 404 naming the path, not an inference."""
    response = http.post(path, content=body(inputs=simple_inputs()))
    assert_clear_error(response, 404, "no route")
    assert_still_serves(http)


def test_non_utf8_bytes_for_a_text_model(http: httpx.Client) -> None:
    """Binary BYTES that are not UTF-8, sent to an ONNX string input, are a 400 naming the input."""
    blob = b"".join(struct.pack("<I", len(v)) + v for v in (b"\xff", b"b", b"c", b"d"))
    header = orjson.dumps(
        {"inputs": [tensor("INPUT0", [1, 4], "BYTES", parameters={"binary_data_size": len(blob)})]}
    )
    response = http.post(
        "/v2/models/strings/infer",
        content=header + blob,
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert_clear_error(response, 400, "INPUT0", "UTF-8")
    assert_still_serves(http)


def test_repository_bad_requests(http: httpx.Client) -> None:
    """Repository calls with bad bodies or names get 400/404/501 with clear errors."""
    assert_clear_error(http.post("/v2/repository/index", content=b"{"), 400, "not valid JSON")
    assert_clear_error(http.post("/v2/repository/index", json={"ready": "yes"}), 400, "ready")
    assert_clear_error(http.post("/v2/repository/models/nope/load"), 404, "nope")
    assert_clear_error(
        http.post("/v2/repository/models/simple/load", json={"parameters": {"config": "{}"}}),
        501,
        "config",
    )
    assert_clear_error(
        http.post("/v2/repository/models/simple/load", json={"parameters": {"colour": 1}}),
        400,
        "colour",
    )
    assert_clear_error(http.post("/v2/repository/models/nope/unload"), 404, "nope")
    assert_still_serves(http)


@pytest.fixture(scope="module")
def small_limit_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server whose request bodies may be at most 4096 bytes."""
    repo = tmp_path_factory.mktemp("small-limit")
    write_model(repo, "simple", add_sub_model())
    with running_server(repo, max_request_bytes=4096) as running:
        yield running


def _big_body() -> bytes:
    rows = [[1.0] * 16] * 32
    return body(inputs=[tensor(n, [32, 16], data=rows) for n in ("INPUT0", "INPUT1")])


def test_body_over_limit_is_413(small_limit_server: RunningServer) -> None:
    """A body over max_request_bytes (declared by Content-Length) is refused with 413."""
    content = _big_body()
    assert len(content) > 4096
    with httpx.Client(base_url=small_limit_server.url, timeout=30) as client:
        response = client.post("/v2/models/simple/infer", content=content)
        assert_clear_error(response, 413, "4096", "max_request_bytes")
    with httpx.Client(base_url=small_limit_server.url, timeout=30) as client:
        assert_still_serves(client)


def test_streamed_body_over_limit_is_413(small_limit_server: RunningServer) -> None:
    """A chunked body without Content-Length is cut off with 413 once it passes the limit."""
    content = _big_body()

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(content), 1000):
            yield content[start : start + 1000]

    with httpx.Client(base_url=small_limit_server.url, timeout=30) as client:
        response = client.post("/v2/models/simple/infer", content=chunks())
        assert "content-length" not in response.request.headers
        assert_clear_error(response, 413, "4096", "max_request_bytes")
    with httpx.Client(base_url=small_limit_server.url, timeout=30) as client:
        assert_still_serves(client)


@pytest.mark.parametrize(
    ("method", "path", "headers", "status", "fragment"),
    [
        ("GET", "/v2/models/simple/versions/\u00b2", {}, 404, "versions are positive integers"),
        ("GET", "/v2/models/simple/versions/01", {}, 404, "versions are positive integers"),
        (
            "POST",
            "/v2/models/simple/infer",
            {"Inference-Header-Content-Length": "\u00b2".encode("latin-1")},
            400,
            "invalid Inference-Header-Content-Length",
        ),
    ],
)
def test_non_ascii_digits_are_refused_not_a_crash(
    http: httpx.Client,
    method: str,
    path: str,
    headers: dict[str, bytes],
    status: int,
    fragment: str,
) -> None:
    """'²' passes str.isdigit but not int(): versions and lengths give 4xx, never a 500."""
    content = body(inputs=simple_inputs()) if method == "POST" else None
    response = http.request(method, path, content=content, headers=headers)
    assert_clear_error(response, status, fragment)
    assert_still_serves(http)
