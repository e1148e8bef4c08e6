"""The golden suite: the protocol as unmodified tritonclient clients see it, on every transport.

Every test goes through the API that tritonclient.http and tritonclient.grpc share; the
differences between the two are normalised in :mod:`tests.integration.transports`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from tritonclient.utils import InferenceServerException

from shipyard.testing import (
    RunningServer,
    add_sub_model,
    identity_model,
    running_server,
    write_model,
)
from shipyard.types import DataType
from tests.integration import transports as tp

DATATYPES = list(DataType)
#: Datatypes JSON can carry (FP16 is binary only).
JSON_DATATYPES = [dt for dt in DataType if dt is not DataType.FP16]


def identity_name(datatype: DataType) -> str:
    """The identity model of ``datatype`` in the golden repository."""
    return f"identity_{datatype.value.lower()}"


@pytest.fixture(scope="module")
def golden_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One server for the module: identity models of every datatype, add/sub and spares."""
    repo = tmp_path_factory.mktemp("golden")
    for datatype in DataType:
        write_model(repo, identity_name(datatype), identity_model(datatype))
    write_model(repo, "simple", add_sub_model())
    write_model(repo, "counted", identity_model(DataType.INT32))
    write_model(repo, "toggled", identity_model(DataType.FP32))
    write_model(repo, "broken", b"this is not an onnx model")
    with running_server(repo) as running:
        yield running


