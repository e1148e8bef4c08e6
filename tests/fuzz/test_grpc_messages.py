"""Fuzzing the gRPC message decoder: unframing, ``grpc-timeout``, ``grpc-message`` and
``decode_infer_request`` on any input give a value or a clean InvalidInputError, never
anything else (which the transport would answer INTERNAL)."""

from __future__ import annotations

from typing import Any

import numpy as np
from google.protobuf.message import DecodeError
from hypothesis import given
from hypothesis import strategies as st

from shipyard.errors import ErrorCode, ShipyardError
from shipyard.protocol import grpc_service_pb2 as pb
from shipyard.protocol.grpc import decode_infer_request
from shipyard.protocol.grpc_wire import (
    decode_message_text,
    encode_message_text,
    frame_message,
    parse_timeout,
    unframe_message,
)
from shipyard.types import DataType, InferRequest
from tests.fuzz.profile import fuzz_settings

MAX_ELEMENTS = 1 << 16
DATATYPES = [t.value for t in DataType] + ["", "FP8", "int32", "TYPE_FP32", "BF16\x00"]
CLEAN = {ErrorCode.INVALID_ARGUMENT, ErrorCode.PAYLOAD_TOO_LARGE}


@fuzz_settings(1000)
@given(st.binary(max_size=64))
def test_unframing_any_body(body: bytes) -> None:
    """A body is one message exactly when its prefix says so; round trips hold."""
    unframed = unframe_message(body)
    if unframed is None:
        assert len(body) < 5 or int.from_bytes(body[1:5], "big") != len(body) - 5
    else:
        compressed, payload = unframed
        assert compressed == bool(body[0])
        assert body[5:] == payload
    assert unframe_message(frame_message(body)) == (False, body)


@fuzz_settings(500)
@given(st.text(max_size=12))
def test_any_grpc_timeout_parses_or_is_refused(value: str) -> None:
    """``grpc-timeout`` of any text: seconds >= 0 or None, never an exception."""
    seconds = parse_timeout(value)
    assert seconds is None or seconds >= 0


@fuzz_settings(500)
@given(st.text(max_size=200))
def test_grpc_message_text_round_trips(text: str) -> None:
    """Any error text survives percent-encoding in ``grpc-message`` (printable ASCII only)."""
    encoded = encode_message_text(text)
    assert all(0x20 <= byte <= 0x7E for byte in encoded)
    assert decode_message_text(encoded.decode("ascii")) == text


def _decode(message: Any) -> InferRequest | None:
    """Decode, accepting only a result or a clean client error."""
    try:
        return decode_infer_request(message, MAX_ELEMENTS)
    except ShipyardError as exc:
        error = exc
    assert error.code in CLEAN, f"{error.code}: {error.message}"
    assert error.message
    return None


dims = st.one_of(st.integers(-3, 6), st.integers(-(2**63), 2**63 - 1))
shapes = st.one_of(
    st.lists(dims, max_size=6),
    st.lists(st.integers(0, 1), min_size=60, max_size=70),  # around numpy's 64 dimensions
    st.lists(st.sampled_from([0, 1, 3, 2**31, 2**40, 2**62]), max_size=5),  # empty but huge
)
parameter_values = st.one_of(
    st.booleans(), st.integers(-(2**63), 2**63 - 1), st.text(max_size=8), st.just(None)
)


@st.composite
def infer_requests(draw: Any) -> Any:
    """A ModelInferRequest with random inputs, shapes, datatypes, contents and parameters."""
    message = pb.ModelInferRequest(model_name=draw(st.text(max_size=8)))
    raw = draw(st.booleans())
    for _ in range(draw(st.integers(0, 3))):
        tensor = message.inputs.add()
        tensor.name = draw(st.text(max_size=6))
        tensor.datatype = draw(st.sampled_from(DATATYPES))
        tensor.shape.extend(draw(shapes))
        if raw:
            message.raw_input_contents.append(draw(st.binary(max_size=96)))
        elif draw(st.booleans()):
            contents = tensor.contents
            field = draw(
                st.sampled_from(
                    [
                        "bool_contents",
                        "int_contents",
                        "int64_contents",
                        "uint_contents",
                        "uint64_contents",
                        "fp32_contents",
                        "fp64_contents",
                        "bytes_contents",
                    ]
                )
            )
            size = draw(st.integers(0, 12))
            if field == "bool_contents":
                values: list[Any] = draw(st.lists(st.booleans(), min_size=size, max_size=size))
            elif field in ("int_contents",):
                values = draw(
                    st.lists(st.integers(-(2**31), 2**31 - 1), min_size=size, max_size=size)
                )
            elif field == "int64_contents":
                values = draw(
                    st.lists(st.integers(-(2**63), 2**63 - 1), min_size=size, max_size=size)
                )
            elif field == "uint_contents":
                values = draw(st.lists(st.integers(0, 2**32 - 1), min_size=size, max_size=size))
            elif field == "uint64_contents":
                values = draw(st.lists(st.integers(0, 2**64 - 1), min_size=size, max_size=size))
            elif field == "bytes_contents":
                values = draw(st.lists(st.binary(max_size=6), min_size=size, max_size=size))
            else:
                values = draw(st.lists(st.floats(width=32), min_size=size, max_size=size))
            getattr(contents, field).extend(values)
        for key in draw(st.lists(st.text(max_size=5), max_size=2)):
            value = draw(parameter_values)
            if value is None:
                tensor.parameters[key].SetInParent()  # a parameter without a value
            elif isinstance(value, bool):
                tensor.parameters[key].bool_param = value
            elif isinstance(value, int):
                tensor.parameters[key].int64_param = value
            else:
                tensor.parameters[key].string_param = value
    if raw and draw(st.booleans()):
        message.raw_input_contents.append(b"extra")
    for key in draw(st.lists(st.sampled_from(["timeout", "priority", "x", ""]), max_size=2)):
        value = draw(parameter_values)
        if isinstance(value, bool):
            message.parameters[key].bool_param = value
        elif isinstance(value, int):
            message.parameters[key].int64_param = value
        elif isinstance(value, str):
            message.parameters[key].string_param = value
    for _ in range(draw(st.integers(0, 2))):
        message.outputs.add().name = draw(st.text(max_size=6))
    return message


@fuzz_settings(1000)
@given(infer_requests())
def test_any_infer_request_decodes_or_is_refused_cleanly(message: Any) -> None:
    """Random requests: a decoded request whose tensors match their shapes, or INVALID_ARGUMENT."""
    request = _decode(message)
    if request is None:
        return
    for tensor, item in zip(request.inputs, message.inputs, strict=True):
        assert list(np.shape(tensor.data)) == list(item.shape)


@fuzz_settings(1000)
@given(st.binary(max_size=300))
def test_any_bytes_as_a_message_parse_or_are_refused(data: bytes) -> None:
    """Random bytes: protobuf refuses them, or what it parses decodes or is refused cleanly."""
    try:
        message = pb.ModelInferRequest.FromString(data)
    except DecodeError:
        return
    _decode(message)
