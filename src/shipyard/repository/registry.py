"""ModelRegistry: the live set of loaded model versions, with load, unload and reload.

A load reads the model folder, loads every selected version off the event loop and only then
swaps it in, so a reload that fails keeps the old versions serving and a reload that succeeds
never fails a request in flight (the old versions drain before they close).

A version whose last instance is being replaced (a Python worker died, an execution overran
``execution_timeout_s``) is not ready until the replacement works: requests get 503 and the
index says why. An ensemble loads the models its steps name first, when they are not loaded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from shipyard.config import ModelConfig
from shipyard.errors import (
    ConfigError,
    ModelLoadError,
    ModelNotReadyError,
    NotFoundError,
    ShipyardError,
)
from shipyard.hardware import CpuInfo, this_cpu
from shipyard.metrics import ServerMetrics
from shipyard.repository.ensemble import build_ensemble
from shipyard.repository.layout import (
    ModelSource,
    check_model_name,
    find_model,
    parse_version,
    scan_repository,
)
from shipyard.repository.loading import load_version
from shipyard.repository.served import ServedVersion
from shipyard.repository.stores import RepositoryStore
from shipyard.types import ModelState, RepositoryEntry

__all__ = ["ModelRegistry", "ModelState", "ServedVersion"]

log = logging.getLogger(__name__)


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
        *,
        allow_python: bool = False,
        metrics: ServerMetrics | None = None,
    ) -> None:
        """``allow_python`` lets models run Python code from the repository (model.py,
        Python steps); without it they are UNAVAILABLE, with a reason naming the flag."""
        self.root = root
        #: Where ``root`` comes from (an object store mirrored into it); synced before a load.
        self.store = store
        self.drain_timeout_s = drain_timeout_s
        self.allow_python = allow_python
        #: Where loads are counted and timed, and requests per version (a fresh one if None).
        self.metrics = metrics or ServerMetrics()
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
            return _usable(entry.versions[max(entry.versions)])
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
        return _usable(served)

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
        """True when every model that should be serving is READY (unloaded ones do not count)
        and can run requests now."""
        return all(
            e.state is ModelState.READY and all(v.ready for v in e.versions.values())
            for e in self._entries.values()
            if e.wanted
        )

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
                rows.extend(_row(name, entry, entry.versions[v]) for v in sorted(entry.versions))
            elif not ready_only and (name in on_disk or entry.state is not ModelState.UNAVAILABLE):
                # An unavailable model whose folder is gone is no longer in the repository.
                rows.append(RepositoryEntry(name, entry.state, entry.reason))
        if ready_only:
            rows = [row for row in rows if row.state is ModelState.READY]
        return rows

    # -- changes --------------------------------------------------------------------------

    async def load_all(self, names: tuple[str, ...] = ()) -> None:
        """Load ``names`` (or every model in the repository); failures only mark the model.

        Ensembles load after the other models (they need their steps' models).
        """
        if self.store is not None and not names:
            await asyncio.to_thread(self.store.sync)
        targets = list(names) or list(scan_repository(self.root))
        sources = {name: self.root / name / "model.toml" for name in targets}
        ensembles = [n for n, path in sources.items() if _says_ensemble(path)]
        for name in [*(n for n in targets if n not in ensembles), *ensembles]:
            if name in ensembles and self._entries.get(name, _Entry(name)).versions:
                continue  # loaded already, as a step of an ensemble loaded before it
            try:
                await self.load(name)
            except ShipyardError as exc:
                log.warning("%s", exc.message)

    async def load(
        self, name: str, config: ModelConfig | None = None, _chain: tuple[str, ...] = ()
    ) -> None:
        """Load or reload ``name``; on failure keep what was serving and raise ModelLoadError.

        An ensemble first loads the models of its steps that are not loaded.
        """
        if name in _chain:
            raise ConfigError(
                f"ensemble cycle: {' → '.join((*_chain, name))}; an ensemble cannot contain itself"
            )
        if self.store is not None:
            await _sync(self.store, name)
        source = find_model(self.root, name)
        entry = self._entries.setdefault(name, _Entry(name))
        async with entry.lock:
            entry.wanted = True
            old = entry.versions
            if not old:
                entry.state, entry.reason = ModelState.LOADING, "loading"
            started = time.perf_counter()
            try:
                try:
                    settings = config
                    if settings is None:
                        settings = await asyncio.to_thread(source.config)
                    if settings.backend == "ensemble":
                        await self._load_steps(settings, (*_chain, name))
                        new = self._ensemble_versions(source, settings)
                    else:
                        new = await asyncio.to_thread(self._load_versions, source, settings)
                except ShipyardError:
                    raise
                except Exception as exc:  # a bug or an OS error: never leave the model LOADING
                    log.exception("loading model %s failed unexpectedly", name)
                    raise ModelLoadError(f"{type(exc).__name__}: {exc}") from exc
            except ShipyardError as exc:
                self.metrics.model_loaded(name, time.perf_counter() - started, ok=False)
                if old:
                    entry.state = ModelState.READY
                    entry.reason = (
                        f"reload failed, still serving version(s) "
                        f"{', '.join(map(str, sorted(old)))}: {exc.message}"
                    )
                else:
                    entry.state, entry.reason = ModelState.UNAVAILABLE, exc.message
                raise ModelLoadError(f"failed to load model {name!r}: {exc.message}") from exc
            self.metrics.model_loaded(name, time.perf_counter() - started, ok=True)
            for served in new.values():  # its series exist (at zero) from the start
                self.metrics.model(served.name, served.stats.version)
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
        results = await asyncio.gather(*(v.drain(self.drain_timeout_s) for v in versions))
        for served, drained in zip(versions, results, strict=True):
            if not drained:
                log.warning(
                    "model %s version %d: requests still running after %.0f s; closing anyway",
                    served.name,
                    served.version,
                    self.drain_timeout_s,
                )
            served.close()

    # -- loading (worker thread) ----------------------------------------------------------

    async def _load_steps(self, config: ModelConfig, chain: tuple[str, ...]) -> None:
        """Load the models an ensemble's steps name that are not loaded yet."""
        for step in config.steps:
            entry = self._entries.get(step.model)
            if entry is not None and entry.versions:
                continue
            try:
                await self.load(step.model, _chain=chain)
            except NotFoundError as exc:  # raised before loading: the folder does not exist
                raise ConfigError(f"step model {step.model!r}: {exc.message}") from exc
            except ModelLoadError as exc:  # ConfigError (a cycle) passes through as it is
                raise ModelLoadError(
                    f"step model {step.model!r} did not load: {exc.message}"
                ) from exc

    def _ensemble_versions(
        self, source: ModelSource, config: ModelConfig
    ) -> dict[int, ServedVersion]:
        """An ensemble's versions: each wires the loaded step models (nothing to read)."""
        loaded: dict[int, ServedVersion] = {}
        for version in self._select(source, config, "1/, an empty folder"):
            resolved, inputs, outputs, runner, stats = build_ensemble(config, version, self.get)
            loaded[version] = ServedVersion(
                config.name, version, resolved, "ensemble", inputs, outputs, runner, stats
            )
        return loaded

    def _select(
        self, source: ModelSource, config: ModelConfig, expected: str = "1/model.onnx"
    ) -> list[int]:
        available = source.versions()
        if not available:
            raise ModelLoadError(
                f"no version folder in {source.path} (expected {source.path}/{expected})"
            )
        selected = config.version_policy.select(available)
        if not selected:
            raise ModelLoadError(
                f"version_policy selects none of the versions on disk "
                f"({', '.join(map(str, available))})"
            )
        return selected

    def _load_versions(self, source: ModelSource, config: ModelConfig) -> dict[int, ServedVersion]:
        selected = self._select(source, config)
        if self._cpu is None:
            self._cpu = this_cpu()
        loaded: dict[int, ServedVersion] = {}
        try:
            for version in selected:
                loaded[version] = load_version(
                    source, version, config, allow_python=self.allow_python, cpu=self._cpu
                )
        except BaseException:
            for served in loaded.values():
                served.close()
            raise
        return loaded


def _usable(served: ServedVersion) -> ServedVersion:
    """``served`` if it can run requests now, else ModelNotReadyError saying why."""
    if not served.ready:
        raise ModelNotReadyError(
            f"model {served.name!r} version {served.version} is not ready: {served.problem}"
        )
    return served


def _row(name: str, entry: _Entry, served: ServedVersion) -> RepositoryEntry:
    """The index row of one loaded version (UNAVAILABLE while it has no working instance)."""
    if entry.state is ModelState.READY and not served.ready:
        return RepositoryEntry(name, ModelState.UNAVAILABLE, served.problem, str(served.version))
    return RepositoryEntry(name, entry.state, entry.reason, str(served.version))


def _says_ensemble(path: Path) -> bool:
    """Whether the model.toml at ``path`` says ``backend = "ensemble"`` (False if unreadable)."""
    try:
        return ModelSource(path.parent.name, path.parent).config().backend == "ensemble"
    except (ShipyardError, OSError):
        return False


async def _sync(store: RepositoryStore, name: str) -> None:
    """Refresh ``name`` from ``store``; a store error keeps what is serving (ModelLoadError)."""
    try:
        await asyncio.to_thread(store.sync, (check_model_name(name),))
    except ConfigError as exc:
        raise ModelLoadError(f"failed to load model {name!r}: {exc.message}") from exc