@pytest.fixture(params=tp.TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    """The transport under test."""
    value: str = request.param
    return value


@pytest.fixture
def client(transport: str, golden_server: RunningServer) -> Iterator[Any]:
    """An unmodified tritonclient client of ``transport``."""
    value = tp.make_client(transport, golden_server)
    try:
        yield value
    finally:
        value.close()


def sample(datatype: DataType, binary: bool) -> npt.NDArray[Any]:
    """A [2, 4] array of ``datatype`` reaching the type's limits (inf/NaN only in binary)."""
    if datatype is DataType.BOOL:
        return np.array([[True, False, True, True], [False, False, True, False]])
    if datatype is DataType.BYTES:
        items = [
            b"",
            b"a",
            "\u00e9t\u00e9".encode(),
            b"x" * 300,
            b"0",
            b" ",
            b"{}",
            b"\xe2\x82\xac",
        ]
        return np.array(items, dtype=np.object_).reshape(2, 4)
    dtype = datatype.numpy
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        values = [info.min, info.max, 0, 1, info.max - 1, info.min + 1, 7, 42]
        return np.array(values, dtype=dtype).reshape(2, 4)
    finfo = np.finfo(dtype)
    specials = [np.inf, -np.inf, np.nan] if binary else [0.25, 1e-3, 3.0]
    values = [finfo.max, -finfo.max, finfo.tiny, -0.0, -1.5, *specials]
    return np.array(values, dtype=dtype).reshape(2, 4)


def expect_error(transport: str, kind: str, *fragments: str) -> Any:
    """A context manager expecting InferenceServerException of ``kind`` naming ``fragments``."""
    return _ExpectError(transport, kind, fragments)


class _ExpectError:
    def __init__(self, transport: str, kind: str, fragments: tuple[str, ...]) -> None:
        self.status = tp.expected_status(transport, kind)
        self.fragments = fragments

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        if exc is None:
            pytest.fail(f"expected an error with status {self.status}, got success")
        if not isinstance(exc, InferenceServerException):
            return False
        assert exc.status() == self.status, exc.message()
        message = exc.message() or ""
        for fragment in self.fragments:
            assert fragment in message, message
        assert "Traceback" not in message
        return True


def infer_identity(
    transport: str, client: Any, datatype: DataType, array: npt.NDArray[Any], binary: bool
) -> Any:
    """Send ``array`` through the identity model of ``datatype``."""
    return client.infer(
        identity_name(datatype),
        [tp.infer_input(transport, "INPUT0", array, binary)],
        outputs=[tp.requested_output(transport, "OUTPUT0", binary)],
    )


# -- health and metadata -------------------------------------------------------------------


def test_server_live_and_ready(client: Any) -> None:
    """The server reports itself live; it is not ready while one model failed to load."""
    assert client.is_server_live() is True
    assert client.is_server_ready() is False  # 'broken' is UNAVAILABLE


def test_server_metadata_lists_the_implemented_extensions(transport: str, client: Any) -> None:
    """Server metadata names Shipyard and lists exactly the implemented extensions."""
    metadata = tp.server_metadata(transport, client)
    assert metadata["name"] == "shipyard"
    assert metadata["version"]
    assert sorted(metadata["extensions"]) == sorted(
        [
            "binary_tensor_data",
            "model_repository",
            "statistics",
            "model_configuration",
            "classification",
        ]
    )


def test_model_metadata_describes_inputs_and_outputs(transport: str, client: Any) -> None:
    """Model metadata gives versions, platform and tensors with -1 for the batch dim."""
    metadata = tp.model_metadata(transport, client, "simple")
    assert metadata["name"] == "simple"
    assert metadata["versions"] == ["1"]
    assert metadata["platform"] == "onnx_onnxv1"
    tensor = {"datatype": "FP32", "shape": [-1, 16]}
    assert metadata["inputs"] == [{"name": n, **tensor} for n in ("INPUT0", "INPUT1")]
    assert metadata["outputs"] == [{"name": n, **tensor} for n in ("OUTPUT0", "OUTPUT1")]
    assert tp.model_metadata(transport, client, "simple", "1") == metadata


def test_model_ready_per_model_and_version(client: Any) -> None:
    """Model readiness is true for a loaded version and false for a model that failed."""
    assert client.is_model_ready("simple") is True
    assert client.is_model_ready("simple", "1") is True
    assert client.is_model_ready("broken") is False


def test_model_config(transport: str, client: Any) -> None:
    """The model configuration shows the batching and the tensors."""
    config = tp.model_config(transport, client, "simple")
    assert config == {
        "name": "simple",
        "max_batch_size": 32,
        "input": ["INPUT0", "INPUT1"],
        "output": ["OUTPUT0", "OUTPUT1"],
    }


# -- inference -----------------------------------------------------------------------------


@pytest.mark.parametrize("datatype", DATATYPES, ids=str)
def test_identity_binary_roundtrip(transport: str, client: Any, datatype: DataType) -> None:
    """Every datatype survives a round trip with binary (raw) tensor data, bit for bit."""
    array = sample(datatype, binary=True)
    result = infer_identity(transport, client, datatype, array, binary=True)
    out = tp.output_array(transport, result, "OUTPUT0")
    assert out.dtype == array.dtype
    assert out.shape == array.shape
    np.testing.assert_array_equal(out, array)


@pytest.mark.parametrize("datatype", JSON_DATATYPES, ids=str)
def test_identity_json_roundtrip(transport: str, client: Any, datatype: DataType) -> None:
    """Every JSON-representable datatype survives a round trip with JSON tensor data."""
    array = sample(datatype, binary=False)
    result = infer_identity(transport, client, datatype, array, binary=False)
    out = tp.output_array(transport, result, "OUTPUT0")
    assert out.dtype == array.dtype
    assert out.shape == array.shape
    np.testing.assert_array_equal(out, array)


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_add_sub_two_inputs_two_outputs(transport: str, client: Any, binary: bool) -> None:
    """The add/sub model computes both outputs from both inputs, for a batch of two."""
    a = np.arange(32, dtype=np.float32).reshape(2, 16)
    b = np.full((2, 16), 0.5, dtype=np.float32)
    result = client.infer(
        "simple",
        [tp.infer_input(transport, "INPUT0", a, binary), tp.infer_input(transport, "INPUT1", b)],
        outputs=[
            tp.requested_output(transport, "OUTPUT0", binary),
            tp.requested_output(transport, "OUTPUT1", binary),
        ],
    )
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)


@pytest.mark.parametrize("wanted", ["OUTPUT0", "OUTPUT1"])
def test_requested_output_subset(transport: str, client: Any, wanted: str) -> None:
    """Only the requested output comes back."""
    a = np.ones((1, 16), dtype=np.float32)
    result = client.infer(
        "simple",
        [tp.infer_input(transport, "INPUT0", a), tp.infer_input(transport, "INPUT1", a)],
        outputs=[tp.requested_output(transport, wanted)],
    )
    assert tp.output_names(transport, result) == [wanted]
    expected = a + a if wanted == "OUTPUT0" else a - a
    np.testing.assert_array_equal(result.as_numpy(wanted), expected)


