"""Protocol-neutral core types: datatypes, tensors, requests, responses and metadata.

Everything above this module (codecs, service, transports) speaks in these types only.
A tensor's data is always a NumPy array; BYTES tensors are object arrays of ``bytes``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

__all__ = [
    "Array",
    "DataType",
    "InferRequest",
    "InferResponse",
    "JSONObject",
    "JSONValue",
    "ModelMetadata",
    "ModelState",
    "Parameters",
    "Prediction",
    "RepositoryEntry",
    "RequestedOutput",
    "ServerMetadata",
    "Tensor",
    "TensorSpec",
]

#: A NumPy array of any dtype: tensor data, whose dtype a :class:`DataType` names.
Array: TypeAlias = npt.NDArray[Any]

#: A JSON value as a JSON parser returns it (and a JSON encoder takes it).
JSONValue: TypeAlias = "str | int | float | bool | list[JSONValue] | dict[str, JSONValue] | None"

#: A JSON object.
JSONObject: TypeAlias = dict[str, JSONValue]

#: Request and response parameters: string keys to JSON values (scalars over gRPC).
Parameters: TypeAlias = JSONObject


class DataType(enum.StrEnum):
    """The Open Inference Protocol tensor datatypes."""

    BOOL = "BOOL"
    UINT8 = "UINT8"
    UINT16 = "UINT16"
    UINT32 = "UINT32"
    UINT64 = "UINT64"
    INT8 = "INT8"
    INT16 = "INT16"
    INT32 = "INT32"
    INT64 = "INT64"
    FP16 = "FP16"
    FP32 = "FP32"
    FP64 = "FP64"
    BYTES = "BYTES"

    @classmethod
    def parse(cls, name: str) -> DataType:
        """Return the datatype called ``name`` or raise ``ValueError`` listing the valid names."""
        try:
            return cls(name)
        except ValueError:
            valid = ", ".join(member.value for member in cls)
            raise ValueError(f"unknown datatype {name!r}; expected one of {valid}") from None

    @classmethod
    def from_numpy(cls, dtype: np.dtype[Any]) -> DataType:
        """Return the datatype of a NumPy dtype (object and string dtypes map to BYTES)."""
        if dtype.kind in ("O", "S", "U"):
            return cls.BYTES
        try:
            return _FROM_NUMPY[np.dtype(dtype).newbyteorder("=")]
        except KeyError:
            raise ValueError(
                f"NumPy dtype {dtype} has no Open Inference Protocol datatype"
            ) from None

    @property
    def numpy(self) -> np.dtype[Any]:
        """The NumPy dtype of this datatype (``object`` for BYTES), little-endian."""
        return _TO_NUMPY[self]

    @property
    def itemsize(self) -> int:
        """Bytes per element in the binary encoding; 0 for BYTES (variable length)."""
        return 0 if self is DataType.BYTES else _TO_NUMPY[self].itemsize

    @property
    def triton_name(self) -> str:
        """The name Triton's model configuration uses (``TYPE_FP32``, ``TYPE_STRING``...)."""
        return "TYPE_STRING" if self is DataType.BYTES else f"TYPE_{self.value}"


_TO_NUMPY: dict[DataType, np.dtype[Any]] = {
    DataType.BOOL: np.dtype(np.bool_),
    DataType.UINT8: np.dtype("<u1"),
    DataType.UINT16: np.dtype("<u2"),
    DataType.UINT32: np.dtype("<u4"),
    DataType.UINT64: np.dtype("<u8"),
    DataType.INT8: np.dtype("<i1"),
    DataType.INT16: np.dtype("<i2"),
    DataType.INT32: np.dtype("<i4"),
    DataType.INT64: np.dtype("<i8"),
    DataType.FP16: np.dtype("<f2"),
    DataType.FP32: np.dtype("<f4"),
    DataType.FP64: np.dtype("<f8"),
    DataType.BYTES: np.dtype(object),
}
_FROM_NUMPY: dict[np.dtype[Any], DataType] = {
    dtype.newbyteorder("="): datatype
    for datatype, dtype in _TO_NUMPY.items()
    if datatype is not DataType.BYTES
}


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """A declared tensor: name, datatype and full shape (``-1`` marks a variable dimension)."""

    name: str
    datatype: DataType
    shape: tuple[int, ...]

    def to_dict(self) -> JSONObject:
        """The V2 ``$metadata_tensor`` object."""
        return {"name": self.name, "datatype": self.datatype.value, "shape": list(self.shape)}


