"""The V2 REST codec: JSON bodies and the binary tensor data extension ↔ core types. No I/O.

A request body is a JSON header, optionally followed by binary blobs in input order; the
``Inference-Header-Content-Length`` header gives the JSON length. Responses put an output in
binary when the client asked (``binary_data`` per output, ``binary_data_output`` for all) and
always for FP16, which JSON cannot carry. The service's other answers (server metadata, model
configuration, statistics, repository index) become the JSON objects of the V2 REST API here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import cast

import numpy as np
import orjson

from shipyard.config import ModelConfig
from shipyard.errors import InvalidInputError
from shipyard.protocol.binary import array_from_raw, array_to_raw, element_count
from shipyard.protocol.model_config import triton_model_config
from shipyard.protocol.parameters import pop_timeout_us
from shipyard.stats import Duration, ModelStats
from shipyard.types import (
    Array,
    DataType,
    InferRequest,
    InferResponse,
    JSONObject,
    JSONValue,
    Parameters,
    Prediction,
    RepositoryEntry,
    RequestedOutput,
    ServerMetadata,
    Tensor,
)

__all__ = [
    "decode_infer_request",
    "decode_json",
    "encode_infer_response",
    "encode_json",
    "encode_model_config",
    "encode_prediction",
    "encode_repository_index",
    "encode_server_metadata",
    "encode_statistics",
    "parse_decimal",
]

_FLOATS = (DataType.FP32, DataType.FP64)
#: A non-negative integer in ASCII digits (str.isdigit also accepts "²", which int() refuses).
_DIGITS = re.compile(r"[0-9]+")
#: More significant digits than this are over every limit (and int() refuses past 4,300).
MAX_DECIMAL_DIGITS = 18


def parse_decimal(text: str, what: str) -> int:
    """Parse a non-negative decimal integer from a header or query value.

    Raise InvalidInputError naming ``what`` unless ``text`` is ASCII digits with at most
    :data:`MAX_DECIMAL_DIGITS` significant ones; the message shows at most 40 characters of
    it, and at most 64 of their ``repr`` (an escape such as ``\\U00018cd6`` is 10).
    """
    if not _DIGITS.fullmatch(text):
        shown = repr(text[:40])
        if len(shown) > 64:
            shown = shown[:64] + "..."
        elif len(text) > 40:
            shown += "..."
        raise InvalidInputError(f"invalid {what} {shown}: expected a non-negative integer")
    digits = text.lstrip("0") or "0"
    if len(digits) > MAX_DECIMAL_DIGITS:
        raise InvalidInputError(
            f"invalid {what}: {len(digits)} digits, more than the {MAX_DECIMAL_DIGITS} accepted"
        )
    return int(digits)


def encode_json(value: object) -> bytes:
    """Serialize a JSON value, in which NumPy arrays may stand for lists."""
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)


def decode_json(body: bytes | bytearray | memoryview, what: str = "request body") -> JSONValue:
    """Parse JSON or raise InvalidInputError naming ``what``."""
    try:
        value: JSONValue = orjson.loads(body)
        return value
    except orjson.JSONDecodeError as exc:
        raise InvalidInputError(f"{what} is not valid JSON: {exc}") from exc


def _parameters(value: JSONValue, where: str) -> Parameters:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInputError(f"{where}: 'parameters' must be a JSON object")
    return value


def decode_infer_request(
    body: bytes | bytearray,
    header_length: int | None,
    model_name: str,
    model_version: str | None,
    max_tensor_elements: int,
) -> InferRequest:
    """Decode an ``/infer`` body (JSON, or JSON + binary blobs) into an InferRequest."""
    where = f"model {model_name!r}"
    if header_length is None:
        header_bytes: bytes | bytearray | memoryview = body
        blobs = memoryview(b"")
    else:
        if header_length < 0 or header_length > len(body):
            raise InvalidInputError(
                f"{where}: Inference-Header-Content-Length is {header_length} but the body has "
                f"only {len(body)} bytes"
            )
        view = memoryview(body)
        header_bytes, blobs = view[:header_length], view[header_length:]
    header = decode_json(header_bytes, f"{where}: the inference request")
    if not isinstance(header, dict):
        raise InvalidInputError(f"{where}: the inference request must be a JSON object")
    raw_inputs = header.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InvalidInputError(f"{where}: the request needs a non-empty 'inputs' list")
    request_id = header.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidInputError(f"{where}: 'id' must be a string")
    inputs: list[Tensor] = []
    offset = 0
    for item in raw_inputs:
        tensor, used = _decode_input(item, blobs, offset, where, max_tensor_elements)
        inputs.append(tensor)
        offset += used
    if offset != len(blobs):
        raise InvalidInputError(
            f"{where}: {len(blobs) - offset} bytes of binary data follow the JSON header but no "
            "input claims them (check binary_data_size and Inference-Header-Content-Length)"
        )
    outputs: list[RequestedOutput] | None = None
    raw_outputs = header.get("outputs")
    if raw_outputs is not None:
        if not isinstance(raw_outputs, list):
            raise InvalidInputError(f"{where}: 'outputs' must be a list")
        requested = []
        for out in raw_outputs:
            out_name = out.get("name") if isinstance(out, dict) else None
            if not isinstance(out, dict) or not isinstance(out_name, str):
                raise InvalidInputError(f"{where}: each requested output needs a 'name' string")
            requested.append(
                RequestedOutput(out_name, _parameters(out.get("parameters"), out_name))
            )
        # An empty list asks for every output, as an omitted one does: what Triton answers, and
        # all that gRPC can say (an empty repeated field is the same as none).
        outputs = requested or None
    parameters = _parameters(header.get("parameters"), where)
    return InferRequest(
        model_name=model_name,
        model_version=model_version,
        id=request_id,
        timeout_us=pop_timeout_us(parameters, model_name),
        parameters=parameters,
        inputs=inputs,
        outputs=outputs,
    )


def _decode_input(
    item: JSONValue, blobs: memoryview, offset: int, where: str, limit: int
) -> tuple[Tensor, int]:
    name = item.get("name") if isinstance(item, dict) else None
    if not isinstance(item, dict) or not isinstance(name, str):
        raise InvalidInputError(f"{where}: each input needs a 'name' string")
    wire_datatype = item.get("datatype")
    if not isinstance(wire_datatype, str):
        raise InvalidInputError(f"{where}, input {name!r}: 'datatype' must be a string")
    try:
        datatype = DataType.parse(wire_datatype)
    except ValueError as exc:
        raise InvalidInputError(f"{where}, input {name!r}: {exc}") from None
    wire_shape = item.get("shape", None)
    count = element_count(name, wire_shape, limit)
    shape = cast(list[int], wire_shape)  # element_count checked it
    params = _parameters(item.get("parameters"), f"input {name!r}")
    size = params.get("binary_data_size")
    if size is not None:
        if "data" in item:
            raise InvalidInputError(
                f"{where}, input {name!r}: has both 'data' and binary_data_size; send one"
            )
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InvalidInputError(
                f"{where}, input {name!r}: binary_data_size must be a non-negative integer"
            )
        if offset + size > len(blobs):
            raise InvalidInputError(
                f"{where}, input {name!r}: binary_data_size {size} runs past the end of the "
                f"body ({len(blobs) - offset} bytes of binary data left)"
            )
        data = array_from_raw(name, datatype, shape, blobs[offset : offset + size], count)
        return Tensor(name, datatype, data), size
    if "data" not in item:
        raise InvalidInputError(
            f"{where}, input {name!r}: no 'data' and no binary_data_size parameter"
        )
    return Tensor(name, datatype, _json_data(name, datatype, shape, item["data"], count)), 0


def _json_data(
    name: str, datatype: DataType, shape: list[int], data: JSONValue, count: int
) -> Array:
    """Turn JSON ``data`` (flat or nested) into an array of ``shape``, strictly typed."""
    if not isinstance(data, list):
        data = [data]
    if datatype is DataType.BYTES:
        flat = _flatten(data)
        if len(flat) != count:
            raise _count_error(name, shape, count, len(flat))
        out = np.empty(count, dtype=object)
        for i, value in enumerate(flat):
            if not isinstance(value, str):
                raise InvalidInputError(
                    f"input {name!r}: BYTES data in JSON must be strings; element {i} is "
                    f"{type(value).__name__}"
                )
            out[i] = value.encode("utf-8")
        return out.reshape(shape)
    if datatype is DataType.FP16:
        raise InvalidInputError(
            f"input {name!r}: FP16 cannot be sent as JSON numbers; use the binary tensor "
            "data extension (binary_data_size)"
        )
    try:
        array = np.asarray(data)
    except (ValueError, OverflowError) as exc:
        raise InvalidInputError(f"input {name!r}: data is ragged or not numeric ({exc})") from None
    if array.size != count:
        raise _count_error(name, shape, count, array.size)
    if count == 0:
        return np.empty(shape, dtype=datatype.numpy)
    kind = array.dtype.kind
    if datatype is DataType.BOOL:
        if kind != "b":
            raise _type_error(name, datatype, "true/false values")
    elif datatype in _FLOATS:
        if kind not in "iuf":
            raise _type_error(name, datatype, "numbers")
        # Out of range means "becomes infinite": JSON writes FP32's largest value as
        # 3.4028235e+38, a little above it, and that still rounds to it.
        with np.errstate(over="ignore"):
            floats = array.astype(datatype.numpy, copy=False)
        if kind == "f" and not np.isfinite(floats).all():
            raise InvalidInputError(f"input {name!r}: a value is out of range for {datatype}")
        return floats.reshape(shape)
    else:
        if kind in "fO":
            # NumPy infers float64 (or object) for ints past int64 mixed with smaller ones,
            # e.g. UINT64 [0, 2**64 - 1]: convert exact Python ints without that detour.
            return _exact_ints(name, datatype, shape, _flatten(data))
        if kind not in "iu":
            raise _type_error(name, datatype, "integers")
        info = np.iinfo(datatype.numpy)
        if int(array.min()) < info.min or int(array.max()) > info.max:
            raise InvalidInputError(
                f"input {name!r}: a value is out of range for {datatype} ({info.min}..{info.max})"
            )
    return array.astype(datatype.numpy, copy=False).reshape(shape)


def _exact_ints(name: str, datatype: DataType, shape: list[int], flat: list[JSONValue]) -> Array:
    ints: list[int] = []
    for value in flat:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _type_error(name, datatype, "integers")
        ints.append(value)
    info = np.iinfo(datatype.numpy)
    if any(v < info.min or v > info.max for v in ints):
        raise InvalidInputError(
            f"input {name!r}: a value is out of range for {datatype} ({info.min}..{info.max})"
        )
    return np.array(ints, dtype=datatype.numpy).reshape(shape)


def _flatten(data: list[JSONValue]) -> list[JSONValue]:
    """The leaves of nested lists, in order; a loop, not recursion: JSON nests 1,000 deep."""
    if not any(isinstance(v, list) for v in data):
        return data
    flat: list[JSONValue] = []
    stack = [iter(data)]
    while stack:
        for value in stack[-1]:
            if isinstance(value, list):
                stack.append(iter(value))
                break
            flat.append(value)
        else:
            stack.pop()
    return flat


def _count_error(name: str, shape: list[int], expected: int, got: int) -> InvalidInputError:
    return InvalidInputError(
        f"input {name!r}: shape {shape} needs {expected} elements but data has {got}"
    )


def _type_error(name: str, datatype: DataType, expected: str) -> InvalidInputError:
    return InvalidInputError(f"input {name!r}: datatype {datatype} expects {expected} in 'data'")


def _wants_binary(output: Tensor, requested: dict[str, RequestedOutput], all_binary: bool) -> bool:
    if output.datatype is DataType.FP16:
        return True
    spec = requested.get(output.name)
    if spec is not None and "binary_data" in spec.parameters:
        return bool(spec.parameters["binary_data"])
    return all_binary


def encode_infer_response(
    response: InferResponse, request: InferRequest
) -> tuple[bytes, int | None]:
    """Encode a response; return the body and the JSON header length if blobs follow."""
    requested = {out.name: out for out in request.outputs or ()}
    all_binary = bool(request.parameters.get("binary_data_output", False))
    blobs: list[bytes] = []
    outputs = []
    for tensor in response.outputs:
        entry: dict[str, object] = {
            "name": tensor.name,
            "datatype": tensor.datatype.value,
            "shape": tensor.shape,
        }
        if _wants_binary(tensor, requested, all_binary):
            blob = array_to_raw(tensor.datatype, tensor.data)
            entry["parameters"] = {**tensor.parameters, "binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            if tensor.parameters:
                entry["parameters"] = dict(tensor.parameters)
            if tensor.datatype is DataType.BYTES:
                entry["data"] = [_text(tensor.name, v) for v in tensor.data.reshape(-1)]
            else:
                entry["data"] = np.ascontiguousarray(tensor.data).reshape(-1)
        outputs.append(entry)
    body: dict[str, object] = {
        "model_name": response.model_name,
        "model_version": response.model_version,
    }
    if response.id is not None:
        body["id"] = response.id
    if response.parameters:
        body["parameters"] = response.parameters
    body["outputs"] = outputs
    header = encode_json(body)
    if not blobs:
        return header, None
    return b"".join([header, *blobs]), len(header)


def _text(name: str, value: str | bytes) -> str:
    if isinstance(value, str):
        return value
    try:
        return bytes(value).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInputError(
            f"output {name!r} holds bytes that are not UTF-8 text; request it with "
            '"binary_data": true'
        ) from None


# -- metadata, configuration, statistics, repository ----------------------------------------


def encode_server_metadata(metadata: ServerMetadata) -> JSONObject:
    """The ``$metadata_server_response`` object."""
    return {
        "name": metadata.name,
        "version": metadata.version,
        "extensions": list(metadata.extensions),
    }


def encode_model_config(config: ModelConfig) -> JSONObject:
    """Triton's JSON model configuration of a served model (its signature in ``config``)."""
    return triton_model_config(config, config.inputs, config.outputs)


