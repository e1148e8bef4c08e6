"""ModelRegistry: the live set of loaded model versions, with load, unload and reload.

A load reads the model folder, loads every selected version off the event loop and only then
swaps it in, so a reload that fails keeps the old versions serving and a reload that succeeds
never fails a request in flight (the old versions drain before they close).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path

from shipyard.backends.base import Backend, load_backend, resolve_backend
from shipyard.backends.threads import ThreadChoice
from shipyard.batching.batcher import DynamicBatcher
from shipyard.config import DEFAULT_MAX_BATCH_SIZE, ModelConfig
from shipyard.errors import (
    ConfigError,
    ModelLoadError,
    ModelNotReadyError,
    NotFoundError,
    ShipyardError,
)
from shipyard.hardware import CpuInfo, this_cpu
from shipyard.processing import Pipeline, build_pipeline
from shipyard.repository.evidence import load_warnings, read_report
from shipyard.repository.layout import (
    ModelSource,
    check_model_name,
    find_model,
    parse_version,
    scan_repository,
)
from shipyard.repository.stores import RepositoryStore
from shipyard.stats import ModelStats
from shipyard.types import ModelState, RepositoryEntry, TensorSpec

__all__ = ["ModelRegistry", "ModelState", "ServedVersion"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class ServedVersion:
    """One loaded, servable model version."""

    name: str
    version: int
    config: ModelConfig
    platform: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    batcher: DynamicBatcher
    stats: ModelStats
    #: Pre- and post-processing around the model (``None``: the model has none).
    pipeline: Pipeline | None = None
    #: What loading it warned about (e.g. int8 weights chosen for another kind of CPU).
    warnings: tuple[str, ...] = ()

    @property
    def max_batch_size(self) -> int:
        """The resolved maximum batch size (0: no batching)."""
        return self.config.max_batch_size or 0


@dataclass(slots=True)
class _Entry:
    name: str
    state: ModelState = ModelState.UNAVAILABLE
    reason: str = "not loaded"
    #: False after an explicit unload: the model then does not count against readiness.
    wanted: bool = True
    versions: dict[int, ServedVersion] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class ModelRegistry:
    """Which models are loaded, and the operations that change that."""

    def __init__(
        self,
        root: Path,
        drain_timeout_s: float = 30.0,
        cpu: CpuInfo | None = None,
        store: RepositoryStore | None = None,
    ) -> None:
        self.root = root
        #: Where ``root`` comes from (an object store mirrored into it); synced before a load.
        self.store = store
        self.drain_timeout_s = drain_timeout_s
        self._entries: dict[str, _Entry] = {}
        #: The CPU versions are checked against at load (read from /proc on first load).
        self._cpu = cpu

    # -- queries --------------------------------------------------------------------------

    def get(self, name: str, version: str | None = None) -> ServedVersion:
        """Return the served version (latest when ``version`` is None) or raise."""
        entry = self._entries.get(name)
        if entry is None:
            raise NotFoundError(f"unknown model {name!r}")
        if version is None or version == "":
            if not entry.versions:
                raise ModelNotReadyError(
                    f"model {name!r} is not ready ({entry.state.value}: {entry.reason})"
                )
            return entry.versions[max(entry.versions)]
        number = parse_version(version)
        if number is None:
            raise NotFoundError(
                f"model {name!r} has no version {version!r}: versions are positive integers"
            )
        served = entry.versions.get(number)
        if served is None:
            if not entry.versions and entry.state is not ModelState.READY:
                raise ModelNotReadyError(
                    f"model {name!r} is not ready ({entry.state.value}: {entry.reason})"
                )
            available = ", ".join(str(v) for v in sorted(entry.versions)) or "none"
            raise NotFoundError(
                f"model {name!r} has no version {version} loaded (loaded: {available})"
            )
        return served

    def versions(self, name: str) -> list[ServedVersion]:
        """Every loaded version of ``name``, newest first (empty if none)."""
        entry = self._entries.get(name)
        if entry is None:
            return []
        return [entry.versions[v] for v in sorted(entry.versions, reverse=True)]

    def known(self, name: str) -> bool:
        """Whether the registry has ever tried to load ``name``."""
        return name in self._entries

    def all_ready(self) -> bool:
        """True when every model that should be serving is READY (unloaded ones do not count)."""
        return all(e.state is ModelState.READY for e in self._entries.values() if e.wanted)

    def served(self) -> list[ServedVersion]:
        """Every loaded version of every model."""
        return [v for name in sorted(self._entries) for v in self.versions(name)]

    def index(self, ready_only: bool = False) -> list[RepositoryEntry]:
        """The repository index: models on disk and loaded, with state and reason."""
        rows: list[RepositoryEntry] = []
        try:
            on_disk = set(scan_repository(self.root))
        except ConfigError:
            on_disk = set()
        for name in sorted(on_disk | set(self._entries)):
            entry = self._entries.get(name)
            if entry is None:
                if not ready_only:
                    rows.append(RepositoryEntry(name, ModelState.UNAVAILABLE, "not loaded"))
                continue
            if entry.versions:
                rows.extend(
                    RepositoryEntry(name, entry.state, entry.reason, str(v))
                    for v in sorted(entry.versions)
                )
            elif not ready_only and (name in on_disk or entry.state is not ModelState.UNAVAILABLE):
                # An unavailable model whose folder is gone is no longer in the repository.
                rows.append(RepositoryEntry(name, entry.state, entry.reason))
        if ready_only:
            rows = [row for row in rows if row.state is ModelState.READY]
        return rows

    # -- changes --------------------------------------------------------------------------

    async def load_all(self, names: tuple[str, ...] = ()) -> None:
        """Load ``names`` (or every model in the repository); failures only mark the model."""
        if self.store is not None and not names:
            await asyncio.to_thread(self.store.sync)
        targets = list(names) or list(scan_repository(self.root))
        for name in targets:
            try:
                await self.load(name)
            except ShipyardError as exc:
                log.warning("%s", exc.message)

    async def load(self, name: str, config: ModelConfig | None = None) -> None:
        """Load or reload ``name``; on failure keep what was serving and raise ModelLoadError."""
        if self.store is not None:
            await _sync(self.store, name)
        source = find_model(self.root, name)
        entry = self._entries.setdefault(name, _Entry(name))
        async with entry.lock:
            entry.wanted = True
            old = entry.versions
            if not old:
                entry.state, entry.reason = ModelState.LOADING, "loading"
            try:
                try:
                    new = await asyncio.to_thread(self._load_versions, source, config)
                except ShipyardError:
                    raise
                except Exception as exc:  # a bug or an OS error: never leave the model LOADING
                    log.exception("loading model %s failed unexpectedly", name)
                    raise ModelLoadError(f"{type(exc).__name__}: {exc}") from exc
            except ShipyardError as exc:
                if old:
                    entry.state = ModelState.READY
                    entry.reason = (
                        f"reload failed, still serving version(s) "
                        f"{', '.join(map(str, sorted(old)))}: {exc.message}"
                    )
                else:
                    entry.state, entry.reason = ModelState.UNAVAILABLE, exc.message
                raise ModelLoadError(f"failed to load model {name!r}: {exc.message}") from exc
            entry.versions = new
            entry.state, entry.reason = ModelState.READY, ""
            log.info("model %s ready (versions %s)", name, ", ".join(map(str, sorted(new))))
            await self._retire(list(old.values()))

    async def unload(self, name: str) -> None:
        """Stop serving ``name``: refuse new requests, finish in-flight ones, release it."""
        entry = self._entries.get(name)
        if entry is None:
            find_model(self.root, name)  # a clear 404 for names that do not exist at all
            self._entries[name] = _Entry(name, reason="unloaded", wanted=False)
            return
        async with entry.lock:
            entry.wanted = False
            old = list(entry.versions.values())
            entry.state, entry.reason = ModelState.UNLOADING, "unloading"
            entry.versions = {}
            await self._retire(old)
            entry.state, entry.reason = ModelState.UNAVAILABLE, "unloaded"
            log.info("model %s unloaded", name)

    async def close(self) -> None:
        """Drain and release every loaded version (used at shutdown)."""
        for name in list(self._entries):
            entry = self._entries[name]
            old = list(entry.versions.values())
            entry.versions = {}
            entry.state, entry.reason = ModelState.UNAVAILABLE, "server shutting down"
            await self._retire(old)

    async def _retire(self, versions: list[ServedVersion]) -> None:
        if not versions:
            return
        results = await asyncio.gather(*(v.batcher.drain(self.drain_timeout_s) for v in versions))
        for served, drained in zip(versions, results, strict=True):
            if not drained:
                log.warning(
                    "model %s version %d: requests still running after %.0f s; closing anyway",
                    served.name,
                    served.version,
                    self.drain_timeout_s,
                )
            served.batcher.close()

    # -- loading (worker thread) ----------------------------------------------------------

    def _load_versions(
        self, source: ModelSource, override: ModelConfig | None
    ) -> dict[int, ServedVersion]:
        config = override or source.config()
        available = source.versions()
        if not available:
            raise ModelLoadError(
                f"no version folder in {source.path} (expected {source.path}/1/model.onnx)"
            )
        selected = config.version_policy.select(available)
        if not selected:
            raise ModelLoadError(
                f"version_policy selects none of the versions on disk "
                f"({', '.join(map(str, available))})"
            )
        loaded: dict[int, ServedVersion] = {}
        try:
            for version in selected:
                loaded[version] = self._load_version(source, version, config)
        except BaseException:
            for served in loaded.values():
                served.batcher.close()
            raise
        return loaded

    def _load_version(
        self, source: ModelSource, version: int, config: ModelConfig
    ) -> ServedVersion:
        instances: list[Backend] = []
        backend = resolve_backend(source.version_dir(version), config)  # "auto" → the real one
        config = dataclasses.replace(config, backend=backend)
        try:
            for _ in range(config.instance_count):
                instances.append(load_backend(source.version_dir(version), config))
            first = instances[0]
            inputs = _apply_overrides(config.name, "input", first.inputs, config.inputs)
            outputs = _apply_overrides(config.name, "output", first.outputs, config.outputs)
            resolved = _resolve_batching(config, inputs, outputs)
            pipeline = build_pipeline(resolved, source.path, inputs, outputs)
        except BaseException:
            for instance in instances:
                instance.close()
            raise
        threads = getattr(first, "threads", None)
        engine = config.openvino if backend == "openvino" else config.onnxruntime
        if isinstance(threads, ThreadChoice) and engine.intra_op_threads == "auto":
            log.info(
                "model %s version %d: intra_op_threads auto: %s",
                config.name,
                version,
                threads.reason,
            )
        if self._cpu is None:
            self._cpu = this_cpu()
        warnings = load_warnings(read_report(source.version_dir(version)), self._cpu)
        # What the backend itself reports (e.g. a GPU provider that fell back to the CPU).
        warnings += tuple(getattr(first, "notes", ()))
        for warning in warnings:
            log.warning("model %s version %d: %s", config.name, version, warning)
        stats = ModelStats(config.name, str(version))
        batcher = DynamicBatcher(
            config.name,
            instances,
            resolved.max_batch_size or 0,
            resolved.dynamic_batching,
            stats,
        )
        return ServedVersion(
            config.name,
            version,
            resolved,
            first.platform,
            inputs,
            outputs,
            batcher,
            stats,
            pipeline,
            warnings,
        )


async def _sync(store: RepositoryStore, name: str) -> None:
    """Refresh ``name`` from ``store``; a store error keeps what is serving (ModelLoadError)."""
    try:
        await asyncio.to_thread(store.sync, (check_model_name(name),))
    except ConfigError as exc:
        raise ModelLoadError(f"failed to load model {name!r}: {exc.message}") from exc


def _apply_overrides(
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


def _resolve_batching(
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
