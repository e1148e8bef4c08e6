"""The transports the golden suite runs through, as unmodified tritonclient clients.

tritonclient's HTTP and gRPC clients share one API, so each golden test is written once and
parametrized over TRANSPORTS. A transport is added here when it is implemented.

The few places where the two clients differ (HTTP returns dicts, gRPC protobuf messages or
``as_json=True`` dicts whose int64 fields are strings; only HTTP has a JSON/binary choice;
error statuses) are normalised by the helpers below, keyed by transport, so that the tests
themselves never branch on the transport.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from shipyard.testing import RunningServer

TRANSPORTS = ["http", "grpc"]

#: The status each transport's InferenceServerException.status() reports, by error kind.
STATUS: dict[str, dict[str, str]] = {
    "http": {
        "invalid": "400",
        "not_found": "404",
        "unavailable": "503",
        "unsupported": "501",
        "deadline": "504",
    },
    "grpc": {
        "invalid": "StatusCode.INVALID_ARGUMENT",
        "not_found": "StatusCode.NOT_FOUND",
        "unavailable": "StatusCode.UNAVAILABLE",
        "unsupported": "StatusCode.UNIMPLEMENTED",
        "deadline": "StatusCode.DEADLINE_EXCEEDED",
    },
}


def make_client(transport: str, server: RunningServer) -> Any:
    """An unmodified tritonclient client of ``transport`` connected to ``server``."""
    if transport == "http":
        import tritonclient.http as httpclient

        return httpclient.InferenceServerClient(server.address)
    if transport == "grpc":
        import tritonclient.grpc as grpcclient

        return grpcclient.InferenceServerClient(server.grpc_address)
    raise ValueError(f"unknown transport {transport!r}")


def client_module(transport: str) -> Any:
    """The tritonclient module of ``transport`` (for InferInput, InferRequestedOutput)."""
    if transport == "http":
        import tritonclient.http as httpclient

        return httpclient
    if transport == "grpc":
        import tritonclient.grpc as grpcclient

        return grpcclient
    raise ValueError(f"unknown transport {transport!r}")


def expected_status(transport: str, kind: str) -> str:
    """The ``status()`` string ``transport`` reports for an error of ``kind``."""
    return STATUS[transport][kind]


# -- building requests ---------------------------------------------------------------------


def infer_input(transport: str, name: str, array: npt.NDArray[Any], binary: bool = True) -> Any:
    """An InferInput holding ``array``; ``binary`` picks the HTTP encoding (gRPC is always raw).

    The declared datatype and shape are the array's (tritonclient insists they agree).
    """
    module = client_module(transport)
    tensor = module.InferInput(name, list(array.shape), _datatype(array.dtype))
    if transport == "http":
        tensor.set_data_from_numpy(array, binary_data=binary)
    else:
        tensor.set_data_from_numpy(array)
    return tensor


def requested_output(transport: str, name: str, binary: bool = True) -> Any:
    """An InferRequestedOutput; ``binary`` picks the HTTP encoding (gRPC is always raw)."""
    module = client_module(transport)
    if transport == "http":
        return module.InferRequestedOutput(name, binary_data=binary)
    return module.InferRequestedOutput(name)


def _datatype(dtype: np.dtype[Any]) -> str:
    from tritonclient.utils import np_to_triton_dtype

    name: str = np_to_triton_dtype(dtype)
    return name


# -- reading answers -----------------------------------------------------------------------


def response_fields(transport: str, result: Any) -> dict[str, Any]:
    """``model_name``, ``model_version`` and ``id`` of an InferResult ('' when absent)."""
    raw = result.get_response() if transport == "http" else result.get_response(as_json=True)
    return {key: raw.get(key, "") for key in ("model_name", "model_version", "id")}


def output_array(transport: str, result: Any, name: str) -> npt.NDArray[Any] | None:
    """``result.as_numpy(name)`` with BYTES always as ``bytes``.

    tritonclient.http gives BYTES that came back as JSON as ``str`` elements.
    """
    array: npt.NDArray[Any] | None = result.as_numpy(name)
    if array is not None and array.dtype == np.object_:
        flat = [v.encode("utf-8") if isinstance(v, str) else v for v in array.reshape(-1)]
        array = np.array(flat, dtype=np.object_).reshape(array.shape)
    return array


def output_names(transport: str, result: Any) -> list[str]:
    """The names of the outputs an InferResult holds, in order."""
    raw = result.get_response() if transport == "http" else result.get_response(as_json=True)
    return [out["name"] for out in raw.get("outputs", [])]


def server_metadata(transport: str, client: Any) -> dict[str, Any]:
    """``{"name", "version", "extensions"}``."""
    raw = client.get_server_metadata() if transport == "http" else _json(client.get_server_metadata)
    return {
        "name": raw["name"],
        "version": raw["version"],
        "extensions": list(raw.get("extensions", [])),
    }


def model_metadata(transport: str, client: Any, name: str, version: str = "") -> dict[str, Any]:
    """``{"name", "versions", "platform", "inputs", "outputs"}`` with integer shapes."""
    if transport == "http":
        raw = client.get_model_metadata(name, version)
    else:
        raw = _json(client.get_model_metadata, name, version)

    def tensors(key: str) -> list[dict[str, Any]]:
        return [
            {"name": t["name"], "datatype": t["datatype"], "shape": [int(d) for d in t["shape"]]}
            for t in raw.get(key, [])
        ]

    return {
        "name": raw["name"],
        "versions": list(raw.get("versions", [])),
        "platform": raw["platform"],
        "inputs": tensors("inputs"),
        "outputs": tensors("outputs"),
    }


def model_config(transport: str, client: Any, name: str) -> dict[str, Any]:
    """Triton's model configuration as a dict, with ``max_batch_size`` and input/output names."""
    raw = (
        client.get_model_config(name)
        if transport == "http"
        else _json(client.get_model_config, name)["config"]
    )
    return {
        "name": raw["name"],
        "max_batch_size": int(raw.get("max_batch_size", 0)),
        "input": [i["name"] for i in raw.get("input", [])],
        "output": [o["name"] for o in raw.get("output", [])],
    }


def repository_index(transport: str, client: Any) -> list[dict[str, str]]:
    """The repository index rows, each with name, version, state and reason ('' if absent)."""
    if transport == "http":
        rows = client.get_model_repository_index()
    else:
        rows = _json(client.get_model_repository_index).get("models", [])
    return [
        {key: str(row.get(key, "")) for key in ("name", "version", "state", "reason")}
        for row in rows
    ]


def model_stats(transport: str, client: Any, name: str, version: str = "") -> list[dict[str, Any]]:
    """Per version: inference_count, execution_count, success/fail counts and batch sizes."""
    if transport == "http":
        raw = client.get_inference_statistics(name, version)
    else:
        raw = _json(client.get_inference_statistics, name, version)
    stats = []
    for entry in raw.get("model_stats", []):
        inference = entry.get("inference_stats", {})
        stats.append(
            {
                "name": entry["name"],
                "version": entry.get("version", ""),
                "inference_count": int(entry.get("inference_count", 0)),
                "execution_count": int(entry.get("execution_count", 0)),
                "success": int(inference.get("success", {}).get("count", 0)),
                "fail": int(inference.get("fail", {}).get("count", 0)),
                "batch_sizes": sorted(int(b["batch_size"]) for b in entry.get("batch_stats", [])),
            }
        )
    return stats


def _json(method: Any, *args: Any) -> dict[str, Any]:
    value: dict[str, Any] = method(*args, as_json=True)
    return value