@dataclass(slots=True)
class Tensor:
    """A named tensor with data. ``parameters`` carries transport hints (e.g. binary sizes)."""

    name: str
    datatype: DataType
    data: Array
    parameters: Parameters = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        """The tensor's shape."""
        return tuple(int(d) for d in self.data.shape)


@dataclass(frozen=True, slots=True)
class RequestedOutput:
    """An output the client asked for, with its per-output parameters (e.g. ``binary_data``)."""

    name: str
    parameters: Parameters = field(default_factory=dict)


@dataclass(slots=True)
class InferRequest:
    """A transport-neutral inference request, with its deadline."""

    model_name: str
    inputs: list[Tensor]
    model_version: str | None = None
    id: str | None = None
    #: The client's other parameters (the codecs take ``timeout`` out into ``timeout_us``).
    parameters: Parameters = field(default_factory=dict)
    #: ``None`` means "all outputs".
    outputs: list[RequestedOutput] | None = None
    #: The client's queue timeout in microseconds (its ``timeout`` parameter): a request that
    #: has not started running by then is dropped with DeadlineExceededError. ``0``: none of
    #: its own; the model's ``default_timeout_us`` applies.
    timeout_us: int = 0
    #: When the caller stops waiting, as a ``time.monotonic()`` value (a gRPC call's deadline,
    #: less the transport's margin); ``None``: never. The request is dropped from the queue at
    #: this time at the latest, whatever its timeout.
    deadline: float | None = None


@dataclass(slots=True)
class InferResponse:
    """A transport-neutral inference response."""

    model_name: str
    model_version: str
    outputs: list[Tensor]
    id: str | None = None
    parameters: Parameters = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ModelMetadata:
    """What ``GET /v2/models/{name}`` returns."""

    name: str
    versions: tuple[str, ...]
    platform: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def to_dict(self) -> JSONObject:
        """The V2 ``$metadata_model_response`` object."""
        return {
            "name": self.name,
            "versions": list(self.versions),
            "platform": self.platform,
            "inputs": [spec.to_dict() for spec in self.inputs],
            "outputs": [spec.to_dict() for spec in self.outputs],
        }


@dataclass(frozen=True, slots=True)
class ServerMetadata:
    """What ``GET /v2`` returns: the server's name, version and implemented extensions."""

    name: str
    version: str
    extensions: tuple[str, ...]


class ModelState(enum.StrEnum):
    """A model's state as the repository index reports it (Triton's names)."""

    READY = "READY"
    LOADING = "LOADING"
    UNLOADING = "UNLOADING"
    UNAVAILABLE = "UNAVAILABLE"


@dataclass(frozen=True, slots=True)
class RepositoryEntry:
    """One row of the repository index: a model (one row per loaded version) and its state."""

    name: str
    state: ModelState
    #: Why the model is in that state ("" when READY).
    reason: str
    #: The loaded version; ``None`` for a model with no version loaded.
    version: str | None = None


@dataclass(frozen=True, slots=True)
class Prediction:
    """The answer to a ``/predict`` call: one JSON entry per instance, in instance order.

    An entry is ``{"label", "score", "top_k"}`` for a classifier, ``{"embedding"}`` for an
    embedding model, else the outputs by name (``processing.predict.predictions``).
    """

    model_name: str
    model_version: str
    predictions: list[JSONObject]
