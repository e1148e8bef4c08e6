"""The worker supervisor in this process, with stand-in worker processes: restarts, crash
loops, failed starts, and the control channel they talk over (shipyard.workers)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

import pytest

from shipyard.config import ServerConfig
from shipyard.errors import ConfigError, InvalidInputError, NotFoundError, UnavailableError
from shipyard.server.app import ServerInfo
from shipyard.testing import wait_until
from shipyard.workers import RestartPolicy, Supervisor, channel
from shipyard.workers.broker import Broker, Slot, SlotState

#: A stand-in worker: reports itself serving and waits for SIGTERM (exit 0) or stdin to close.
#: ``FAKE`` says how slot 1 misbehaves: "crash" (every restart exits 3 at once) or "fail" (its
#: first start reports an error and exits 1).
FAKE_WORKER = """
import asyncio, os, signal, sys
from shipyard.workers import channel
from shipyard.workers.spec import read_spec

spec = read_spec(sys.stdin.buffer)
signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
path = channel.supervisor_path(spec.folder)
who = {"slot": spec.slot, "generation": spec.generation}
if spec.slot == 1 and os.environ["FAKE"] == "fail":
    asyncio.run(channel.call(path, {"op": "failed", "error": "model 'x' is broken", **who}))
    sys.exit(1)
if spec.slot == 1 and spec.generation > 1:
    sys.exit(3)
info = {"http_url": "http://127.0.0.1:9", "http_port": 9, "models": []}
asyncio.run(channel.call(path, {"op": "hello", "info": info, **who}))
while os.read(0, 4096):
    pass
"""

FAST = RestartPolicy(first_delay_s=0.01, max_delay_s=0.05, steady_s=60.0, crash_loop=3)


def _listeners(port: int) -> int:
    """How many TCP sockets listen on ``port`` on this machine (``/proc/net/tcp``)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                count += 1
    return count


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _supervisor(monkeypatch: pytest.MonkeyPatch, fake: str) -> Supervisor:
    monkeypatch.setenv("FAKE", fake)
    config = ServerConfig(http_port=0, grpc_port=0, drain_timeout_s=5)
    return Supervisor(config, 2, 2, FAST, (sys.executable, "-c", FAKE_WORKER))


