"""Load one model version: its instances, its signature, its processing and its batcher.

Runs in a worker thread (it reads files, compiles models and starts worker processes). ONNX
Runtime and LiteRT models load through :func:`~shipyard.backends.load_backend`; a Python model
(``model.py``) and a model's Python steps start worker processes
(:class:`~shipyard.backends.python.PythonBackend`), which only a server started with
``--allow-python-models`` does. Ensembles are wired by :mod:`~shipyard.repository.ensemble`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from shipyard.backends.base import Backend, load_backend, resolve_backend
from shipyard.backends.python import PythonBackend, WorkerSpec
from shipyard.backends.threads import ThreadChoice
from shipyard.batching import DynamicBatcher, Scheduler
from shipyard.config import DEFAULT_MAX_BATCH_SIZE, ModelConfig
from shipyard.errors import ConfigError, ModelLoadError
from shipyard.hardware import CpuInfo
from shipyard.processing import build_pipeline
from shipyard.processing.python_steps import PythonStepSpec, python_step_specs
from shipyard.repository.evidence import load_warnings, read_report
from shipyard.repository.layout import ModelSource
from shipyard.repository.served import ServedVersion
from shipyard.stats import ModelStats
from shipyard.types import TensorSpec

__all__ = ["ALLOW_PYTHON_FLAG", "apply_overrides", "load_version", "resolve_batching"]

log = logging.getLogger(__name__)

#: The ``shipyard serve`` flag that lets models run Python code from the repository.
ALLOW_PYTHON_FLAG = "--allow-python-models"


def load_version(
    source: ModelSource, version: int, config: ModelConfig, *, allow_python: bool, cpu: CpuInfo
) -> ServedVersion:
    """Load ``version`` of ``source`` as ``config`` says; raise a ShipyardError if it cannot.

    Blocking: call it off the event loop.
    """
    version_dir = source.version_dir(version)
    backend = resolve_backend(version_dir, config)  # "auto" → the real one
    config = dataclasses.replace(config, backend=backend)
    if config.runs_python and not allow_python:
        what = f"{version}/model.py" if backend == "python" else "Python steps"
        raise ModelLoadError(
            f"model {config.name!r} runs repository Python code ({what}): refused unless "
            f"the server runs with {ALLOW_PYTHON_FLAG}"
        )
    helpers: list[Scheduler] = []
    instances: list[Backend] = []
    try:
        if backend == "python":
            resolved, instances, new_instance = _python_model(config, version, version_dir)
            platform, inputs, outputs = "python", resolved.inputs, resolved.outputs
        else:
            instances.extend(
                load_backend(version_dir, config) for _ in range(config.instance_count)
            )
            first = instances[0]
            platform = first.platform
            inputs = apply_overrides(config.name, "input", first.inputs, config.inputs)
            outputs = apply_overrides(config.name, "output", first.outputs, config.outputs)
            resolved = resolve_batching(config, inputs, outputs)

            def new_instance() -> Backend:
                return load_backend(version_dir, config)

        pre_specs, post_specs = python_step_specs(resolved, inputs, outputs)
        pre = [_step_batcher(resolved, version, version_dir, s, helpers) for s in pre_specs]
        post = [_step_batcher(resolved, version, version_dir, s, helpers) for s in post_specs]
        pipeline = build_pipeline(resolved, source.path, inputs, outputs, pre, post)
    except BaseException:
        for helper in helpers:
            helper.close()
        for instance in instances:
            instance.close()
        raise
    threads = getattr(instances[0], "threads", None)
    engine = config.openvino if backend == "openvino" else config.onnxruntime
    if isinstance(threads, ThreadChoice) and engine.intra_op_threads == "auto":
        log.info(
            "model %s version %d: intra_op_threads auto: %s", config.name, version, threads.reason
        )
    warnings = load_warnings(read_report(version_dir), cpu)
    # What the backend itself reports (e.g. a GPU provider that fell back to the CPU).
    warnings += tuple(getattr(instances[0], "notes", ()))
    for warning in warnings:
        log.warning("model %s version %d: %s", config.name, version, warning)
    stats = ModelStats(config.name, str(version))
    batcher = DynamicBatcher(
        config.name,
        instances,
        resolved.max_batch_size or 0,
        resolved.dynamic_batching,
        stats,
        execution_timeout_s=resolved.execution_timeout_s,
        new_instance=new_instance,
    )
    return ServedVersion(
        config.name,
        version,
        resolved,
        platform,
        inputs,
        outputs,
        batcher,
        stats,
        pipeline,
        warnings,
        tuple(pre),
        tuple(post),
    )


def _start_workers(spec: WorkerSpec, count: int) -> tuple[list[Backend], Callable[[], Backend]]:
    """Start ``count`` workers at once; return them and a factory for replacements."""
    specs = [dataclasses.replace(spec, worker=i) for i in range(count)]
    started: list[Backend] = []
    failure: BaseException | None = None
    with ThreadPoolExecutor(max_workers=count) as pool:
        for future in [pool.submit(PythonBackend.start, s) for s in specs]:
            try:
                started.append(future.result())
            except BaseException as exc:
                failure = failure or exc
    if failure is not None:
        for backend in started:
            backend.close()
        raise failure
    numbers = iter(range(count, 1 << 30))

    def replacement() -> Backend:
        return PythonBackend.start(dataclasses.replace(spec, worker=next(numbers)))

    return started, replacement


def _worker_spec(
    config: ModelConfig,
    version: int,
    version_dir: Path,
    function: str,
    role: str,
    signature: tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]],
) -> WorkerSpec:
    python = config.python
    return WorkerSpec(
        model=config.name,
        version=version,
        version_dir=version_dir,
        function=function,
        role=role,
        inputs=signature[0],
        outputs=signature[1],
        max_batch_size=config.max_batch_size or 0,
        settings=python.settings,
        start_timeout_s=python.start_timeout_s,
        shared_memory_bytes=python.shared_memory_bytes,
    )


def _python_model(
    config: ModelConfig, version: int, version_dir: Path
) -> tuple[ModelConfig, list[Backend], Callable[[], Backend]]:
    """Start the workers of a model.py; its signature is model.toml's."""
    if not config.inputs or not config.outputs:
        raise ConfigError(
            "a Python model declares its signature in model.toml: [[inputs]] and [[outputs]] "
            "tables with name, datatype and shape (docs/python-models.md)"
        )
    if config.instance_count != 1:
        raise ConfigError(
            "instance_count does not apply to a Python model; set [python] workers instead"
        )
    if not (version_dir / "model.py").is_file():
        raise ModelLoadError(
            f"no model.py in {version_dir} (the python backend expects "
            "<repo>/<name>/<version>/model.py)"
        )
    resolved = resolve_batching(config, config.inputs, config.outputs)
    spec = _worker_spec(
        resolved, version, version_dir, "model:Model", "model.py", (config.inputs, config.outputs)
    )
    instances, replacement = _start_workers(spec, config.python.workers)
    return resolved, instances, replacement


