"""``--poll-interval`` with ``--workers``: one poller, in the supervisor, for every worker.

The supervisor runs the repository poller (:class:`~shipyard.repository.watch.RepositoryWatcher`)
once for the whole server, over :class:`EveryWorker`: a model whose folder changed is reloaded
by every worker through the broker, one action at a time, exactly as a load sent by a client.
Workers do not poll on their own, so they never see a change at different times, and the
actions are remembered for workers started later.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from shipyard.config import ServerConfig
from shipyard.errors import ShipyardError
from shipyard.repository.stores import open_store
from shipyard.repository.watch import RepositoryWatcher
from shipyard.workers.broker import Broker

__all__ = ["EveryWorker", "poll_repository"]

log = logging.getLogger(__name__)


class EveryWorker:
    """The repository as every worker serves it (:class:`~shipyard.repository.watch.Reloadable`)."""

    def __init__(self, root: Path, broker: Broker) -> None:
        self._root = root
        self.broker = broker

    @property
    def root(self) -> Path:
        """The local folder of the repository (an object store's mirror)."""
        return self._root

    async def load(self, name: str) -> None:
        """Load or reload ``name`` in every worker (ShipyardError if any failed)."""
        await self.broker.apply("load", name)

    async def unload(self, name: str) -> None:
        """Unload ``name`` in every worker."""
        await self.broker.apply("unload", name)


async def poll_repository(config: ServerConfig, broker: Broker) -> None:
    """Poll ``config.repository`` every ``poll_interval_s`` until cancelled."""
    try:
        store = await asyncio.to_thread(open_store, config.repository, config.cache_dir)
    except ShipyardError as exc:
        log.error("repository poll: %s; the repository is not polled", exc.message)
        return
    watcher = RepositoryWatcher(
        EveryWorker(store.root, broker),
        config.poll_interval_s,
        config.models,
        refresh=store.sync,
    )
    await watcher.run()
