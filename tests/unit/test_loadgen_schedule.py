"""The open loop's schedule: every request at its time, and with a tick, few wake-ups."""

from __future__ import annotations

import asyncio

import pytest

from shipyard.loadgen.runner import _schedule, clock

MS = 1_000_000


class _Driver:
    """Records each dispatch: the request's scheduled time and when it was dispatched."""

    def __init__(self) -> None:
        self.running = True
        self.sent: list[tuple[int, int]] = []

    def dispatch(self, intended_ns: int) -> None:
        self.sent.append((intended_ns, clock()))


def _run(tick_ns: int, monkeypatch: pytest.MonkeyPatch) -> tuple[_Driver, int, int, list[float]]:
    """1,000 req/s for 100 ms; returns the driver, the start, the counts and the sleeps asked."""
    driver = _Driver()
    sleeps: list[float] = []
    real_sleep = asyncio.sleep

    async def sleep(delay: float) -> None:
        sleeps.append(delay)
        await real_sleep(delay)

    monkeypatch.setattr(asyncio, "sleep", sleep)

    async def go() -> tuple[int, int, int]:
        first = clock()
        total, sent = await _schedule(driver, 1000.0, first, first + 100 * MS, tick_ns)  # type: ignore[arg-type]
        return first, total, sent

    first, total, sent = asyncio.run(go())
    assert total == sent == 100
    return driver, first, sent, sleeps


def test_a_tick_sends_every_request_with_its_scheduled_time_in_few_wake_ups(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With a 20 ms tick, all 100 requests go out, each stamped with its own scheduled time
    (a late send counts in its latency), none early, and the generator sleeps at most 5 times,
    never less than the tick (without it: about once per request, under 1 ms each)."""
    driver, first, _, sleeps = _run(20 * MS, monkeypatch)
    assert [intended for intended, _ in driver.sent] == [first + i * MS for i in range(100)]
    assert all(at >= intended for intended, at in driver.sent)
    assert 1 <= len(sleeps) <= 5
    assert min(sleeps) >= 0.020


def test_without_a_tick_each_request_waits_for_its_own_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Tick 0: the same 100 requests, none dispatched before its scheduled time, and the
    generator sleeps for less than a millisecond between them (what a tick avoids)."""
    driver, first, _, sleeps = _run(0, monkeypatch)
    assert [intended for intended, _ in driver.sent] == [first + i * MS for i in range(100)]
    assert all(at >= intended for intended, at in driver.sent)
    assert min(sleeps) < 0.001
