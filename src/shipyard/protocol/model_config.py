"""Triton's model configuration (the ``model_configuration`` extension) as JSON.

perf_analyzer and other Triton tooling read this before they send a request: ``dims`` leave out
the batch dimension whenever ``max_batch_size`` > 0. The gRPC codec builds the same
configuration as a ``ModelConfig`` message from the same helpers.
"""

from __future__ import annotations

from shipyard.config import ModelConfig
from shipyard.types import JSONObject, TensorSpec

__all__ = ["triton_dims", "triton_model_config", "triton_platform"]

_PLATFORMS = {"onnxruntime": "onnxruntime_onnx", "tflite": "tensorflow_lite"}


def triton_platform(backend: str) -> str:
    """Return Triton's ``platform`` name for a Shipyard backend (the backend's own otherwise)."""
    return _PLATFORMS.get(backend, backend)


def triton_dims(spec: TensorSpec, batched: bool) -> tuple[int, ...]:
    """Return a tensor's ``dims``: its shape without the batch dimension when ``batched``."""
    return spec.shape[1:] if batched else spec.shape


def _tensor(spec: TensorSpec, batched: bool) -> JSONObject:
    return {
        "name": spec.name,
        "data_type": spec.datatype.triton_name,
        "dims": list(triton_dims(spec, batched)),
    }


def triton_model_config(
    config: ModelConfig, inputs: tuple[TensorSpec, ...], outputs: tuple[TensorSpec, ...]
) -> JSONObject:
    """Describe a served model as Triton's ``ModelConfig`` JSON."""
    max_batch = config.max_batch_size or 0
    policy = config.version_policy
    version_policy: JSONObject
    if policy.kind == "all":
        version_policy = {"all": {}}
    elif policy.kind == "specific":
        version_policy = {"specific": {"versions": [str(v) for v in policy.versions]}}
    else:
        version_policy = {"latest": {"num_versions": policy.latest}}
    body: JSONObject = {
        "name": config.name,
        "platform": triton_platform(config.backend),
        "backend": config.backend,
        "version_policy": version_policy,
        "max_batch_size": max_batch,
        "input": [{**_tensor(s, max_batch > 0), "format": "FORMAT_NONE"} for s in inputs],
        "output": [_tensor(s, max_batch > 0) for s in outputs],
        "instance_group": [
            {"name": config.name, "kind": "KIND_CPU", "count": config.instance_count}
        ],
    }
    batching = config.dynamic_batching
    if max_batch > 0 and batching is not None:
        body["dynamic_batching"] = {
            "preferred_batch_size": list(batching.preferred_batch_sizes),
            "max_queue_delay_microseconds": batching.max_queue_delay_us,
            "default_queue_policy": {
                "max_queue_size": batching.max_queue_size,
                "default_timeout_microseconds": batching.default_timeout_us,
            },
        }
    return body