def test_all_outputs_when_none_requested(transport: str, client: Any) -> None:
    """A request naming no outputs gets every output."""
    a = np.ones((1, 16), dtype=np.float32)
    result = client.infer(
        "simple", [tp.infer_input(transport, "INPUT0", a), tp.infer_input(transport, "INPUT1", a)]
    )
    assert tp.output_names(transport, result) == ["OUTPUT0", "OUTPUT1"]


def test_id_echo_and_model_version(transport: str, client: Any) -> None:
    """The response echoes the request id and names the model and the version that ran."""
    a = np.ones((1, 16), dtype=np.float32)
    inputs = [tp.infer_input(transport, "INPUT0", a), tp.infer_input(transport, "INPUT1", a)]
    result = client.infer("simple", inputs, request_id="golden-42")
    assert tp.response_fields(transport, result) == {
        "model_name": "simple",
        "model_version": "1",
        "id": "golden-42",
    }
    pinned = client.infer("simple", inputs, model_version="1")
    assert tp.response_fields(transport, pinned)["model_version"] == "1"
    assert tp.response_fields(transport, pinned)["id"] == ""


# -- repository ----------------------------------------------------------------------------


def test_repository_index(transport: str, client: Any) -> None:
    """The index lists every model with its version and state, and why 'broken' is not READY."""
    rows = {row["name"]: row for row in tp.repository_index(transport, client)}
    assert rows["simple"]["state"] == "READY"
    assert rows["simple"]["version"] == "1"
    for datatype in DataType:
        assert rows[identity_name(datatype)]["state"] == "READY"
    assert rows["broken"]["state"] == "UNAVAILABLE"
    assert "ONNX Runtime cannot load" in rows["broken"]["reason"]


def test_unload_and_load(transport: str, client: Any) -> None:
    """Unload stops a model serving (503) and load brings it back."""
    array = np.ones((1, 4), dtype=np.float32)
    inputs = [tp.infer_input(transport, "INPUT0", array)]
    client.unload_model("toggled")
    try:
        assert client.is_model_ready("toggled") is False
        rows = {row["name"]: row for row in tp.repository_index(transport, client)}
        assert rows["toggled"]["state"] == "UNAVAILABLE"
        assert rows["toggled"]["reason"] == "unloaded"
        with expect_error(transport, "unavailable", "toggled"):
            client.infer("toggled", inputs)
    finally:
        client.load_model("toggled")
    assert client.is_model_ready("toggled") is True
    np.testing.assert_array_equal(client.infer("toggled", inputs).as_numpy("OUTPUT0"), array)


def test_load_unknown_model_is_not_found(transport: str, client: Any) -> None:
    """Loading a model that is not in the repository fails with not-found."""
    with expect_error(transport, "not_found", "no-such-model"):
        client.load_model("no-such-model")


def test_load_broken_model_fails_and_says_why(transport: str, client: Any) -> None:
    """Loading a model whose file is corrupt fails with a message naming the model."""
    with expect_error(transport, "invalid", "broken", "ONNX Runtime cannot load"):
        client.load_model("broken")


# -- statistics ----------------------------------------------------------------------------


def test_statistics_count_requests_and_rows(transport: str, client: Any) -> None:
    """inference_count counts rows and execution_count model runs, after N requests."""
    before = tp.model_stats(transport, client, "counted")[0]
    one_row = np.arange(4, dtype=np.int32).reshape(1, 4)
    three_rows = np.arange(12, dtype=np.int32).reshape(3, 4)
    requests = 5
    for _ in range(requests):
        client.infer("counted", [tp.infer_input(transport, "INPUT0", one_row)])
    client.infer("counted", [tp.infer_input(transport, "INPUT0", three_rows)])
    after = tp.model_stats(transport, client, "counted")[0]
    assert (after["name"], after["version"]) == ("counted", "1")
    assert after["inference_count"] - before["inference_count"] == requests + 3
    assert after["execution_count"] - before["execution_count"] == requests + 1
    assert after["success"] - before["success"] == requests + 1
    assert after["fail"] == before["fail"]
    assert {1, 3} <= set(after["batch_sizes"])