def test_a_crash_looping_worker_is_reported_and_gets_no_connections(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A worker that keeps exiting is restarted with backoff, logged as crash-looping, counted
    in /metrics, and its socket closed (the other keeps the port); a SIGTERM drain still exits 0."""
    supervisor = _supervisor(monkeypatch, "crash")
    pids: list[int] = []
    seen: dict[str, object] = {}

    async def drive() -> None:
        assert supervisor.broker is not None
        port = supervisor.ports[0]
        seen["listeners before"] = _listeners(port)
        first = supervisor.slots[1].pid
        assert first is not None
        pids.extend(s.pid for s in supervisor.slots if s.pid is not None)
        os.kill(first, signal.SIGKILL)
        await wait_until(lambda: supervisor.slots[1].restarts >= 3, "three restarts", 60)
        await wait_until(lambda: _listeners(port) == 1, "slot 1's socket to close", 10)
        seen["ready"] = await supervisor.broker.ready()
        answer = await supervisor.broker.handle({"op": "metrics"})
        seen["metrics"] = answer["text"]
        # The handler the supervisor installed for SIGTERM, called on the loop: a real signal
        # to the pytest process (which holds other tests' native threads) crashed it once.
        # tests/workers sends real SIGTERMs to a real `shipyard serve --workers`.
        asyncio.get_running_loop().call_soon(supervisor._on_signal, signal.SIGTERM)

    def on_ready(info: ServerInfo) -> None:
        seen["task"] = asyncio.ensure_future(drive())

    with caplog.at_level(logging.WARNING, "shipyard.workers"):
        status = asyncio.run(supervisor.run(on_ready))
    task = seen["task"]
    assert isinstance(task, asyncio.Future)
    task.result()
    assert status == 0
    assert seen["listeners before"] == 2
    assert seen["ready"] is False
    assert 'shipyard_worker_restarts_total{worker="1"}' in str(seen["metrics"])
    assert 'shipyard_worker_restarts_total{worker="0"} 0.0' in str(seen["metrics"])
    messages = [r.getMessage() for r in caplog.records]
    assert any(
        "worker 1" in m and "was killed by SIGKILL; starting it again" in m for m in messages
    )
    looping = [m for m in messages if "worker 1 is crash-looping" in m]
    assert looping, messages
    assert "exited with status 3" in looping[0]
    assert not any(_alive(pid) for pid in pids)


def test_a_worker_that_fails_to_start_stops_the_start_with_its_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The start fails with the worker's own message; the other worker is stopped too."""
    supervisor = _supervisor(monkeypatch, "fail")
    ready: list[ServerInfo] = []
    with pytest.raises(ConfigError, match="model 'x' is broken"):
        asyncio.run(supervisor.run(ready.append))
    assert ready == []
    assert supervisor.slots[0].generation == 1  # no restart while starting


def test_restart_delays_grow_then_stop_growing() -> None:
    """The first quick restart is at once; then the delay doubles up to the maximum."""
    policy = RestartPolicy(first_delay_s=0.5, max_delay_s=4.0)
    assert [policy.delay_s(n) for n in range(7)] == [0.0, 0.0, 0.5, 1.0, 2.0, 4.0, 4.0]


def test_the_channel_carries_answers_and_errors(tmp_path: Path) -> None:
    """A control call gets the handler's answer; an error keeps its code; nobody listening,
    or a bad request, is a clear error."""
    asyncio.run(_channel_round_trips(tmp_path))


async def _channel_round_trips(tmp_path: Path) -> None:

    async def handler(request: channel.Message) -> channel.Message:
        if request["op"] == "boom":
            raise NotFoundError("unknown model 'm'")
        return {"ok": True, "echo": request["op"]}

    path = tmp_path / "w.sock"
    server = await channel.serve(path, handler)
    try:
        assert await channel.call(path, {"op": "hi"}, 5) == {"ok": True, "echo": "hi"}
        answer = await channel.call(path, {"op": "boom"}, 5)
        with pytest.raises(NotFoundError, match="unknown model 'm'"):
            channel.raise_error(answer)
        reader, writer = await asyncio.open_unix_connection(path)
        writer.write(b"not json\n")
        bad = await reader.readline()
        writer.close()
        assert b"INVALID_ARGUMENT" in bad
    finally:
        server.close()
        await server.wait_closed()
    with pytest.raises(UnavailableError, match="not reachable"):
        await channel.call(tmp_path / "nobody.sock", {"op": "hi"}, 5)


def test_the_broker_applies_control_everywhere_and_names_who_failed(tmp_path: Path) -> None:
    """Load/unload reach every serving worker; a failure on some names them (and the action
    is remembered for later workers), the same error everywhere is that error alone (and an
    unknown model is not remembered); a worker that starts meanwhile is synced at hello."""
    asyncio.run(_broker_round_trips(tmp_path))


async def _broker_round_trips(folder: Path) -> None:
    seen: dict[int, list[channel.Message]] = {0: [], 1: [], 2: []}

    def worker(index: int) -> channel.Handler:
        async def handle(request: channel.Message) -> channel.Message:
            seen[index].append(request)
            if request.get("name") == "nope":
                raise NotFoundError("unknown model 'nope'")
            if request.get("name") == "broken" and index == 1:
                raise ConfigError("model 'broken' has no version")
            return {"ok": True}

        return handle

    slots = [Slot(i) for i in range(3)]
    broker = Broker(folder, slots)
    servers = [await channel.serve(channel.worker_path(folder, i), worker(i)) for i in range(3)]
    try:
        for slot in slots[:2]:
            slot.state, slot.generation = SlotState.SERVING, 1
        slots[2].state, slots[2].generation = SlotState.STARTING, 1
        slots[2].spawned_version = broker.version
        await broker.apply("unload", "simple")
        assert [r["op"] for r in seen[0] + seen[1]] == ["unload", "unload"]
        assert seen[2] == []  # not serving yet
        with pytest.raises(NotFoundError) as exc:
            await broker.apply("load", "nope")
        assert str(exc.value) == "unknown model 'nope'"
        with pytest.raises(InvalidInputError, match=r"failed on worker\(s\) 1 of 3: .* no version"):
            await broker.apply("load", "broken")
        assert broker.desired == {"simple": "unload", "broken": "load"}
        info = {"http_url": "http://127.0.0.1:9", "http_port": 9, "models": []}
        answer = await broker.handle({"op": "hello", "slot": 2, "generation": 1, "info": info})
        assert answer == {"ok": True}
        assert seen[2] == [{"op": "sync", "desired": {"simple": "unload", "broken": "load"}}]
        assert slots[2].state is SlotState.SERVING
        stale = await broker.handle({"op": "hello", "slot": 1, "generation": 7, "info": info})
        assert stale == {"ok": True}  # from a process that is no longer slot 1's: ignored
    finally:
        for server in servers:
            server.close()
