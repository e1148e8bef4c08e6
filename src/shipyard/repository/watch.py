"""Hot reload: poll the repository and apply what changed (``--poll-interval S``).

Each poll takes a :class:`~shipyard.repository.layout.Fingerprint` of every model folder
through the layout API (so a repository mirrored from an object store works the same: its
``refresh`` brings the local copy up to date first). A model whose fingerprint changed is
reloaded: new versions load, versions gone from disk are drained and unloaded, a changed
``model.toml`` applies. A new folder is loaded, a removed one unloaded. A change is applied
once two polls in a row agree on it, so a version still being copied in is not loaded half
written. A reload that fails keeps the old versions serving and the repository index says
why (:meth:`ModelRegistry.load`); the poller does not retry it until the folder changes again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from shipyard.errors import ConfigError, ShipyardError
from shipyard.repository.layout import Fingerprint, scan_repository

__all__ = ["Reloadable", "RepositoryWatcher"]

log = logging.getLogger(__name__)

Snapshot = dict[str, Fingerprint]


class Reloadable(Protocol):
    """What the poller reloads: a ModelRegistry, or every worker of ``serve --workers``."""

    @property
    def root(self) -> Path:
        """The local folder of the repository."""
        ...

    async def load(self, name: str) -> None:
        """Load or reload model ``name``."""

    async def unload(self, name: str) -> None:
        """Unload model ``name``."""


class RepositoryWatcher:
    """Polls a registry's repository and reloads the models whose folder changed."""

    def __init__(
        self,
        registry: Reloadable,
        interval_s: float,
        models: tuple[str, ...] = (),
        refresh: Callable[[], object] | None = None,
    ) -> None:
        """``models``: watch only these (the server's ``--model`` list; empty: all).
        ``refresh``: called in a worker thread before each look (an object store's sync)."""
        self.registry = registry
        self.interval_s = interval_s
        self.models = models
        self.refresh = refresh
        #: What the registry was last made to match, and what the last poll saw.
        self._applied: Snapshot | None = None
        self._seen: Snapshot | None = None

    def snapshot(self) -> Snapshot:
        """Every watched model folder's fingerprint (blocking: call it in a thread)."""
        if self.refresh is not None:
            self.refresh()
        try:
            sources = scan_repository(self.registry.root)
        except ConfigError as exc:
            log.warning("repository poll: %s", exc.message)
            return dict(self._seen or {})
        if self.models:
            sources = {n: s for n, s in sources.items() if n in self.models}
        return {name: source.fingerprint() for name, source in sources.items()}

    async def start(self) -> None:
        """Take the first snapshot: what the server loaded at start."""
        self._applied = self._seen = await asyncio.to_thread(self.snapshot)

    async def poll(self) -> list[str]:
        """Look once and apply the changes that two looks agree on; return the models changed."""
        if self._applied is None:
            await self.start()
            return []
        now = await asyncio.to_thread(self.snapshot)
        seen, self._seen = self._seen, now
        if now != seen:
            return []  # still changing: wait until two polls agree
        applied = self._applied
        changed = sorted(
            name for name in set(now) | set(applied) if now.get(name) != applied.get(name)
        )
        for name in changed:
            await self._apply(name, name in now)
        self._applied = now
        return changed

    async def _apply(self, name: str, on_disk: bool) -> None:
        try:
            if on_disk:
                log.info("repository poll: model %s changed on disk; reloading it", name)
                await self.registry.load(name)
            else:
                log.info("repository poll: model %s was removed from disk; unloading it", name)
                await self.registry.unload(name)
        except ShipyardError as exc:
            log.warning("repository poll: %s", exc.message)

    async def run(self) -> None:
        """Poll every ``interval_s`` seconds until cancelled."""
        await self.start()
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.poll()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug or an OS error: log it, keep polling
                log.exception("repository poll failed")
