"""The ``intra_op_threads = "auto"`` rule (shipyard.backends.threads) and its use at load."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipyard.backends.onnxruntime import OnnxRuntimeBackend
from shipyard.backends.threads import (
    CORES_ENV,
    HEAVY_MS,
    choose_threads,
    time_execution,
    usable_cores,
)
from shipyard.config import ModelConfig, OnnxRuntimeConfig
from shipyard.errors import ConfigError
from shipyard.testing.models import cnn_model, identity_model, slow_model, write_model


@pytest.mark.parametrize(
    ("cost_ms", "cores", "instances", "threads"),
    [
        (0.08, 16, 1, 1),  # the MNIST CNN: cheap, the event loop needs the cores
        (HEAVY_MS - 0.01, 2, 1, 1),
        (HEAVY_MS, 2, 1, 2),  # compute-bound: every core this process may use
        (80.0, 16, 1, 16),  # ResNet-18
        (80.0, 16, 4, 4),  # shared among instances: instances x threads <= cores
        (80.0, 2, 4, 1),  # more instances than cores: one each
        (80.0, 1, 1, 1),
        (None, 16, 1, 1),  # could not be timed
    ],
)
def test_rule(cost_ms: float | None, cores: int, instances: int, threads: int) -> None:
    """Cheap models keep one thread; compute-bound ones share the cores among instances."""
    choice = choose_threads(cost_ms, cores, instances)
    assert choice.threads == threads
    assert choice.cost_ms == cost_ms
    assert choice.reason.startswith(f"{threads} thread")


def test_time_execution_returns_the_median_and_stops_early_when_clearly_heavy() -> None:
    """Cheap calls are timed after warm-up (median); a first call far past the threshold
    decides alone, so a slow model does not take many more runs to load."""
    calls: list[int] = []
    assert time_execution(lambda: calls.append(1)) < HEAVY_MS
    assert len(calls) == 7  # 2 untimed + 5 timed

    ticks = iter(range(10_000))
    calls.clear()
    # A clock that advances one second per reading: each call "takes" a second.
    assert time_execution(lambda: calls.append(2), clock=lambda: float(next(ticks))) == 1000.0
    assert calls == [2]  # decided by the first (cold) call alone


def _backend(tmp_path: Path, model: bytes, instances: int = 1) -> OnnxRuntimeBackend:
    write_model(tmp_path, "m", model)
    config = ModelConfig("m", instance_count=instances, onnxruntime=OnnxRuntimeConfig())
    return OnnxRuntimeBackend(tmp_path / "m" / "1" / "model.onnx", config)


def test_a_cheap_model_keeps_one_thread(tmp_path: Path) -> None:
    """The MNIST-sized CNN (well under 2 ms per image on any CPU) loads with one thread."""
    backend = _backend(tmp_path, cnn_model().SerializeToString())
    assert backend.threads.threads == 1
    assert backend.threads.cost_ms is not None
    assert backend.threads.cost_ms < HEAVY_MS


def test_a_compute_bound_model_gets_the_cores(tmp_path: Path) -> None:
    """16 chained 256x256 MatMuls (over 5 ms on any CPU) get every usable core."""
    backend = _backend(tmp_path, slow_model(16).SerializeToString())
    assert backend.threads.cost_ms is not None
    assert backend.threads.cost_ms >= HEAVY_MS
    assert backend.threads.threads == usable_cores()


def test_explicit_threads_are_kept(tmp_path: Path) -> None:
    """A number in model.toml is used as it is, without timing anything."""
    write_model(tmp_path, "m", identity_model())
    config = ModelConfig("m", onnxruntime=OnnxRuntimeConfig(intra_op_threads=3))
    backend = OnnxRuntimeBackend(tmp_path / "m" / "1" / "model.onnx", config)
    assert (backend.threads.threads, backend.threads.cost_ms) == (3, None)
    assert backend.threads.reason == "set in model.toml"


def test_cores_env_caps_the_usable_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    """SHIPYARD_CORES (a worker's share under --workers) caps the cores, never raises them."""
    monkeypatch.delenv(CORES_ENV, raising=False)
    cores = usable_cores()
    monkeypatch.setenv(CORES_ENV, "1")
    assert usable_cores() == 1
    monkeypatch.setenv(CORES_ENV, str(cores + 5))
    assert usable_cores() == cores


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5", "²"])
def test_cores_env_refuses_what_is_not_a_count(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    """A SHIPYARD_CORES that is not a positive integer is a ConfigError naming it."""
    monkeypatch.setenv(CORES_ENV, value)
    with pytest.raises(ConfigError, match="SHIPYARD_CORES must be a positive integer"):
        usable_cores()


def test_a_heavy_model_takes_only_the_cores_it_is_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With SHIPYARD_CORES=1, a compute-bound "auto" model runs on one thread."""
    monkeypatch.setenv(CORES_ENV, "1")
    backend = _backend(tmp_path, slow_model(16).SerializeToString())
    assert backend.threads.threads == 1
    assert "1 core(s) for 1 instance(s)" in backend.threads.reason