def test_statistics_of_every_model(transport: str, client: Any) -> None:
    """Statistics without a model name cover every loaded model."""
    every = tp.model_stats(transport, client, "")
    names = {entry["name"] for entry in every}
    assert {"simple", "counted", identity_name(DataType.BYTES)} <= names
    assert "broken" not in names


def test_statistics_of_unknown_model_is_not_found(transport: str, client: Any) -> None:
    """Statistics of a model that does not exist fail with not-found."""
    with expect_error(transport, "not_found", "no-such-model"):
        client.get_inference_statistics("no-such-model")


# -- bad input -----------------------------------------------------------------------------

_ONE = np.ones((1, 16), dtype=np.float32)


def _bad_cases() -> list[Any]:
    """(id, model, version, inputs as (name, array), outputs, kind, fragments)."""
    good = [("INPUT0", _ONE), ("INPUT1", _ONE)]
    return [
        pytest.param("nope", "", good, None, "not_found", ["nope"], id="unknown-model"),
        pytest.param("simple", "7", good, None, "not_found", ["simple", "7"], id="unknown-version"),
        pytest.param("broken", "", good, None, "unavailable", ["broken"], id="model-not-ready"),
        pytest.param(
            "simple",
            "",
            [("INPUT0", _ONE)],
            None,
            "invalid",
            ["simple", "INPUT1"],
            id="missing-input",
        ),
        pytest.param(
            "simple",
            "",
            [*good, ("INPUT9", _ONE)],
            None,
            "invalid",
            ["simple", "INPUT9"],
            id="unknown-input",
        ),
        pytest.param(
            "simple",
            "",
            [("INPUT0", _ONE.astype(np.int32)), ("INPUT1", _ONE)],
            None,
            "invalid",
            ["INPUT0", "INT32"],
            id="wrong-datatype",
        ),
        pytest.param(
            "simple",
            "",
            [("INPUT0", np.ones((1, 8), np.float32)), ("INPUT1", _ONE)],
            None,
            "invalid",
            ["INPUT0", "[1, 8]"],
            id="wrong-dim",
        ),
        pytest.param(
            "simple",
            "",
            [("INPUT0", np.ones(16, np.float32)), ("INPUT1", _ONE)],
            None,
            "invalid",
            ["INPUT0", "[16]"],
            id="wrong-rank",
        ),
        pytest.param(
            "simple",
            "",
            [("INPUT0", np.ones((33, 16), np.float32)), ("INPUT1", np.ones((33, 16), np.float32))],
            None,
            "invalid",
            ["simple", "33"],
            id="batch-over-max",
        ),
        pytest.param(
            "simple",
            "",
            [("INPUT0", np.ones((2, 16), np.float32)), ("INPUT1", _ONE)],
            None,
            "invalid",
            ["simple", "batch size"],
            id="batch-disagrees",
        ),
        pytest.param(
            "simple", "", good, "OUTPUT7", "invalid", ["simple", "OUTPUT7"], id="unknown-output"
        ),
    ]


@pytest.mark.parametrize(
    ("model", "version", "inputs", "output", "kind", "fragments"), _bad_cases()
)
def test_bad_request_is_refused_with_the_right_status(
    transport: str,
    client: Any,
    model: str,
    version: str,
    inputs: list[tuple[str, npt.NDArray[Any]]],
    output: str | None,
    kind: str,
    fragments: list[str],
) -> None:
    """A bad request gets the right status and a message naming what is wrong; serving goes on."""
    tensors = [tp.infer_input(transport, name, array) for name, array in inputs]
    outputs = None if output is None else [tp.requested_output(transport, output)]
    with expect_error(transport, kind, *fragments):
        client.infer(model, tensors, model_version=version, outputs=outputs)
    good = [tp.infer_input(transport, n, _ONE) for n in ("INPUT0", "INPUT1")]
    np.testing.assert_array_equal(client.infer("simple", good).as_numpy("OUTPUT0"), _ONE * 2)


def test_non_utf8_text_for_a_string_model_is_refused(transport: str, client: Any) -> None:
    """BYTES that are not UTF-8 sent to an ONNX string input are refused as bad input."""
    array = np.array([[b"\xff\xfe", b"a", b"b", b"c"]], dtype=np.object_)
    with expect_error(transport, "invalid", "INPUT0", "UTF-8"):
        client.infer(identity_name(DataType.BYTES), [tp.infer_input(transport, "INPUT0", array)])
