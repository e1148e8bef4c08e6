"""A worker's side of the control channel: :class:`WorkerMember`, the service's Cluster.

Asked about the whole server (readiness, statistics, ``/metrics``, load/unload), the worker's
service asks the supervisor, which asks every worker, this one included, and answers with the
combined result (:mod:`shipyard.workers.broker`). The worker answers those questions about
itself on its own control socket (:meth:`WorkerMember.join`), from its event loop.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from shipyard.errors import InvalidInputError, ShipyardError, UnavailableError
from shipyard.stats import ModelStats
from shipyard.workers import channel
from shipyard.workers.aggregate import families_to_json, stats_from_json, stats_to_json
from shipyard.workers.spec import Desired

if TYPE_CHECKING:
    import asyncio

    from prometheus_client import CollectorRegistry

    from shipyard.server.app import ServerInfo
    from shipyard.server.service import InferenceService

__all__ = ["READ_TIMEOUT_S", "WorkerMember"]

log = logging.getLogger(__name__)

#: How long a question about the whole server (not a load) may wait for its answer.
READ_TIMEOUT_S = 10.0


class WorkerMember:
    """One worker of a ``--workers`` server, as :class:`~shipyard.server.app.ClusterMember`."""

    def __init__(self, folder: Path, slot: int, generation: int, desired: Desired) -> None:
        self.folder = folder
        self.slot = slot
        self.generation = generation
        #: Repository control that happened before this worker started, applied at join.
        self.desired = dict(desired)
        self._service: InferenceService | None = None
        self._metrics: CollectorRegistry | None = None
        self._server: asyncio.Server | None = None

    # -- the whole server, through the supervisor ------------------------------------------

    async def _ask(self, request: channel.Message, timeout_s: float | None) -> channel.Message:
        try:
            answer = await channel.call(channel.supervisor_path(self.folder), request, timeout_s)
        except UnavailableError as exc:
            raise UnavailableError(f"the worker supervisor: {exc.message}") from exc
        channel.raise_error(answer)
        return answer

    async def ready(self) -> bool:
        """Whether every worker is running and ready (False if the supervisor is gone)."""
        try:
            answer = await self._ask({"op": "ready"}, READ_TIMEOUT_S)
        except ShipyardError:
            return False
        return bool(answer.get("ready"))

    async def statistics(self, name: str | None, version: str | None) -> list[ModelStats]:
        """Model statistics summed over the workers."""
        request = {"op": "statistics", "name": name, "version": version}
        answer = await self._ask(request, READ_TIMEOUT_S)
        return stats_from_json(answer["stats"])

    async def apply(self, action: Literal["load", "unload"], name: str) -> None:
        """Load or unload ``name`` in every worker; waits as long as the slowest takes."""
        await self._ask({"op": action, "name": name}, None)

    async def metrics_text(self) -> bytes:
        """``/metrics`` summed over the workers."""
        answer = await self._ask({"op": "metrics"}, READ_TIMEOUT_S)
        return str(answer["text"]).encode()

    async def hello(self, info: ServerInfo) -> None:
        """Tell the supervisor this worker serves (it then counts it in and may sync it)."""
        request = {
            "op": "hello",
            "slot": self.slot,
            "generation": self.generation,
            "info": dataclasses.asdict(info),
        }
        try:
            await self._ask(request, None)
        except ShipyardError as exc:
            log.warning("could not report ready to the supervisor: %s", exc.message)

    # -- this worker, for the supervisor --------------------------------------------------

    async def join(self, service: InferenceService, metrics: CollectorRegistry) -> None:
        """Apply the repository control that happened before this start, then listen."""
        self._service, self._metrics = service, metrics
        await self._sync(self.desired)
        path = channel.worker_path(self.folder, self.slot)
        self._server = await channel.serve(path, self._answer)

    async def leave(self) -> None:
        """Stop answering the supervisor."""
        if self._server is not None:
            self._server.close()
            self._server = None
            channel.worker_path(self.folder, self.slot).unlink(missing_ok=True)

    async def _sync(self, desired: Desired) -> None:
        """Bring this worker's models in line with ``desired`` (failures are logged)."""
        assert self._service is not None
        registry = self._service.registry
        for name, action in desired.items():
            try:
                if action == "load":
                    await registry.load(name)
                else:
                    await registry.unload(name)
            except ShipyardError as exc:
                log.warning("repository control: %s of model %s: %s", action, name, exc.message)

    async def _answer(self, request: channel.Message) -> channel.Message:
        """Answer one of the supervisor's requests about this worker."""
        service, metrics = self._service, self._metrics
        assert service is not None, "answers only once joined"
        assert metrics is not None
        op = request.get("op")
        if op == "ready":
            return {"ok": True, "ready": service.ready()}
        if op == "statistics":
            stats = service.statistics(request.get("name"), request.get("version"))
            return {"ok": True, "stats": stats_to_json(stats)}
        if op == "metrics":
            return {"ok": True, "families": families_to_json(metrics)}
        if op in ("load", "unload"):
            name = str(request.get("name"))
            if op == "load":
                await service.registry.load(name)
            else:
                await service.registry.unload(name)
            return {"ok": True}
        if op == "sync":
            await self._sync(request.get("desired") or {})
            return {"ok": True}
        raise InvalidInputError(f"unknown control request {op!r}")
