"""Drive a transport in a closed or an open loop for one measurement window.

A *slot* carries one request at a time: a keep-alive connection over HTTP, a lane of calls on
a shared channel over gRPC. The :class:`Driver` decides what a slot does when its response is
complete, with no coroutine, future or allocation of its own per request:

* **closed loop** (``rate`` is ``None``): ``concurrency`` slots, each sends its next request as
  soon as its response is complete. Throughput is what the server sustains at that
  concurrency; latency is measured from the actual send.
* **open loop** (``rate`` R req/s): requests are scheduled at fixed intervals, whatever the
  server does, on at most ``concurrency`` slots (the max outstanding limit). A scheduled
  request that finds every slot busy waits in a backlog and its latency is still measured from
  its *scheduled* time, so a stalling server shows in the percentiles (no coordinated
  omission). The schedule is bounded: ``rate * (warmup + duration)`` requests, and whatever has
  not gone out when the window closes is reported as ``missed``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
import ssl
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, TypeVar

from shipyard import eventloop
from shipyard.errors import LoadGeneratorError
from shipyard.loadgen.stats import Recorder, Summary

__all__ = [
    "Driver",
    "Slot",
    "Transport",
    "client_context",
    "connect",
    "measure",
    "run",
    "wait_lost",
]

#: How long requests still in flight when the window closes get to finish.
DRAIN_S = 10.0
#: How long a transport waits for a connection to open.
CONNECT_TIMEOUT_S = 10.0
#: A failed reconnect waits this long before reporting, so a dead server is not hammered.
RECONNECT_PAUSE_S = 0.05
clock = time.perf_counter_ns
_T = TypeVar("_T")


class Slot(Protocol):
    """Something that carries one request at a time and reports to its driver."""

    def send(self, intended_ns: int) -> None:
        """Send the request now; its latency counts from ``intended_ns``."""

    def close(self) -> None:
        """Close the slot (a connection is closed, a call in flight cancelled)."""


class Transport(Protocol):
    """Opens slots to one server, all sending the same pre-encoded request."""

    async def open(self, count: int, driver: Driver) -> Sequence[Slot]:
        """Open ``count`` slots reporting to ``driver``; raise LoadGeneratorError if unreachable."""

    async def aclose(self) -> None:
        """Release what :meth:`open` made (channels, connections)."""


class Driver:
    """Decides what each slot does next; the hot path is :meth:`completed`."""

    def __init__(self, recorder: Recorder, closed_loop: bool) -> None:
        self.recorder = recorder
        self.closed_loop = closed_loop
        self.running = True
        self.in_flight = 0
        self.idle: list[Slot] = []
        self.backlog: collections.deque[int] = collections.deque()
        self.drained: asyncio.Future[None] | None = None

    def start(self, slot: Slot, intended_ns: int) -> None:
        """Send on an idle ``slot`` (used to begin a loop and by the open-loop schedule)."""
        self.in_flight += 1
        slot.send(intended_ns)

    def completed(
        self, intended_ns: int, done_ns: int, status: str, detail: str = ""
    ) -> int | None:
        """Record a response; return when the slot's next request is due, or ``None`` to stop.

        A slot given ``None`` is parked: in the open loop it joins :attr:`idle` (the caller
        appends itself), after the window it stays quiet.
        """
        self.recorder.record(intended_ns, done_ns, status, detail)
        if self.running and done_ns < self.recorder.end_ns:
            if self.closed_loop:
                return done_ns
            if self.backlog:
                return self.backlog.popleft()
        self.in_flight -= 1
        if self.in_flight == 0 and not self.running and self.drained and not self.drained.done():
            self.drained.set_result(None)
        return None

    def park(self, slot: Slot) -> None:
        """An open-loop slot with nothing to send waits here for the schedule."""
        if self.running and not self.closed_loop:
            self.idle.append(slot)

    def dispatch(self, intended_ns: int) -> None:
        """Open loop: send a scheduled request on an idle slot, or queue it in the backlog."""
        if self.idle:
            self.start(self.idle.pop(), intended_ns)
        else:
            self.backlog.append(intended_ns)

    def stop(self) -> asyncio.Future[None]:
        """Send nothing more; the future is done once nothing is in flight."""
        self.running = False
        self.drained = asyncio.get_running_loop().create_future()
        if self.in_flight == 0:
            self.drained.set_result(None)
        return self.drained


async def _schedule(
    driver: Driver, rate: float, first_ns: int, end_ns: int, tick_ns: int = 0
) -> tuple[int, int]:
    """Dispatch ``rate`` requests per second from ``first_ns`` until ``end_ns``.

    With ``tick_ns`` 0 each request leaves at its time. The event loop's timers have a
    resolution of about a millisecond (uvloop's are libuv's), so between requests less than
    that apart the loop does not sleep but spins, and at thousands of requests per second the
    generator keeps a whole core busy. With a ``tick_ns`` the generator wakes at most once per
    tick and sends every request that has come due; each one's latency still counts from its
    scheduled time, so the send delay (up to one tick) is part of the figures, not hidden.

    Returns how many requests the schedule holds, and how many of them were dispatched (sent
    or queued in the backlog). The caller counts what was never dispatched from this same
    total: two counts made with different float arithmetic (``span / (1e9 / rate)`` and
    ``span * rate / 1e9``) can differ by one and report a request "missed" that was never due.
    """
    interval_ns = 1e9 / rate
    total = math.floor((end_ns - first_ns) * rate / 1e9)
    sent = 0
    while sent < total and driver.running:
        now = clock()
        due = first_ns + int(sent * interval_ns)
        if due > now:
            await asyncio.sleep(max(due - now, tick_ns) / 1e9)
            continue
        while sent < total and due <= now:  # catch up on everything due since the last wake-up
            driver.dispatch(due)
            sent += 1
            due = first_ns + int(sent * interval_ns)
    return total, sent


def client_context(ca: Path | None, alpn: str) -> ssl.SSLContext:
    """A TLS client context that verifies the server with ``ca`` (None: the system's CAs)
    and offers ALPN ``alpn`` (``http/1.1`` for HTTP, ``h2`` for gRPC)."""
    context = ssl.create_default_context(cafile=None if ca is None else str(ca))
    context.set_alpn_protocols([alpn])
    return context


#: How long closed connections get to go (a TLS close needs a round trip) before being aborted.
CLOSE_S = 2.0


async def wait_lost(
    connections: Sequence[tuple[asyncio.Future[None] | None, asyncio.Transport | None]],
) -> None:
    """Wait (at most :data:`CLOSE_S`) until closed connections are gone, then abort the rest.

    ``connections`` pairs each connection's future (done once its ``connection_lost`` ran)
    with its transport; the event loop must not close while a TLS connection still closes.
    """
    pending = {lost for lost, _ in connections if lost is not None and not lost.done()}
    if pending:
        await asyncio.wait(pending, timeout=CLOSE_S)
    for lost, transport in connections:
        if lost is not None and not lost.done() and transport is not None:
            transport.abort()
    await asyncio.sleep(0)  # let the transports' close callbacks run


async def connect(
    protocol: asyncio.Protocol, host: str, port: int, tls: ssl.SSLContext | None = None
) -> None:
    """Open a TCP connection for ``protocol`` (TLS with ``tls``, its handshake included);
    LoadGeneratorError when it cannot be had."""
    loop = asyncio.get_running_loop()
    try:
        await asyncio.wait_for(
            loop.create_connection(lambda: protocol, host, port, ssl=tls),
            timeout=CONNECT_TIMEOUT_S,
        )
    except (OSError, TimeoutError) as exc:
        raise LoadGeneratorError(f"cannot connect to {host}:{port}: {exc or 'timed out'}") from exc


async def measure(
    transport: Transport,
    concurrency: int,
    warmup_s: float,
    duration_s: float,
    rate: float | None = None,
    tick_s: float = 0.0,
) -> Summary:
    """One measurement: open the slots, drive them, drain, summarize.

    ``concurrency`` is the number of slots: requests in flight in a closed loop, the max
    outstanding in an open loop. Connecting happens before the clock starts. ``tick_s``: see
    :func:`_schedule` (open loop only).
    """
    if concurrency < 1:
        raise LoadGeneratorError(f"concurrency must be at least 1, not {concurrency}")
    if rate is not None and not rate > 0:
        raise LoadGeneratorError(f"rate must be a positive number of requests/s, not {rate}")
    if warmup_s < 0 or not duration_s > 0:
        raise LoadGeneratorError("duration must be positive and warm-up not negative")
    if not 0 <= tick_s <= 1:
        raise LoadGeneratorError(f"the tick must be between 0 and 1 s, not {tick_s}")
    recorder = Recorder(0, 0)
    driver = Driver(recorder, closed_loop=rate is None)
    slots = await transport.open(concurrency, driver)
    try:
        cpu0, now = time.process_time(), clock()
        recorder.start_ns = now + int(warmup_s * 1e9)
        recorder.end_ns = recorder.start_ns + int(duration_s * 1e9)
        total = scheduled = 0
        if rate is None:
            for slot in slots:
                driver.start(slot, clock())
            await asyncio.sleep(max(0.0, (recorder.end_ns - clock()) / 1e9))
        else:
            driver.idle = list(slots)
            tick_ns = int(tick_s * 1e9)
            total, scheduled = await _schedule(driver, rate, now, recorder.end_ns, tick_ns)
            await asyncio.sleep(max(0.0, (recorder.end_ns - clock()) / 1e9))
        cpu = (time.process_time() - cpu0) / ((clock() - now) / 1e9)
        missed = len(driver.backlog) + max(0, total - scheduled)
        drained = driver.stop()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(drained, timeout=DRAIN_S)
    finally:
        for slot in slots:
            slot.close()
        await transport.aclose()
    return recorder.summary(concurrency, cpu, rate=rate, missed=missed)


def run(
    transport: Transport,
    concurrency: int,
    warmup_s: float,
    duration_s: float,
    rate: float | None = None,
) -> Summary:
    """:func:`measure` on a fresh event loop."""
    return eventloop.run(measure(transport, concurrency, warmup_s, duration_s, rate))
