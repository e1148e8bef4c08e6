"""Execution provider choice, device ids, reported CPU fallback and I/O binding.

The GPU cases use injected provider lists (what an onnxruntime-gpu build reports): they test
Shipyard's decisions, not a GPU. Real GPU runs are benchmarks/gpu_check.sh's job.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shipyard.backends.onnxruntime import OnnxRuntimeBackend
from shipyard.backends.providers import CPU, ProviderPlan, fallback_note, plan_providers
from shipyard.config import ModelConfig, parse_model_config
from shipyard.errors import ConfigError, ModelLoadError
from shipyard.hardware import GpuInfo, probe
from shipyard.testing.models import cnn_model, write_model
from shipyard.tuning.baseline import Baseline, search_space, settings_changes
from shipyard.tuning.search import Candidate
from shipyard.tuning.variants import suitable_providers
from tests.cpus import AVX2_EPYC

CUDA = "CUDAExecutionProvider"
TRT = "TensorrtExecutionProvider"
GPU_BUILD = (TRT, CUDA, CPU)
A100 = GpuInfo("NVIDIA A100-SXM4-40GB", 40 << 30, "8.0", "550.54")


def test_default_on_a_gpu_build_is_cuda_then_cpu_without_tensorrt() -> None:
    """With no providers in model.toml a GPU build runs CUDA, then the CPU for what CUDA
    lacks; TensorRT (engine builds per shape, minutes) only when model.toml names it."""
    plan = plan_providers((), GPU_BUILD)
    assert plan.names == (CUDA, CPU)
    assert plan.arguments == [(CUDA, {"device_id": "0"}), CPU]
    assert plan.gpu
    assert plan_providers((TRT,), GPU_BUILD).names == (TRT, CPU)


def test_device_id_reaches_every_gpu_provider() -> None:
    """``device_id`` from model.toml is passed to the GPU providers, not to the CPU."""
    plan = plan_providers((TRT, CUDA), GPU_BUILD, device_id=3)
    assert plan.arguments == [(TRT, {"device_id": "3"}), (CUDA, {"device_id": "3"}), CPU]


def test_a_provider_missing_from_the_build_is_a_load_error() -> None:
    """Asking for CUDA on a CPU-only build fails the load, naming the wheel to install."""
    with pytest.raises(ModelLoadError, match=r"CUDAExecutionProvider.*onnxruntime-gpu"):
        plan_providers((CUDA,), (CPU,))


def test_cpu_only_build_plans_the_cpu() -> None:
    """On a CPU-only build the plan is the CPU provider, with nothing to fall back from."""
    plan = plan_providers((), ("AzureExecutionProvider", CPU))
    assert plan.names == (CPU,)
    assert not plan.gpu
    assert fallback_note(plan, [CPU]) is None


def test_a_gpu_that_did_not_start_is_reported() -> None:
    """When the session runs on the CPU although CUDA was asked for, the note says which
    provider and device were lost; a session that got what it asked for has no note."""
    plan = plan_providers((CUDA,), GPU_BUILD, device_id=1)
    assert fallback_note(plan, [CUDA, CPU]) is None
    note = fallback_note(plan, [CPU])
    assert note is not None
    assert note.startswith("CUDAExecutionProvider (device 1) could not start")
    assert "runs this model on CPUExecutionProvider" in note
    empty = ProviderPlan((), [], 0)
    assert fallback_note(empty, [CPU]) is None


def test_device_id_and_io_binding_are_read_and_checked() -> None:
    """``device_id`` and ``io_binding`` are read from model.toml; bad values name the key."""
    config = parse_model_config(
        "m", {"onnxruntime": {"providers": [CUDA], "device_id": 2, "io_binding": False}}
    )
    assert config.onnxruntime.device_id == 2
    assert config.onnxruntime.io_binding is False
    assert ModelConfig("m").onnxruntime.io_binding == "auto"
    with pytest.raises(ConfigError, match=r"onnxruntime\.device_id"):
        parse_model_config("m", {"onnxruntime": {"device_id": -1}})
    with pytest.raises(ConfigError, match=r"onnxruntime\.io_binding"):
        parse_model_config("m", {"onnxruntime": {"io_binding": "yes"}})


def test_io_binding_path_gives_the_plain_run_results(tmp_path: Path) -> None:
    """The I/O binding path (forced on; on a GPU it is the default) returns what run() does."""
    path = write_model(tmp_path, "cnn", cnn_model())
    plain = OnnxRuntimeBackend(path, ModelConfig("cnn"))
    bound = OnnxRuntimeBackend(
        path, parse_model_config("cnn", {"onnxruntime": {"io_binding": True}})
    )
    assert not plain.io_binding  # auto on the CPU: off
    assert bound.io_binding
    assert bound.providers == (CPU,)
    assert bound.notes == ()
    x = np.random.default_rng(3).random((5, 1, 28, 28), dtype=np.float32)
    np.testing.assert_array_equal(
        bound.run({"input": x[::1]}, ["probabilities"])[0],
        plain.run({"input": x}, ["probabilities"])[0],
    )
    strided = x[::2]
    np.testing.assert_array_equal(
        bound.run({"input": strided}, ["probabilities"])[0],
        plain.run({"input": strided}, ["probabilities"])[0],
    )


def test_tune_searches_the_gpu_providers_hw_finds() -> None:
    """On a (probed, injected) GPU build, fp16 suits CUDA only, fp32 CUDA before the CPU, and
    choosing CUDA writes providers = [CUDA, CPU] to model.toml."""
    hardware = probe(
        cpuinfo_text=AVX2_EPYC, providers=[CUDA, CPU], gpu_probe=lambda: ([A100], None)
    )
    assert suitable_providers(hardware, "fp16") == (CUDA,)
    assert suitable_providers(hardware, "fp32")[:2] == (CUDA, CPU)
    assert suitable_providers(hardware, "int8-static")[:2] == (CUDA, CPU)
    config = ModelConfig("m")
    base = Baseline.resolve(config, True, hardware)
    assert base.provider == CUDA  # what the server would pick on that build
    space = search_space(base, hardware, True, (1, 8), None, ("fp32", "fp16"))
    assert space.providers["fp16"] == (CUDA,)
    cpu_base = Baseline.resolve(
        parse_model_config("m", {"onnxruntime": {"providers": [CPU]}}), True, hardware
    )
    changes = settings_changes(Candidate("fp16", CUDA, max_batch_size=32), cpu_base)
    assert changes["onnxruntime.providers"] == [CUDA, CPU]


def test_tune_on_a_cpu_only_build_skips_fp16() -> None:
    """Without a GPU provider no provider accelerates fp16, so tune does not make it."""
    hardware = probe(cpuinfo_text=AVX2_EPYC, providers=[CPU], gpu_probe=lambda: ([], "none"))
    assert suitable_providers(hardware, "fp16") == ()
