"""The gRPC codec, the service definition's wire compatibility and the committed stubs."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from google.protobuf import json_format

from shipyard.config import DynamicBatchingConfig, ModelConfig, VersionPolicy
from shipyard.errors import ErrorCode, InvalidInputError
from shipyard.protocol import grpc_service_pb2 as pb
from shipyard.protocol import rest
from shipyard.protocol.binary import array_from_raw, array_to_raw
from shipyard.protocol.grpc import (
    CONTENTS_FIELD,
    decode_infer_request,
    decode_parameters,
    encode_infer_response,
    encode_model_config,
    encode_parameters,
    encode_repository_index,
    encode_server_metadata,
    encode_statistics,
)
from shipyard.protocol.grpc_wire import StatusCode
from shipyard.protocol.model_config import triton_model_config
from shipyard.server.grpc import GRPC_STATUS, InferenceServicer
from shipyard.stats import ModelStats
from shipyard.types import (
    DataType,
    InferRequest,
    InferResponse,
    ModelState,
    RepositoryEntry,
    ServerMetadata,
    Tensor,
    TensorSpec,
)

ROOT = Path(__file__).resolve().parents[2]
LIMIT = 1 << 20
TYPED = [dt for dt in DataType if dt is not DataType.FP16]


def sample(datatype: DataType) -> npt.NDArray[Any]:
    """A 2x3 array of ``datatype`` using its extreme values where it has them."""
    if datatype is DataType.BYTES:
        values = [b"", b"a", b"\x00\xff", "é".encode(), b"xyz", b"0123456789"]
        return np.array(values, dtype=object).reshape(2, 3)
    if datatype is DataType.BOOL:
        return np.array([[True, False, True], [False, False, True]])
    dtype = datatype.numpy
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return np.array([[info.min, 0, 1], [info.max, 7, info.max - 1]], dtype=dtype)
    return np.array([[-1.5, 0.0, 2.25], [1e3, -7.0, 0.5]], dtype=dtype)


def typed_request(datatype: DataType, array: npt.NDArray[Any]) -> pb.ModelInferRequest:
    """A request carrying ``array`` as typed contents."""
    message = pb.ModelInferRequest(model_name="m")
    tensor = message.inputs.add(name="x", datatype=datatype.value, shape=array.shape)
    getattr(tensor.contents, CONTENTS_FIELD[datatype]).extend(array.reshape(-1).tolist())
    return message


def raw_request(datatype: DataType, array: npt.NDArray[Any]) -> pb.ModelInferRequest:
    """A request carrying ``array`` in raw_input_contents."""
    message = pb.ModelInferRequest(model_name="m")
    message.inputs.add(name="x", datatype=datatype.value, shape=array.shape)
    message.raw_input_contents.append(array_to_raw(datatype, array))
    return message


# -- wire compatibility ---------------------------------------------------------------------


def _triton_messages() -> dict[str, Any]:
    from tritonclient.grpc import model_config_pb2, service_pb2

    found: dict[str, Any] = {}

    def walk(message: Any) -> None:
        found[message.full_name] = message
        for nested in message.nested_types:
            walk(nested)

    for module in (service_pb2, model_config_pb2):
        for message in module.DESCRIPTOR.message_types_by_name.values():
            walk(message)
    return found


def _ours() -> list[Any]:
    out: list[Any] = []

    def walk(message: Any) -> None:
        out.append(message)
        for nested in message.nested_types:
            walk(nested)

    for message in pb.DESCRIPTOR.message_types_by_name.values():
        walk(message)
    return out


def test_every_message_matches_triton_field_for_field() -> None:
    """Each message and field we declare exists in tritonclient's stubs with the same wire form."""
    triton = _triton_messages()
    ours = _ours()
    assert len(ours) > 40
    for message in ours:
        assert message.full_name in triton, message.full_name
        theirs = triton[message.full_name]
        for field in message.fields:
            other = theirs.fields_by_name.get(field.name)
            where = f"{message.full_name}.{field.name}"
            assert other is not None, where
            assert (field.number, field.type, field.is_repeated) == (
                other.number,
                other.type,
                other.is_repeated,
            ), where
            ref = field.message_type or field.enum_type
            other_ref = other.message_type or other.enum_type
            assert (ref and ref.full_name) == (other_ref and other_ref.full_name), where
            oneof = field.containing_oneof
            other_oneof = other.containing_oneof
            assert (oneof and oneof.name) == (other_oneof and other_oneof.name), where


