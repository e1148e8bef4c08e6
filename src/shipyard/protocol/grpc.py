"""The V2 gRPC codec: ``inference.*`` protobuf messages ↔ core types. No I/O.

Tensor data arrives either in ``raw_input_contents`` (one little-endian blob per input, the fast
path every Triton client uses) or in each input's typed ``contents``; a request that mixes the
two is refused. Responses always use ``raw_output_contents``, as Triton's do. The service's other
answers (server metadata, model configuration, statistics, repository index) are core types that
become their messages here, field by field, as the REST codec makes them JSON.

Needs the ``grpc`` extra (protobuf); :mod:`shipyard.server.grpc` imports this lazily.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping, Sequence

import numpy as np

from shipyard.config import ModelConfig
from shipyard.errors import InternalError, InvalidInputError
from shipyard.protocol import grpc_service_pb2 as pb
from shipyard.protocol.binary import MAX_DIMS, array_from_raw, array_to_raw, element_count
from shipyard.protocol.model_config import triton_dims, triton_platform
from shipyard.protocol.parameters import pop_timeout_us
from shipyard.stats import Duration, ModelStats
from shipyard.types import (
    Array,
    DataType,
    InferRequest,
    InferResponse,
    JSONValue,
    ModelMetadata,
    Parameters,
    RepositoryEntry,
    RequestedOutput,
    ServerMetadata,
    Tensor,
)

__all__ = [
    "CONTENTS_FIELD",
    "MAX_DIMS",
    "decode_infer_request",
    "decode_parameters",
    "decode_repository_parameters",
    "encode_infer_response",
    "encode_model_config",
    "encode_model_metadata",
    "encode_parameters",
    "encode_repository_index",
    "encode_server_metadata",
    "encode_statistics",
]

#: The typed ``InferTensorContents`` field of each datatype; FP16 has none (raw only).
CONTENTS_FIELD: dict[DataType, str] = {
    DataType.BOOL: "bool_contents",
    DataType.UINT8: "uint_contents",
    DataType.UINT16: "uint_contents",
    DataType.UINT32: "uint_contents",
    DataType.UINT64: "uint64_contents",
    DataType.INT8: "int_contents",
    DataType.INT16: "int_contents",
    DataType.INT32: "int_contents",
    DataType.INT64: "int64_contents",
    DataType.FP32: "fp32_contents",
    DataType.FP64: "fp64_contents",
    DataType.BYTES: "bytes_contents",
}
_ALL_FIELDS = tuple(dict.fromkeys(CONTENTS_FIELD.values()))
_NARROW_INTS = (
    DataType.INT8,
    DataType.INT16,
    DataType.UINT8,
    DataType.UINT16,
)
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
#: Datatype by wire name: one dict lookup instead of an enum call per input.
_DATATYPES: dict[str, DataType] = {t.value: t for t in DataType}

# -- parameters -----------------------------------------------------------------------------


def decode_parameters(parameters: Mapping[str, pb.InferParameter], where: str) -> Parameters:
    """``map<string, InferParameter>`` → plain Python values."""
    out: Parameters = {}
    for key, parameter in parameters.items():
        choice = parameter.WhichOneof("parameter_choice")
        if choice is None:
            raise InvalidInputError(f"{where}: parameter {key!r} has no value")
        out[key] = getattr(parameter, choice)
    return out


def decode_repository_parameters(
    parameters: Mapping[str, pb.ModelRepositoryParameter], where: str
) -> dict[str, bool | int | str | bytes]:
    """``map<string, ModelRepositoryParameter>`` → plain Python values."""
    out: dict[str, bool | int | str | bytes] = {}
    for key, parameter in parameters.items():
        choice = parameter.WhichOneof("parameter_choice")
        if choice is None:
            raise InvalidInputError(f"{where}: parameter {key!r} has no value")
        out[key] = getattr(parameter, choice)
    return out


def encode_parameters(
    parameters: Mapping[str, JSONValue], target: MutableMapping[str, pb.InferParameter]
) -> None:
    """Fill ``target`` (a ``map<string, InferParameter>`` field) from plain Python values."""
    for key, value in parameters.items():
        parameter = target[key]
        if isinstance(value, bool):
            parameter.bool_param = value
        elif isinstance(value, int):
            if _INT64_MIN <= value <= _INT64_MAX:
                parameter.int64_param = value
            else:
                parameter.uint64_param = value
        elif isinstance(value, float):
            parameter.double_param = value
        elif isinstance(value, str):
            parameter.string_param = value
        else:
            raise InternalError(
                f"parameter {key!r}: {type(value).__name__} has no InferParameter field"
            )


# -- inference ------------------------------------------------------------------------------


def decode_infer_request(message: pb.ModelInferRequest, max_tensor_elements: int) -> InferRequest:
    """Decode a ``ModelInferRequest`` into an InferRequest; raise InvalidInputError.

    The hot path of every gRPC inference: each field is read once, the error text is built
    only when there is an error, and empty parameter maps are skipped.
    """
    items = message.inputs
    if not items:
        raise InvalidInputError(
            f"model {message.model_name!r}: the request needs at least one input"
        )
    raw = message.raw_input_contents
    if raw:
        mixed = [t.name for t in items if t.HasField("contents")]
        if mixed:
            raise InvalidInputError(
                f"model {message.model_name!r}: the request has raw_input_contents, so no input "
                f"may set 'contents'; input(s) {', '.join(repr(n) for n in mixed)} do"
            )
        if len(raw) != len(items):
            raise InvalidInputError(
                f"model {message.model_name!r}: {len(raw)} raw_input_contents entries for "
                f"{len(items)} inputs; send one per input, in input order"
            )
    inputs: list[Tensor] = []
    for i, item in enumerate(items):
        name = item.name
        datatype = _DATATYPES.get(item.datatype)
        if datatype is None:
            try:
                datatype = DataType.parse(item.datatype)
            except ValueError as exc:
                where = f"model {message.model_name!r}"
                raise InvalidInputError(f"{where}, input {name!r}: {exc}") from None
        shape = list(item.shape)  # int64 values: always integers
        if len(shape) > MAX_DIMS:
            raise InvalidInputError(
                f"model {message.model_name!r}, input {name!r}: shape has {len(shape)} "
                f"dimensions; at most {MAX_DIMS} are supported"
            )
        count = _count(shape)
        if count < 0 or count > max_tensor_elements:  # let element_count say what is wrong
            count = element_count(name, shape, max_tensor_elements)
        elif count == 0 and _count([dim for dim in shape if dim]) > max_tensor_elements:
            # Empty, but numpy still refuses a shape whose other dimensions overflow.
            raise InvalidInputError(
                f"model {message.model_name!r}, input {name!r}: shape {shape} is empty but its "
                f"other dimensions exceed the server's limit of {max_tensor_elements} elements "
                "(max_tensor_elements)"
            )
        if raw:
            data = array_from_raw(name, datatype, shape, raw[i], count)
        else:
            data = _from_contents(name, datatype, shape, item.contents, count)
        params = (
            decode_parameters(item.parameters, f"model {message.model_name!r}, input {name!r}")
            if item.parameters
            else {}
        )
        inputs.append(Tensor(name, datatype, data, params))
    outputs = None
    if message.outputs:
        outputs = [
            RequestedOutput(
                out.name,
                decode_parameters(
                    out.parameters, f"model {message.model_name!r}, output {out.name!r}"
                )
                if out.parameters
                else {},
            )
            for out in message.outputs
        ]
    parameters = (
        decode_parameters(message.parameters, f"model {message.model_name!r}")
        if message.parameters
        else {}
    )
    return InferRequest(
        model_name=message.model_name,
        model_version=message.model_version or None,
        id=message.id or None,
        timeout_us=pop_timeout_us(parameters, message.model_name) if parameters else 0,
        parameters=parameters,
        inputs=inputs,
        outputs=outputs,
    )


def _count(shape: list[int]) -> int:
    """The element count of ``shape``, or -1 when a dimension is negative."""
    count = 1
    for dim in shape:
        if dim < 0:
            return -1
        count *= dim
    return count


def _from_contents(
    name: str, datatype: DataType, shape: list[int], contents: pb.InferTensorContents, count: int
) -> Array:
    field = CONTENTS_FIELD.get(datatype)
    stray = [f for f in _ALL_FIELDS if f != field and len(getattr(contents, f))]
    if field is None:
        raise InvalidInputError(
            f"input {name!r}: {datatype} has no typed contents field; send it in raw_input_contents"
        )
    if stray:
        raise InvalidInputError(
            f"input {name!r}: datatype {datatype} takes {field}, but the request sets "
            f"{', '.join(stray)}"
        )
    values = getattr(contents, field)
    if len(values) != count:
        if not len(values) and count:
            raise InvalidInputError(
                f"input {name!r}: no data: set contents.{field} or use raw_input_contents"
            )
        raise InvalidInputError(
            f"input {name!r}: shape {shape} needs {count} elements but contents.{field} has "
            f"{len(values)}"
        )
    if datatype is DataType.BYTES:
        out = np.empty(count, dtype=object)
        out[:] = list(values)
        return out.reshape(shape)
    if datatype in _NARROW_INTS and count:
        array = np.fromiter(values, dtype=np.int64, count=count)
        info = np.iinfo(datatype.numpy)
        if int(array.min()) < info.min or int(array.max()) > info.max:
            raise InvalidInputError(
                f"input {name!r}: a value is out of range for {datatype} ({info.min}..{info.max})"
            )
        return array.astype(datatype.numpy).reshape(shape)
    return np.fromiter(values, dtype=datatype.numpy, count=count).reshape(shape)


def encode_infer_response(response: InferResponse) -> pb.ModelInferResponse:
    """Encode a response with every output in ``raw_output_contents`` (as Triton does)."""
    outputs = response.outputs
    message = pb.ModelInferResponse(
        model_name=response.model_name,
        model_version=response.model_version,
        id=response.id or "",
        raw_output_contents=[array_to_raw(t.datatype, t.data) for t in outputs],
    )
    if response.parameters:
        encode_parameters(response.parameters, message.parameters)
    add = message.outputs.add
    for tensor in outputs:
        # ndarray.shape is already a tuple of ints (Tensor.shape would rebuild it).
        output = add(name=tensor.name, datatype=tensor.datatype.value, shape=tensor.data.shape)
        if tensor.parameters:
            encode_parameters(tensor.parameters, output.parameters)
    return message


# -- metadata, configuration, statistics, repository ----------------------------------------


def encode_model_metadata(metadata: ModelMetadata) -> pb.ModelMetadataResponse:
    """The ``ModelMetadataResponse`` of a model."""
    tensor = pb.ModelMetadataResponse.TensorMetadata
    return pb.ModelMetadataResponse(
        name=metadata.name,
        versions=list(metadata.versions),
        platform=metadata.platform,
        inputs=[
            tensor(name=s.name, datatype=s.datatype.value, shape=s.shape) for s in metadata.inputs
        ],
        outputs=[
            tensor(name=s.name, datatype=s.datatype.value, shape=s.shape) for s in metadata.outputs
        ],
    )


def encode_server_metadata(metadata: ServerMetadata) -> pb.ServerMetadataResponse:
    """The ``ServerMetadataResponse``."""
    return pb.ServerMetadataResponse(
        name=metadata.name, version=metadata.version, extensions=metadata.extensions
    )


def encode_model_config(config: ModelConfig) -> pb.ModelConfigResponse:
    """Triton's model configuration of a served model (its signature in ``config``)."""
    max_batch = config.max_batch_size or 0
    batched = max_batch > 0
    message = pb.ModelConfig(
        name=config.name,
        platform=triton_platform(config.backend),
        backend=config.backend,
        max_batch_size=max_batch,
        input=[
            pb.ModelInput(
                name=s.name,
                data_type=s.datatype.triton_name,
                format="FORMAT_NONE",
                dims=triton_dims(s, batched),
            )
            for s in config.inputs
        ],
        output=[
            pb.ModelOutput(
                name=s.name, data_type=s.datatype.triton_name, dims=triton_dims(s, batched)
            )
            for s in config.outputs
        ],
        instance_group=[
            pb.ModelInstanceGroup(name=config.name, kind="KIND_CPU", count=config.instance_count)
        ],
    )
    policy = config.version_policy
    if policy.kind == "all":
        message.version_policy.all.SetInParent()
    elif policy.kind == "specific":
        message.version_policy.specific.versions.extend(policy.versions)
    else:
        message.version_policy.latest.num_versions = policy.latest
    batching = config.dynamic_batching
    if batched and batching is not None:
        message.dynamic_batching.CopyFrom(
            pb.ModelDynamicBatching(
                preferred_batch_size=batching.preferred_batch_sizes,
                max_queue_delay_microseconds=batching.max_queue_delay_us,
                default_queue_policy=pb.ModelQueuePolicy(
                    max_queue_size=batching.max_queue_size,
                    default_timeout_microseconds=batching.default_timeout_us,
                ),
            )
        )
    return pb.ModelConfigResponse(config=message)


