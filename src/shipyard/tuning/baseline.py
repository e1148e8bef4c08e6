"""The model's current serving settings as a search candidate, and the way back to model.toml.

:meth:`Baseline.resolve` reads a :class:`~shipyard.config.ModelConfig` as the server would
(the inferred ``max_batch_size``, the provider it would pick) and turns it into the
:class:`~shipyard.tuning.search.Candidate` the search starts from. :func:`settings_changes`
goes the other way: the dotted ``model.toml`` keys that turn the baseline into any other
candidate, which is what the tuner writes for the winner (and for every candidate it serves).
:func:`search_space` lays out the values each dimension may take around the baseline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shipyard.config import DEFAULT_MAX_BATCH_SIZE, DynamicBatchingConfig, ModelConfig
from shipyard.errors import ConfigError
from shipyard.hardware import HardwareReport
from shipyard.repository.layout import CONFIG_FILENAME
from shipyard.repository.settings import update_settings
from shipyard.tuning.search import Candidate, Space, ladder
from shipyard.tuning.variants import OPENVINO, suitable_providers
from shipyard.types import TensorSpec

__all__ = [
    "Baseline",
    "check_writable",
    "dynamic_first_dimension",
    "search_space",
    "settings_changes",
]

_INSTANCES = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)
_THREADS = (1, 2, 4, 8, 16, 32, 64)
_DELAYS_US = (0, 100, 250, 500, 1000, 2000, 5000)


def dynamic_first_dimension(
    inputs: tuple[TensorSpec, ...], outputs: tuple[TensorSpec, ...]
) -> bool:
    """Whether every input and output has a variable first dimension (so it can batch)."""
    return (
        bool(inputs)
        and all(s.shape and s.shape[0] == -1 for s in inputs)
        and all(not s.shape or s.shape[0] == -1 for s in outputs)
    )


@dataclass(frozen=True, slots=True)
class Baseline:
    """The model's current settings, resolved as the server resolves them."""

    config: ModelConfig
    max_batch_size: int
    batching_on: bool
    provider: str
    #: The same settings as a search candidate (the fp32 variant: the version as it is).
    candidate: Candidate

    @classmethod
    def resolve(
        cls, config: ModelConfig, dynamic: bool, hardware: HardwareReport, auto_threads: int = 1
    ) -> Baseline:
        """Read ``config`` as the server would on ``hardware`` (``dynamic``: it can batch).

        ``auto_threads``: what ``intra_op_threads = "auto"`` chose when the model loaded here.
        """
        max_batch = config.max_batch_size
        if max_batch is None:
            max_batch = DEFAULT_MAX_BATCH_SIZE if dynamic else 0
        batching_on = max_batch > 0 and config.dynamic_batching is not None
        batching = config.dynamic_batching or DynamicBatchingConfig()
        serving = [p.name for p in hardware.providers if p.device != "remote"]
        provider = (config.onnxruntime.providers or tuple(serving) or ("CPUExecutionProvider",))[0]
        threads = config.onnxruntime.intra_op_threads
        if config.backend == "openvino":
            provider, threads = OPENVINO, config.openvino.intra_op_threads
        candidate = Candidate(
            "fp32",
            provider,
            config.instance_count,
            auto_threads if threads == "auto" else threads,
            max_batch if batching_on else 0,
            batching.max_queue_delay_us,
            batching.preferred_batch_sizes,
            1 if provider == OPENVINO else _inter_op(config),
        )
        return cls(config, max_batch, batching_on, provider, candidate)


def _inter_op(config: ModelConfig) -> int:
    """The candidate form of the config's execution: 1 = sequential, N = parallel on N."""
    ort_config = config.onnxruntime
    return max(2, ort_config.inter_op_threads) if ort_config.execution_mode == "parallel" else 1