def test_every_enum_and_rpc_matches_triton() -> None:
    """Enum values and the service's RPCs (names, request and response types) match Triton's."""
    from tritonclient.grpc import model_config_pb2, service_pb2

    triton_enums = {
        **{e.full_name: e for e in model_config_pb2.DESCRIPTOR.enum_types_by_name.values()},
    }
    for message in _triton_messages().values():
        triton_enums.update({e.full_name: e for e in message.enum_types})
    enums = list(pb.DESCRIPTOR.enum_types_by_name.values())
    enums += [e for m in _ours() for e in m.enum_types]
    assert len(enums) == 4
    for enum in enums:
        theirs = triton_enums[enum.full_name]
        assert [(v.name, v.number) for v in enum.values] == [
            (v.name, v.number) for v in theirs.values
        ]
    ours = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    theirs = service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    assert ours.full_name == "inference.GRPCInferenceService"
    assert len(ours.methods) == 11
    for method in ours.methods:
        other = theirs.methods_by_name[method.name]
        assert method.input_type.full_name == other.input_type.full_name
        assert method.output_type.full_name == other.output_type.full_name
        assert not method.client_streaming
        assert not method.server_streaming


def test_messages_cross_parse_with_tritonclient() -> None:
    """A request serialized by tritonclient's stubs parses into ours field for field."""
    from tritonclient.grpc import service_pb2

    theirs = service_pb2.ModelInferRequest(model_name="m", model_version="2", id="7")
    theirs.parameters["timeout"].int64_param = 5
    tensor = theirs.inputs.add(name="x", datatype="INT32", shape=[2])
    tensor.contents.int_contents.extend([1, -2])
    theirs.outputs.add(name="y").parameters["classification"].int64_param = 3
    ours = pb.ModelInferRequest.FromString(theirs.SerializeToString())
    assert ours.SerializeToString() == theirs.SerializeToString()
    assert list(ours.inputs[0].contents.int_contents) == [1, -2]


def test_private_descriptor_pool_coexists_with_tritonclient() -> None:
    """Our stubs and tritonclient's import side by side (distinct descriptor pools)."""
    from tritonclient.grpc import service_pb2

    assert pb.ModelInferRequest.DESCRIPTOR.full_name == "inference.ModelInferRequest"
    assert service_pb2.ModelInferRequest is not pb.ModelInferRequest


def test_health_messages_match_grpcio_health_checking() -> None:
    """Our grpc.health.v1 messages import beside grpcio-health-checking's and share the wire."""
    from grpc_health.v1 import health_pb2 as theirs

    from shipyard.protocol import health_pb2 as ours

    assert ours.HealthCheckRequest is not theirs.HealthCheckRequest
    request = theirs.HealthCheckRequest(service="model-a").SerializeToString()
    assert ours.HealthCheckRequest.FromString(request).service == "model-a"
    for name in ("UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"):
        status = getattr(ours.HealthCheckResponse, name)
        answer = ours.HealthCheckResponse(status=status).SerializeToString()
        assert theirs.HealthCheckResponse.FromString(answer).status == getattr(
            theirs.HealthCheckResponse, name
        )