def _duration(duration: Duration) -> pb.StatisticDuration:
    return pb.StatisticDuration(count=duration.count, ns=duration.ns)


def _model_stats(stats: ModelStats) -> pb.ModelStatistics:
    return pb.ModelStatistics(
        name=stats.name,
        version=stats.version,
        last_inference=stats.last_inference_ms,
        inference_count=stats.inference_count,
        execution_count=stats.execution_count,
        inference_stats=pb.InferStatistics(
            success=_duration(stats.success),
            fail=_duration(stats.fail),
            queue=_duration(stats.queue),
            compute_input=_duration(stats.compute_input),
            compute_infer=_duration(stats.compute_infer),
            compute_output=_duration(stats.compute_output),
            cache_hit=pb.StatisticDuration(),
            cache_miss=pb.StatisticDuration(),
        ),
        batch_stats=[
            pb.InferBatchStatistics(
                batch_size=size,
                compute_input=_duration(batch.compute_input),
                compute_infer=_duration(batch.compute_infer),
                compute_output=_duration(batch.compute_output),
            )
            for size, batch in sorted(stats.batches.items())
        ],
    )


def encode_statistics(stats: Sequence[ModelStats]) -> pb.ModelStatisticsResponse:
    """The ``ModelStatisticsResponse`` of some model versions."""
    return pb.ModelStatisticsResponse(model_stats=[_model_stats(entry) for entry in stats])


def encode_repository_index(entries: Sequence[RepositoryEntry]) -> pb.RepositoryIndexResponse:
    """The ``RepositoryIndexResponse``: one entry per model (version)."""
    row = pb.RepositoryIndexResponse.ModelIndex
    return pb.RepositoryIndexResponse(
        models=[
            row(name=e.name, version=e.version or "", state=e.state.value, reason=e.reason)
            for e in entries
        ]
    )