def settings_changes(candidate: Candidate, base: Baseline) -> dict[str, Any]:
    """The model.toml keys (dotted) that make the baseline's settings ``candidate``'s."""
    start = base.candidate
    changes: dict[str, Any] = {}
    if candidate.instance_count != start.instance_count:
        changes["instance_count"] = candidate.instance_count
    openvino = candidate.provider == OPENVINO
    switched = openvino != (base.provider == OPENVINO)
    if switched:  # the other engine: its threads are written whatever the baseline's were
        changes["backend"] = "openvino" if openvino else "onnxruntime"
    engine = "openvino" if openvino else "onnxruntime"
    if candidate.intra_op_threads != start.intra_op_threads or switched:
        changes[f"{engine}.intra_op_threads"] = candidate.intra_op_threads
    if candidate.inter_op_threads != start.inter_op_threads and not openvino:
        parallel = candidate.inter_op_threads > 1
        changes["onnxruntime.execution_mode"] = "parallel" if parallel else "sequential"
        if parallel:
            changes["onnxruntime.inter_op_threads"] = candidate.inter_op_threads
    if candidate.provider != base.provider and not openvino:
        providers = [candidate.provider]
        if candidate.provider != "CPUExecutionProvider":
            providers.append("CPUExecutionProvider")
        changes["onnxruntime.providers"] = providers
    if candidate.max_batch_size == 0:
        if base.batching_on:
            changes["dynamic_batching.enabled"] = False
        return changes
    if candidate.max_batch_size != base.max_batch_size:
        changes["max_batch_size"] = candidate.max_batch_size
    if not base.batching_on and base.config.dynamic_batching is None:
        changes["dynamic_batching.enabled"] = True
    if candidate.max_queue_delay_us != start.max_queue_delay_us:
        changes["dynamic_batching.max_queue_delay_us"] = candidate.max_queue_delay_us
    if candidate.preferred_batch_sizes != start.preferred_batch_sizes:
        changes["dynamic_batching.preferred_batch_sizes"] = list(candidate.preferred_batch_sizes)
    return changes


def check_writable(toml_text: str, name: str, base: Baseline) -> None:
    """Fail before measuring anything when model.toml could not take the winner's keys."""
    start = base.candidate
    every = {
        "instance_count": start.instance_count,
        "onnxruntime.intra_op_threads": start.intra_op_threads,
        "onnxruntime.execution_mode": "sequential",
        "dynamic_batching.max_queue_delay_us": start.max_queue_delay_us,
    }
    try:
        update_settings(toml_text, name, every)
    except ConfigError as exc:
        raise ConfigError(f"{CONFIG_FILENAME}: {exc.message}") from exc


def search_space(
    base: Baseline,
    hardware: HardwareReport,
    dynamic: bool,
    levels: tuple[int, ...],
    slo_ms: float | None,
    variants: tuple[str, ...],
) -> Space:
    """The values each dimension may take on ``hardware``, around the baseline's."""
    start = base.candidate
    cores = max(1, hardware.cpu.logical_cores)
    top = 2
    while top < min(max(levels), 128):
        top *= 2
    batch: tuple[int, ...] = (0,)
    if dynamic:
        batch = ladder([0, *(2**i for i in range(1, 8) if 2**i <= top)], start.max_batch_size)
        if base.max_batch_size > 0:
            batch = tuple(b for b in batch if b <= max(top, base.max_batch_size))
    delays = [d for d in _DELAYS_US if slo_ms is None or d <= slo_ms * 500]
    providers = {v: suitable_providers(hardware, v) for v in variants}
    if start.provider not in providers.get("fp32", ()):
        providers["fp32"] = (start.provider, *providers.get("fp32", ()))
    return Space(
        variants=variants,
        providers=providers,
        instance_count=ladder(
            [v for v in _INSTANCES if v <= max(4, 2 * cores)], start.instance_count
        ),
        intra_op_threads=ladder(
            [v for v in _THREADS if v <= cores] + [cores], start.intra_op_threads
        ),
        max_batch_size=batch,
        max_queue_delay_us=ladder(delays, start.max_queue_delay_us),
        # Parallel execution only pays for graphs with independent branches; 1 = sequential.
        inter_op_threads=ladder([1, 2] + ([cores] if cores > 2 else []), start.inter_op_threads),
    )