def test_committed_stubs_are_current(tmp_path: Path) -> None:
    """Regenerating the stubs from proto/*.proto reproduces the committed files."""
    subprocess.run(
        [sys.executable, str(ROOT / "proto" / "generate.py"), str(tmp_path)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    names = ["grpc_service_pb2.py", "grpc_service_pb2.pyi", "grpc_service_pb2_grpc.py"]
    names += ["health_pb2.py", "health_pb2.pyi"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)
    committed = ROOT / "src" / "shipyard" / "protocol"
    for name in names:
        assert (tmp_path / name).read_bytes() == (committed / name).read_bytes(), (
            f"{name} is stale: run `make proto` and commit the result"
        )


# -- tensor contents ------------------------------------------------------------------------


@pytest.mark.parametrize("datatype", TYPED, ids=str)
def test_typed_contents_decode_for_every_datatype(datatype: DataType) -> None:
    """Typed contents decode to the exact array and dtype (INT8/16 via int_contents, etc.)."""
    array = sample(datatype)
    request = decode_infer_request(typed_request(datatype, array), LIMIT)
    tensor = request.inputs[0]
    assert tensor.datatype is datatype
    assert tensor.data.shape == (2, 3)
    assert tensor.data.dtype == datatype.numpy
    assert tensor.data.tolist() == array.tolist()


@pytest.mark.parametrize("datatype", list(DataType), ids=str)
def test_raw_contents_decode_for_every_datatype(datatype: DataType) -> None:
    """raw_input_contents decode to the exact array for every datatype, FP16 included."""
    array = sample(datatype)
    tensor = decode_infer_request(raw_request(datatype, array), LIMIT).inputs[0]
    assert tensor.data.dtype == datatype.numpy
    assert tensor.data.tolist() == array.tolist()


def test_field_table_follows_the_specification() -> None:
    """INT8/16/32 use int_contents, UINT8/16/32 uint_contents; FP16 has no typed field."""
    assert {dt for dt, f in CONTENTS_FIELD.items() if f == "int_contents"} == {
        DataType.INT8,
        DataType.INT16,
        DataType.INT32,
    }
    assert {dt for dt, f in CONTENTS_FIELD.items() if f == "uint_contents"} == {
        DataType.UINT8,
        DataType.UINT16,
        DataType.UINT32,
    }
    assert DataType.FP16 not in CONTENTS_FIELD


def test_fp16_typed_contents_are_refused() -> None:
    """FP16 has no typed field, so a request without raw contents is refused, naming the fix."""
    message = pb.ModelInferRequest(model_name="m")
    message.inputs.add(name="x", datatype="FP16", shape=[1]).contents.fp32_contents.append(1.0)
    with pytest.raises(InvalidInputError, match="raw_input_contents"):
        decode_infer_request(message, LIMIT)


def test_mixing_raw_and_typed_contents_is_refused() -> None:
    """A request with raw_input_contents may not also set an input's contents."""
    message = raw_request(DataType.INT32, sample(DataType.INT32))
    message.inputs.add(name="y", datatype="INT32", shape=[1]).contents.int_contents.append(1)
    message.raw_input_contents.append(b"\x00" * 4)
    with pytest.raises(InvalidInputError, match=r"no input may set 'contents'.*'y'"):
        decode_infer_request(message, LIMIT)


def test_raw_entry_count_must_match_inputs() -> None:
    """One raw_input_contents entry per input, no more, no fewer."""
    message = raw_request(DataType.INT32, sample(DataType.INT32))
    message.inputs.add(name="y", datatype="INT32", shape=[1])
    with pytest.raises(InvalidInputError, match="1 raw_input_contents entries for 2 inputs"):
        decode_infer_request(message, LIMIT)


def test_raw_size_mismatch_is_refused() -> None:
    """A raw blob whose size disagrees with shape x datatype is refused."""
    message = raw_request(DataType.INT32, sample(DataType.INT32))
    message.raw_input_contents[0] = message.raw_input_contents[0][:-1]
    with pytest.raises(InvalidInputError, match=r"23 bytes .* needs 24"):
        decode_infer_request(message, LIMIT)


def test_typed_contents_in_the_wrong_field_are_refused() -> None:
    """FP32 data sent in int_contents is refused, naming the right field."""
    message = pb.ModelInferRequest(model_name="m")
    message.inputs.add(name="x", datatype="FP32", shape=[1]).contents.int_contents.append(1)
    with pytest.raises(InvalidInputError, match=r"takes fp32_contents.*int_contents"):
        decode_infer_request(message, LIMIT)


def test_typed_contents_count_and_range_are_checked() -> None:
    """Element count must match the shape and narrow integers must fit their datatype."""
    message = typed_request(DataType.INT32, np.arange(3, dtype=np.int32))
    message.inputs[0].shape[:] = [4]
    with pytest.raises(
        InvalidInputError, match=r"needs 4 elements but contents\.int_contents has 3"
    ):
        decode_infer_request(message, LIMIT)
    message = typed_request(DataType.INT32, np.array([1, 300], dtype=np.int32))
    message.inputs[0].datatype = "INT8"
    with pytest.raises(InvalidInputError, match="out of range for INT8"):
        decode_infer_request(message, LIMIT)
    message = pb.ModelInferRequest(model_name="m")
    message.inputs.add(name="x", datatype="UINT8", shape=[1]).contents.uint_contents.append(256)
    with pytest.raises(InvalidInputError, match="out of range for UINT8"):
        decode_infer_request(message, LIMIT)


def test_missing_data_and_bad_headers_are_refused() -> None:
    """No data, no inputs, an unknown datatype or a negative dim are each refused clearly."""
    message = pb.ModelInferRequest(model_name="m")
    with pytest.raises(InvalidInputError, match="at least one input"):
        decode_infer_request(message, LIMIT)
    message.inputs.add(name="x", datatype="INT32", shape=[2])
    with pytest.raises(InvalidInputError, match="no data"):
        decode_infer_request(message, LIMIT)
    message.inputs[0].datatype = "INT4"
    with pytest.raises(InvalidInputError, match="unknown datatype 'INT4'"):
        decode_infer_request(message, LIMIT)
    message.inputs[0].datatype = "INT32"
    message.inputs[0].shape[:] = [-2]
    with pytest.raises(InvalidInputError, match="negative dimension"):
        decode_infer_request(message, LIMIT)


@pytest.mark.parametrize("raw", [True, False], ids=["raw", "typed"])
def test_shape_over_64_dimensions_is_refused(raw: bool) -> None:
    """65 dimensions (numpy's limit is 64) is INVALID_ARGUMENT naming the input; 64 decode.

    Found by the gRPC decoder fuzzer (tests/fuzz): numpy's ValueError became INTERNAL.
    """
    for dims in (64, 65):
        message = pb.ModelInferRequest(model_name="m")
        tensor = message.inputs.add(name="x", datatype="FP32", shape=[1] * dims)
        if raw:
            message.raw_input_contents.append(np.float32(1.0).tobytes())
        else:
            tensor.contents.fp32_contents.append(1.0)
        if dims == 64:
            assert decode_infer_request(message, LIMIT).inputs[0].data.ndim == 64
            continue
        with pytest.raises(InvalidInputError, match=r"model 'm', input 'x': shape has 65"):
            decode_infer_request(message, LIMIT)


@pytest.mark.parametrize("raw", [True, False], ids=["raw", "typed"])
def test_empty_shape_with_huge_dimensions_is_refused(raw: bool) -> None:
    """[0, 2**40, 2**40] has no elements, but numpy refuses it: INVALID_ARGUMENT, not INTERNAL.

    Found by the gRPC decoder fuzzer (tests/fuzz); [0, 3] still decodes to an empty array.
    """
    for shape, ok in (([0, 3], True), ([0, 2**40, 2**40], False)):
        message = pb.ModelInferRequest(model_name="m")
        message.inputs.add(name="x", datatype="UINT64", shape=shape)
        if raw:
            message.raw_input_contents.append(b"")
        if ok:
            assert decode_infer_request(message, LIMIT).inputs[0].data.shape == (0, 3)
            continue
        with pytest.raises(InvalidInputError, match=r"input 'x': shape .* is empty but"):
            decode_infer_request(message, LIMIT)


def test_request_fields_and_parameters_decode() -> None:
    """Empty version and id mean unset; parameters of every kind come through as Python values."""
    message = typed_request(DataType.INT64, np.array([1], dtype=np.int64))
    message.parameters["priority"].int64_param = 10
    message.parameters["flag"].bool_param = True
    message.parameters["big"].uint64_param = 2**64 - 1
    message.parameters["ratio"].double_param = 0.5
    message.parameters["tag"].string_param = "t"
    message.outputs.add(name="y").parameters["classification"].int64_param = 2
    request = decode_infer_request(message, LIMIT)
    assert request.model_version is None
    assert request.id is None
    assert request.parameters == {
        "priority": 10,
        "flag": True,
        "big": 2**64 - 1,
        "ratio": 0.5,
        "tag": "t",
    }
    assert request.outputs is not None
    assert [(o.name, o.parameters) for o in request.outputs] == [("y", {"classification": 2})]
    message.parameters["empty"].Clear()
    with pytest.raises(InvalidInputError, match="parameter 'empty' has no value"):
        decode_infer_request(message, LIMIT)


def test_parameters_round_trip() -> None:
    """encode_parameters picks the InferParameter field that decode_parameters reads back."""
    values = {"b": False, "i": -3, "u": 2**63, "d": 1.25, "s": "x"}
    message = pb.ModelInferResponse()
    encode_parameters(values, message.parameters)
    assert message.parameters["u"].WhichOneof("parameter_choice") == "uint64_param"
    assert decode_parameters(message.parameters, "test") == values


@pytest.mark.parametrize("datatype", list(DataType), ids=str)
def test_response_uses_raw_output_contents(datatype: DataType) -> None:
    """Every output travels in raw_output_contents, in output order, with its header."""
    array = sample(datatype)
    response = InferResponse(
        "m", "1", [Tensor("a", datatype, array), Tensor("b", DataType.INT32, np.ones(2, "<i4"))]
    )
    response.id = "42"
    message = encode_infer_response(response)
    assert (message.model_name, message.model_version, message.id) == ("m", "1", "42")
    assert [(o.name, o.datatype, list(o.shape)) for o in message.outputs] == [
        ("a", datatype.value, [2, 3]),
        ("b", "INT32", [2]),
    ]
    assert not message.outputs[0].HasField("contents")
    assert len(message.raw_output_contents) == 2
    decoded = array_from_raw("a", datatype, [2, 3], message.raw_output_contents[0], 6)
    assert decoded.tolist() == array.tolist()


# -- metadata, configuration, statistics, repository ------------------------------------------


def _as_rest_json(value: Any, message: Any) -> Any:
    """What protobuf's JSON mapping makes of the REST answer (the codec's former path)."""
    return json_format.ParseDict(value, message)


SPEC = TensorSpec("x", DataType.FP16, (-1, 3))
CONFIGS = {
    "batched": ModelConfig(
        name="m",
        backend="onnxruntime",
        max_batch_size=8,
        dynamic_batching=DynamicBatchingConfig(
            max_queue_delay_us=100, preferred_batch_sizes=(4,), default_timeout_us=7
        ),
        inputs=(SPEC,),
        outputs=(SPEC,),
    ),
    "unbatched_all_versions": ModelConfig(
        name="u",
        backend="tflite",
        max_batch_size=0,
        version_policy=VersionPolicy(kind="all"),
        inputs=(TensorSpec("s", DataType.BYTES, (2,)),),
        outputs=(TensorSpec("y", DataType.INT64, ()),),
        instance_count=3,
    ),
    "specific_versions_no_batching": ModelConfig(
        name="v",
        backend="onnxruntime",
        max_batch_size=4,
        dynamic_batching=None,
        version_policy=VersionPolicy(kind="specific", versions=(1, 3)),
        inputs=(SPEC,),
        outputs=(SPEC,),
    ),
}


@pytest.mark.parametrize("config", CONFIGS.values(), ids=CONFIGS.keys())
def test_model_config_message_is_the_rest_json(config: ModelConfig) -> None:
    """The ModelConfig message carries exactly what the REST JSON says, field for field."""
    as_json = rest.encode_model_config(config)
    expected = _as_rest_json({"config": as_json}, pb.ModelConfigResponse())
    message = encode_model_config(config)
    assert message == expected
    assert message.SerializeToString(deterministic=True) == expected.SerializeToString(
        deterministic=True
    )


def test_model_config_keeps_every_key() -> None:
    """Every key of Triton's JSON model configuration has a field in our ModelConfig."""
    config = CONFIGS["batched"]
    as_json = triton_model_config(config, (SPEC,), (SPEC,))
    json_format.ParseDict(as_json, pb.ModelConfig())  # raises on a key we lack
    message = encode_model_config(config).config
    assert message.max_batch_size == 8
    assert list(message.input[0].dims) == [3]
    assert message.input[0].data_type == pb.TYPE_FP16
    assert message.dynamic_batching.default_queue_policy.default_timeout_microseconds == 7
    assert message.instance_group[0].kind == pb.ModelInstanceGroup.KIND_CPU


def test_statistics_and_index_keep_every_key() -> None:
    """Statistics and repository index messages carry what the REST JSON says, key for key."""
    stats = ModelStats("m", "1")
    stats.record_execution(4, 2, 10, 20, 30)
    stats.record_execution(1, 1, 5, 6, 7)
    idle = ModelStats("m", "2")
    as_json = rest.encode_statistics([stats, idle])
    json_format.ParseDict(as_json, pb.ModelStatisticsResponse())  # raises on a key we lack
    response = encode_statistics([stats, idle])
    assert response == _as_rest_json(as_json, pb.ModelStatisticsResponse())
    message = response.model_stats[0]
    assert (message.inference_count, message.execution_count) == (5, 2)
    assert [b.batch_size for b in message.batch_stats] == [1, 4]
    assert message.inference_stats.compute_infer.ns == 46
    rows = [
        RepositoryEntry("m", ModelState.READY, "", "1"),
        RepositoryEntry("n", ModelState.UNAVAILABLE, "not loaded"),
    ]
    index = encode_repository_index(rows)
    assert index == _as_rest_json(
        {"models": rest.encode_repository_index(rows)}, pb.RepositoryIndexResponse()
    )
    assert [(m.name, m.version, m.state) for m in index.models] == [
        ("m", "1", "READY"),
        ("n", "", "UNAVAILABLE"),
    ]


def test_server_metadata_message_is_the_rest_json() -> None:
    """The ServerMetadata message carries the REST JSON's name, version and extensions."""
    metadata = ServerMetadata("shipyard", "9.9", ("statistics", "model_repository"))
    expected = _as_rest_json(rest.encode_server_metadata(metadata), pb.ServerMetadataResponse())
    assert encode_server_metadata(metadata) == expected


# -- the transport's table and deadline ------------------------------------------------------


def test_error_table_covers_every_code() -> None:
    """GRPC_STATUS maps every ErrorCode, payload-too-large to RESOURCE_EXHAUSTED."""
    assert set(GRPC_STATUS) == set(ErrorCode)
    assert GRPC_STATUS[ErrorCode.PAYLOAD_TOO_LARGE] is StatusCode.RESOURCE_EXHAUSTED
    assert GRPC_STATUS[ErrorCode.INVALID_ARGUMENT] is StatusCode.INVALID_ARGUMENT


def test_status_numbers_are_grpcs() -> None:
    """Shipyard's StatusCode numbers are the ones grpcio uses for the same names."""
    import grpc

    for code in StatusCode:
        assert grpc.StatusCode[code.name].value[0] == code.value


class _Service:
    """Just enough of InferenceService for ModelInfer: it keeps the request it is given."""

    max_tensor_elements = LIMIT

    def __init__(self) -> None:
        self.requests: list[InferRequest] = []

    async def infer(self, request: InferRequest) -> InferResponse:
        self.requests.append(request)
        return InferResponse(request.model_name, "1", [])


@pytest.mark.parametrize(
    ("remaining_s", "margin_s"),
    [(0.2, 0.02), (0.005, 0.001), (10.0, 0.05)],
    ids=["a tenth", "at least 1 ms", "at most 50 ms"],
)
def test_call_deadline_becomes_the_request_deadline(remaining_s: float, margin_s: float) -> None:
    """A call with time left gives its request a deadline a tenth of it earlier (1 to 50 ms),
    so the server's DEADLINE_EXCEEDED reaches the client before its own timer fires."""
    service = _Service()
    servicer = InferenceServicer(service)  # type: ignore[arg-type]
    message = typed_request(DataType.INT32, np.ones(2, np.int32))
    message.parameters["timeout"].int64_param = 50_000
    before = time.monotonic()
    asyncio.run(servicer.ModelInfer(message, remaining_s))
    after = time.monotonic()
    (request,) = service.requests
    assert request.deadline is not None
    expected = remaining_s - margin_s
    assert before + expected - 1e-9 <= request.deadline <= after + expected + 1e-9
    assert request.timeout_us == 50_000  # the client's own timeout is kept beside it
    assert "timeout" not in request.parameters
    asyncio.run(servicer.ModelInfer(message, None))
    assert service.requests[1].deadline is None


@pytest.mark.parametrize("timeout", [-1, 1.5, "100", True])
def test_bad_timeout_parameter(timeout: Any) -> None:
    """The timeout parameter must be a non-negative integer of microseconds."""
    message = typed_request(DataType.INT32, np.ones(2, np.int32))
    encode_parameters({"timeout": timeout}, message.parameters)
    with pytest.raises(InvalidInputError, match="parameter 'timeout' must be a non-negative"):
        decode_infer_request(message, LIMIT)
