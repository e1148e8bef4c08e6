"""Tests for shipyard.protocol.model_config: Triton's JSON model configuration."""

from __future__ import annotations

from shipyard.config import DynamicBatchingConfig, ModelConfig, VersionPolicy
from shipyard.protocol.model_config import triton_model_config
from shipyard.types import DataType, TensorSpec

INPUTS = (
    TensorSpec("INPUT0", DataType.FP32, (-1, 3, 224)),
    TensorSpec("TEXT", DataType.BYTES, (-1, 1)),
)
OUTPUTS = (TensorSpec("OUTPUT0", DataType.FP16, (-1, 10)),)


def test_batched_model_drops_the_batch_dim() -> None:
    """With max_batch_size > 0, dims leave out dim 0 as Triton expects."""
    body = triton_model_config(ModelConfig(name="m", max_batch_size=8), INPUTS, OUTPUTS)
    assert body["max_batch_size"] == 8
    assert body["input"] == [
        {"name": "INPUT0", "data_type": "TYPE_FP32", "dims": [3, 224], "format": "FORMAT_NONE"},
        {"name": "TEXT", "data_type": "TYPE_STRING", "dims": [1], "format": "FORMAT_NONE"},
    ]
    assert body["output"] == [{"name": "OUTPUT0", "data_type": "TYPE_FP16", "dims": [10]}]


def test_unbatched_model_keeps_every_dim() -> None:
    """With max_batch_size 0, dims are the full shape (including a -1 first dim)."""
    body = triton_model_config(ModelConfig(name="m", max_batch_size=0), INPUTS, OUTPUTS)
    assert body["max_batch_size"] == 0
    assert [i["dims"] for i in body["input"]] == [[-1, 3, 224], [-1, 1]]
    assert body["output"][0]["dims"] == [-1, 10]
    assert "dynamic_batching" not in body


def test_unresolved_max_batch_size_counts_as_zero() -> None:
    """A config whose max_batch_size is still None reports 0 and full dims."""
    body = triton_model_config(ModelConfig(name="m"), INPUTS, OUTPUTS)
    assert body["max_batch_size"] == 0
    assert body["input"][0]["dims"] == [-1, 3, 224]


def test_bytes_is_type_string() -> None:
    """BYTES tensors are TYPE_STRING in Triton's configuration."""
    spec = (TensorSpec("s", DataType.BYTES, (2,)),)
    body = triton_model_config(ModelConfig(name="m", max_batch_size=0), spec, spec)
    assert body["input"][0]["data_type"] == body["output"][0]["data_type"] == "TYPE_STRING"


def test_header_fields() -> None:
    """Name, platform, backend and instance group describe the served model."""
    body = triton_model_config(
        ModelConfig(name="m", backend="onnxruntime", max_batch_size=0, instance_count=3),
        INPUTS,
        OUTPUTS,
    )
    assert body["name"] == "m"
    assert body["platform"] == "onnxruntime_onnx"
    assert body["backend"] == "onnxruntime"
    assert body["instance_group"] == [{"name": "m", "kind": "KIND_CPU", "count": 3}]
    lite = triton_model_config(ModelConfig(name="m", backend="tflite"), INPUTS, OUTPUTS)
    assert (lite["platform"], lite["backend"]) == ("tensorflow_lite", "tflite")


def test_dynamic_batching_section() -> None:
    """A batched model with dynamic batching reports its queue policy in Triton's terms."""
    batching = DynamicBatchingConfig(
        max_queue_delay_us=250,
        preferred_batch_sizes=(4, 8),
        max_queue_size=7,
        default_timeout_us=9000,
    )
    config = ModelConfig(name="m", max_batch_size=8, dynamic_batching=batching)
    body = triton_model_config(config, INPUTS, OUTPUTS)
    assert body["dynamic_batching"] == {
        "preferred_batch_size": [4, 8],
        "max_queue_delay_microseconds": 250,
        "default_queue_policy": {"max_queue_size": 7, "default_timeout_microseconds": 9000},
    }


def test_no_dynamic_batching_section_when_disabled() -> None:
    """dynamic_batching = false removes the section even for a batched model."""
    config = ModelConfig(name="m", max_batch_size=8, dynamic_batching=None)
    assert "dynamic_batching" not in triton_model_config(config, INPUTS, OUTPUTS)


def test_version_policies() -> None:
    """Each version policy kind is written in Triton's shape."""

    def policy(p: VersionPolicy) -> object:
        config = ModelConfig(name="m", version_policy=p)
        return triton_model_config(config, INPUTS, OUTPUTS)["version_policy"]

    assert policy(VersionPolicy("latest", latest=2)) == {"latest": {"num_versions": 2}}
    assert policy(VersionPolicy("all")) == {"all": {}}
    assert policy(VersionPolicy("specific", versions=(1, 3))) == {
        "specific": {"versions": ["1", "3"]}
    }
