"""The supervisor's answers on the control channel: the workers as one server.

A worker asks here about the whole server; the broker asks every serving worker and combines
their answers:

* ``ready``: every worker is serving (none is starting, restarting or gone) and says ready.
* ``statistics`` and ``metrics``: the sum over the serving workers
  (:mod:`shipyard.workers.aggregate`), plus the supervisor's own worker gauges in ``/metrics``.
* ``load`` and ``unload``: applied by every serving worker before the answer, one action at a
  time (so two workers never see two actions in different orders); a failure anywhere is the
  answer, naming the workers. The action is remembered (:attr:`Broker.desired`): a worker
  started later applies it after loading, and one that was starting while it happened gets
  it when it reports ready (``hello``), before it counts as serving.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from shipyard.errors import InvalidInputError, ShipyardError
from shipyard.workers import channel
from shipyard.workers.aggregate import (
    merge_families,
    merge_stats,
    render_families,
    stats_from_json,
    stats_to_json,
)
from shipyard.workers.member import READ_TIMEOUT_S
from shipyard.workers.spec import Desired

__all__ = ["Broker", "Slot", "SlotState"]

log = logging.getLogger(__name__)


class SlotState(enum.Enum):
    """Where a worker slot is in its life."""

    STARTING = "starting"
    SERVING = "serving"
    #: Exited; waiting to be started again (or for good, once the server stops).
    DOWN = "down"


@dataclass(slots=True)
class Slot:
    """One worker's place: its process now, its state, and what happened to it so far."""

    index: int
    state: SlotState = SlotState.DOWN
    #: How many processes this slot has started (the current one's generation).
    generation: int = 0
    pid: int | None = None
    #: :attr:`Broker.version` when the current process was started.
    spawned_version: int = 0
    #: What the worker reported when it started serving (ServerInfo fields).
    info: dict[str, Any] | None = None
    #: Why the current process could not start, as the worker reported it.
    error: str | None = None
    #: ``time.monotonic()`` when the current process started serving.
    served_at: float | None = None
    #: Processes started again after one exited.
    restarts: int = 0
    serving: asyncio.Event = field(default_factory=asyncio.Event)