def _step_batcher(
    config: ModelConfig,
    version: int,
    version_dir: Path,
    step: PythonStepSpec,
    started: list[Scheduler],
) -> DynamicBatcher:
    """Start a Python step's workers behind a batcher of its own (added to ``started``)."""
    spec = _worker_spec(
        config, version, version_dir, step.function, step.where, (step.inputs, step.outputs)
    )
    instances, replacement = _start_workers(spec, config.python.workers)
    batcher = DynamicBatcher(
        f"{config.name}: {step.where}",
        instances,
        config.max_batch_size or 0,
        config.dynamic_batching,
        ModelStats(config.name, str(version)),
        execution_timeout_s=config.execution_timeout_s,
        new_instance=replacement,
    )
    started.append(batcher)
    return batcher


def apply_overrides(
    model: str, kind: str, found: tuple[TensorSpec, ...], overrides: tuple[TensorSpec, ...]
) -> tuple[TensorSpec, ...]:
    """Replace signature entries by ``model.toml`` overrides after checking they fit."""
    by_name = {spec.name: spec for spec in found}
    for spec in overrides:
        actual = by_name.get(spec.name)
        if actual is None:
            raise ConfigError(
                f"model.toml {kind}s: the model has no {kind} {spec.name!r} "
                f"(it has {', '.join(by_name)})"
            )
        if spec.datatype is not actual.datatype:
            raise ConfigError(
                f"model.toml {kind} {spec.name!r}: datatype {spec.datatype.value} differs from "
                f"the model's {actual.datatype.value}"
            )
        if actual.shape and (
            len(spec.shape) != len(actual.shape)
            or any(a != -1 and s != a for s, a in zip(spec.shape, actual.shape, strict=True))
        ):
            raise ConfigError(
                f"model.toml {kind} {spec.name!r}: shape {list(spec.shape)} does not fit the "
                f"model's {list(actual.shape)}"
            )
        by_name[spec.name] = spec
    return tuple(by_name[spec.name] for spec in found)


def resolve_batching(
    config: ModelConfig, inputs: tuple[TensorSpec, ...], outputs: tuple[TensorSpec, ...]
) -> ModelConfig:
    """Fill in ``max_batch_size``: dynamic dim 0 everywhere → batching on by default."""
    dynamic_first = all(s.shape and s.shape[0] == -1 for s in inputs) and all(
        not s.shape or s.shape[0] == -1 for s in outputs
    )
    max_batch = config.max_batch_size
    if max_batch is None:
        max_batch = DEFAULT_MAX_BATCH_SIZE if dynamic_first and inputs else 0
    elif max_batch > 0 and not dynamic_first:
        fixed = [s.name for s in (*inputs, *outputs) if s.shape and s.shape[0] != -1]
        raise ConfigError(
            f"max_batch_size = {max_batch} needs a variable first dimension on every input "
            f"and output, but {', '.join(fixed) or 'a scalar input'} has a fixed one; "
            "set max_batch_size = 0"
        )
    batching = config.dynamic_batching
    too_big = [b for b in (batching.preferred_batch_sizes if batching else ()) if b > max_batch]
    if max_batch > 0 and too_big:
        raise ConfigError(
            f"dynamic_batching.preferred_batch_sizes {too_big} exceed max_batch_size "
            f"{max_batch}; no batch can reach them"
        )
    return dataclasses.replace(config, max_batch_size=max_batch)