def _duration(duration: Duration) -> JSONObject:
    return {"count": duration.count, "ns": duration.ns}


def _model_stats(stats: ModelStats) -> JSONObject:
    return {
        "name": stats.name,
        "version": stats.version,
        "last_inference": stats.last_inference_ms,
        "inference_count": stats.inference_count,
        "execution_count": stats.execution_count,
        "inference_stats": {
            "success": _duration(stats.success),
            "fail": _duration(stats.fail),
            "queue": _duration(stats.queue),
            "compute_input": _duration(stats.compute_input),
            "compute_infer": _duration(stats.compute_infer),
            "compute_output": _duration(stats.compute_output),
            "cache_hit": {"count": 0, "ns": 0},
            "cache_miss": {"count": 0, "ns": 0},
        },
        "batch_stats": [
            {
                "batch_size": size,
                "compute_input": _duration(batch.compute_input),
                "compute_infer": _duration(batch.compute_infer),
                "compute_output": _duration(batch.compute_output),
            }
            for size, batch in sorted(stats.batches.items())
        ],
    }


def encode_statistics(stats: Sequence[ModelStats]) -> JSONObject:
    """The statistics extension's ``{"model_stats": [...]}``."""
    return {"model_stats": [_model_stats(entry) for entry in stats]}


def _index_row(entry: RepositoryEntry) -> JSONObject:
    row: JSONObject = {"name": entry.name}
    if entry.version is not None:
        row["version"] = entry.version
    row["state"] = entry.state.value
    row["reason"] = entry.reason
    return row


def encode_repository_index(entries: Sequence[RepositoryEntry]) -> list[JSONObject]:
    """The repository extension's index: one object per model (version)."""
    return [_index_row(entry) for entry in entries]


def encode_prediction(prediction: Prediction) -> JSONObject:
    """The ``/predict`` route's answer."""
    return {
        "model_name": prediction.model_name,
        "model_version": prediction.model_version,
        "predictions": list(prediction.predictions),
    }