class Broker:
    """Answers the workers' questions about the whole server by asking every worker."""

    def __init__(self, folder: Path, slots: list[Slot]) -> None:
        self.folder = folder
        self.slots = slots
        #: Each model's last load or unload, and a counter of the actions so far.
        self.desired: Desired = {}
        self.version = 0
        self._lock = asyncio.Lock()

    def serving(self) -> list[Slot]:
        """The slots whose worker is serving now."""
        return [s for s in self.slots if s.state is SlotState.SERVING]

    async def handle(self, request: channel.Message) -> channel.Message:
        """Answer one request from a worker (see the module docstring)."""
        op = request.get("op")
        if op == "hello":
            await self._hello(request)
            return {"ok": True}
        if op == "failed":
            self._failed(request)
            return {"ok": True}
        if op == "ready":
            return {"ok": True, "ready": await self.ready()}
        if op == "statistics":
            return await self._statistics(request)
        if op == "metrics":
            return {"ok": True, "text": render_families(await self._families()).decode()}
        if op in ("load", "unload"):
            await self.apply(op, str(request.get("name")))
            return {"ok": True}
        raise InvalidInputError(f"unknown control request {op!r}")

    async def _ask(
        self, slot: Slot, request: channel.Message, timeout_s: float | None
    ) -> channel.Message:
        """``request`` to one worker; its answer, or an error answer if it cannot answer."""
        try:
            path = channel.worker_path(self.folder, slot.index)
            return await channel.call(path, request, timeout_s)
        except ShipyardError as exc:
            return channel.error_answer(exc)

    async def _ask_serving(
        self, request: channel.Message, timeout_s: float | None
    ) -> list[tuple[Slot, channel.Message]]:
        slots = self.serving()
        answers = await asyncio.gather(*(self._ask(s, request, timeout_s) for s in slots))
        return list(zip(slots, answers, strict=True))

    # -- a worker's life -------------------------------------------------------------------

    async def _hello(self, request: channel.Message) -> None:
        slot = self._slot(request)
        if slot is None:
            return
        async with self._lock:  # no action runs while it joins
            if slot.spawned_version != self.version:
                answer = await self._ask(slot, {"op": "sync", "desired": self.desired}, None)
                if not answer.get("ok"):
                    log.warning("worker %d: %s", slot.index, answer.get("message"))
            slot.info = request.get("info")
            slot.state, slot.served_at = SlotState.SERVING, time.monotonic()
            slot.serving.set()
        log.info("worker %d serving (pid %s)", slot.index, slot.pid)

    def _failed(self, request: channel.Message) -> None:
        slot = self._slot(request)
        if slot is not None:
            slot.error = str(request.get("error"))

    def _slot(self, request: channel.Message) -> Slot | None:
        """The slot a worker's message is about, if it comes from its current process."""
        index, generation = request.get("slot"), request.get("generation")
        if not isinstance(index, int) or not 0 <= index < len(self.slots):
            raise InvalidInputError(f"no worker slot {index!r}")
        slot = self.slots[index]
        return slot if generation == slot.generation else None

    # -- the whole server --------------------------------------------------------------------

    async def ready(self) -> bool:
        """Whether every worker serves and says it is ready."""
        if any(s.state is not SlotState.SERVING for s in self.slots):
            return False
        answers = await self._ask_serving({"op": "ready"}, READ_TIMEOUT_S)
        return len(answers) == len(self.slots) and all(a.get("ready") for _, a in answers)

    async def _statistics(self, request: channel.Message) -> channel.Message:
        name, version = request.get("name"), request.get("version")
        question = {"op": "statistics", "name": name, "version": version}
        answers = await self._ask_serving(question, READ_TIMEOUT_S)
        found = [stats_from_json(a["stats"]) for _, a in answers if a.get("ok")]
        if not found:
            if answers:
                return answers[0][1]  # the same error everywhere (an unknown model)
            return {"ok": False, "code": "UNAVAILABLE", "message": "no worker is serving"}
        return {"ok": True, "stats": stats_to_json(merge_stats(found))}

    async def _families(self) -> list[dict[str, Any]]:
        answers = await self._ask_serving({"op": "metrics"}, READ_TIMEOUT_S)
        for slot, answer in answers:
            if not answer.get("ok"):
                log.warning("/metrics: worker %d: %s", slot.index, answer.get("message"))
        families = merge_families(a["families"] for _, a in answers if a.get("ok"))
        whole = all(s.state is SlotState.SERVING for s in self.slots)
        for family in families:
            if family["name"] == "shipyard_server_ready" and not whole:
                family["samples"] = [[n, labels, 0.0] for n, labels, _ in family["samples"]]
        return families + self._own_families(len(answers))

    def _own_families(self, answered: int) -> list[dict[str, Any]]:
        """The supervisor's gauges and counters about its workers."""
        restarts = [
            ["shipyard_worker_restarts_total", {"worker": str(s.index)}, float(s.restarts)]
            for s in self.slots
        ]
        count = len(self.slots)
        return [
            _gauge("shipyard_workers", "Worker processes of the server (--workers)", count),
            _gauge("shipyard_workers_serving", "Worker processes serving now", answered),
            {
                "name": "shipyard_worker_restarts",
                "documentation": "Worker processes started again after one exited",
                "type": "counter",
                "unit": "",
                "samples": restarts,
            },
        ]

    async def apply(self, action: Literal["load", "unload"], name: str) -> None:
        """Load or unload ``name`` in every serving worker; raise if any failed."""
        async with self._lock:
            started = time.perf_counter()
            answers = await self._ask_serving({"op": action, "name": name}, None)
            failed = [(s, a) for s, a in answers if not a.get("ok")]
            if len(failed) < len(answers) or any(a.get("code") != "NOT_FOUND" for _, a in failed):
                self.desired[name] = action  # it happened (a failed load marks the model too)
                self.version += 1
        log.info(
            "%s of model %s on %d worker(s): %d failed (%.2f s)",
            action,
            name,
            len(answers),
            len(failed),
            time.perf_counter() - started,
        )
        if not failed:
            return
        first = failed[0][1]
        message = str(first.get("message"))
        if len(failed) < len(answers) or any(a.get("message") != message for _, a in failed):
            done = [s.index for s, a in answers if a.get("ok")]
            message = (
                f"{action} of model {name!r} failed on worker(s) "
                f"{', '.join(str(s.index) for s, _ in failed)} of {len(self.slots)}: {message}"
                + (f" (it succeeded on worker(s) {', '.join(map(str, done))})" if done else "")
            )
        channel.raise_error({"ok": False, "code": first.get("code"), "message": message})


def _gauge(name: str, documentation: str, value: float) -> dict[str, Any]:
    return {
        "name": name,
        "documentation": documentation,
        "type": "gauge",
        "unit": "",
        "samples": [[name, {}, float(value)]],
    }
