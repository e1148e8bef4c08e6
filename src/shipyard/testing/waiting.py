"""Wait for a condition with a deadline, instead of sleeping for a fixed time in a test."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

__all__ = ["wait_until", "wait_until_blocking"]

#: How often a condition is checked.
INTERVAL_S = 0.001


async def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    """Check ``condition`` every millisecond, yielding to the event loop, until it holds.

    ``what`` says what is awaited ("the model to start"); it is in the AssertionError raised
    after ``timeout_s`` seconds.
    """
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting until {what}")
        await asyncio.sleep(INTERVAL_S)


def wait_until_blocking(condition: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    """:func:`wait_until` for a thread without an event loop: blocks between the checks."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting until {what}")
        time.sleep(INTERVAL_S)
