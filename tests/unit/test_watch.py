"""The repository poller: what it reloads, when, and what it leaves alone."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path

from shipyard.metrics import ServerMetrics
from shipyard.repository.registry import ModelRegistry
from shipyard.repository.watch import RepositoryWatcher
from shipyard.testing.models import identity_model, write_model
from shipyard.types import ModelState

Scenario = Callable[[ModelRegistry, RepositoryWatcher], Awaitable[None]]


def run(repository: Path, scenario: Scenario, models: tuple[str, ...] = ()) -> ServerMetrics:
    """Load the repository, start a watcher, run ``scenario``, close; return the metrics."""
    metrics = ServerMetrics()

    async def main() -> None:
        registry = ModelRegistry(repository, drain_timeout_s=5, metrics=metrics)
        await registry.load_all(models)
        watcher = RepositoryWatcher(registry, 0.01, models)
        await watcher.start()
        try:
            await scenario(registry, watcher)
        finally:
            await registry.close()

    asyncio.run(main())
    return metrics


def _versions(registry: ModelRegistry, name: str) -> list[int]:
    return [served.version for served in registry.versions(name)]


def test_a_new_version_is_loaded_once_two_polls_agree(repository: Path) -> None:
    """A published version is loaded on the second poll that sees it (not half-copied)."""
    write_model(repository, "m", identity_model())

    async def scenario(registry: ModelRegistry, watcher: RepositoryWatcher) -> None:
        write_model(repository, "m", identity_model(), version=2)
        assert await watcher.poll() == []  # first sight: maybe still being copied
        assert _versions(registry, "m") == [1]
        assert await watcher.poll() == ["m"]
        assert _versions(registry, "m") == [2]
        assert await watcher.poll() == []  # nothing new: nothing reloaded

    metrics = run(repository, scenario)
    assert metrics.loads["m"].successes == 2


def test_a_removed_version_and_a_changed_model_toml_apply(repository: Path) -> None:
    """Removing the newest version serves the one before; model.toml changes are applied."""
    write_model(repository, "m", identity_model())
    write_model(repository, "m", identity_model(), version=2)

    async def scenario(registry: ModelRegistry, watcher: RepositoryWatcher) -> None:
        shutil.rmtree(repository / "m" / "2")
        await watcher.poll()
        await watcher.poll()
        assert _versions(registry, "m") == [1]
        write_model(repository, "m", identity_model(), version=2)
        (repository / "m" / "model.toml").write_text("[version_policy]\nall = true\n")
        await watcher.poll()
        await watcher.poll()
        assert _versions(registry, "m") == [2, 1]

    run(repository, scenario)


def test_new_and_removed_model_folders(repository: Path) -> None:
    """A new model folder is loaded; a removed one is unloaded."""
    write_model(repository, "old", identity_model())

    async def scenario(registry: ModelRegistry, watcher: RepositoryWatcher) -> None:
        write_model(repository, "new", identity_model())
        shutil.rmtree(repository / "old")
        await watcher.poll()
        assert sorted(await watcher.poll()) == ["new", "old"]
        assert _versions(registry, "new") == [1]
        assert _versions(registry, "old") == []
        row = next(r for r in registry.index() if r.name == "new")
        assert row.state is ModelState.READY

    run(repository, scenario)


def test_a_broken_version_keeps_the_old_one_and_is_not_retried(repository: Path) -> None:
    """A new version that fails to load leaves the old serving, the reason in the index, and
    is not reloaded on every poll."""
    write_model(repository, "m", identity_model())

    async def scenario(registry: ModelRegistry, watcher: RepositoryWatcher) -> None:
        write_model(repository, "m", b"not an onnx model", version=2)
        await watcher.poll()
        assert await watcher.poll() == ["m"]
        assert _versions(registry, "m") == [1]
        (row,) = registry.index()
        assert row.reason.startswith("reload failed, still serving version(s) 1:")
        assert await watcher.poll() == []

    metrics = run(repository, scenario)
    assert (metrics.loads["m"].successes, metrics.loads["m"].failures) == (1, 1)


def test_only_the_servers_models_are_watched(repository: Path) -> None:
    """With --model names, other folders are not loaded even when they change."""
    write_model(repository, "kept", identity_model())
    write_model(repository, "other", identity_model())

    async def scenario(registry: ModelRegistry, watcher: RepositoryWatcher) -> None:
        write_model(repository, "other", identity_model(), version=2)
        await watcher.poll()
        assert await watcher.poll() == []
        assert not registry.known("other")

    run(repository, scenario, models=("kept",))
