"""A closed-loop HTTP/1.1 load generator, run as its own process by ``serve_overhead.py``.

Each of ``--concurrency`` keep-alive connections sends one pre-encoded request, waits for the
whole response, and sends the next at once. Everything runs in ``asyncio.Protocol`` callbacks
(on uvloop when installed): no coroutine, future or header dictionary per request, so one
Python process drives well over 10k requests/s and is not the bottleneck it measures.

Reads the request (raw bytes: request line, headers and body) from ``--request``; prints one
JSON object: completed requests, requests/s, latency percentiles, errors and its own CPU time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from pathlib import Path
from typing import cast

__all__ = ["main"]


class _Run:
    """Shared state of one measurement: the request, the window and what was recorded."""

    def __init__(self, request: bytes, start_ns: int, end_ns: int) -> None:
        self.request = request
        self.start_ns = start_ns
        self.end_ns = end_ns
        self.running = True
        self.latencies: list[int] = []
        self.completed = 0
        self.errors = 0
        self.first_error = ""
        self.open = 0
        self.all_closed: asyncio.Future[None] | None = None

    def record(self, sent_ns: int, done_ns: int, ok: bool, detail: str) -> None:
        if not ok:
            self.errors += 1
            self.first_error = self.first_error or detail
            return
        if self.start_ns <= done_ns <= self.end_ns:
            self.completed += 1
            if sent_ns >= self.start_ns:
                self.latencies.append(done_ns - sent_ns)

    def closed(self) -> None:
        self.open -= 1
        if self.open == 0 and self.all_closed is not None and not self.all_closed.done():
            self.all_closed.set_result(None)


class _Connection(asyncio.Protocol):
    """One keep-alive connection with at most one request in flight."""

    def __init__(self, run: _Run) -> None:
        self.run = run
        self.buffer = bytearray()
        self.need = -1  # bytes of the current response (head + body); -1: head not parsed yet
        self.status = b""
        self.sent_ns = 0
        self.transport: asyncio.Transport | None = None
        self.closing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.run.open += 1

    def send(self) -> None:
        assert self.transport is not None
        self.sent_ns = time.perf_counter_ns()
        self.transport.write(self.run.request)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        if self.need < 0:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buffer[:end]).lower()
            self.status = head[9:12]
            at = head.find(b"\r\ncontent-length:")
            if at < 0:
                self._fail("response without Content-Length")
                return
            line_end = head.find(b"\r\n", at + 2)
            length = int(head[at + 17 : line_end if line_end > 0 else len(head)])
            self.need = end + 4 + length
        if len(buffer) < self.need:
            return
        done_ns = time.perf_counter_ns()
        ok = self.status == b"200"
        detail = "" if ok else bytes(buffer[: min(self.need, 300)]).decode("latin-1")
        del buffer[: self.need]
        self.need = -1
        self.run.record(self.sent_ns, done_ns, ok, detail)
        if self.run.running and done_ns < self.run.end_ns:
            self.send()
        else:
            assert self.transport is not None
            self.closing = True
            self.transport.close()

    def _fail(self, detail: str) -> None:
        self.closing = True
        self.run.record(self.sent_ns, time.perf_counter_ns(), False, detail)
        assert self.transport is not None
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closing and (self.need >= 0 or self.run.running):
            self.run.record(self.sent_ns, time.perf_counter_ns(), False, f"connection lost: {exc}")
        self.run.closed()


async def _measure(
    host: str, port: int, request: bytes, concurrency: int, warmup_s: float, duration_s: float
) -> dict[str, object]:
    loop = asyncio.get_running_loop()
    now = time.perf_counter_ns()
    run = _Run(request, now + int(warmup_s * 1e9), now + int((warmup_s + duration_s) * 1e9))
    run.all_closed = loop.create_future()
    connections = []
    for _ in range(concurrency):
        _, protocol = await asyncio.wait_for(
            loop.create_connection(lambda: _Connection(run), host, port), timeout=10
        )
        connections.append(protocol)
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    for connection in connections:
        connection.send()
    await asyncio.sleep(max(0.0, (run.end_ns - time.perf_counter_ns()) / 1e9))
    run.running = False
    try:  # in-flight requests finish (bounded), then each connection closes itself
        await asyncio.wait_for(asyncio.shield(run.all_closed), timeout=10)
    except TimeoutError:
        for connection in connections:
            if connection.transport is not None:
                connection.transport.abort()
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu_s = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    latencies = sorted(run.latencies)

    def percentile(q: float) -> float:
        if not latencies:
            return float("nan")
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] / 1e6

    return {
        "concurrency": concurrency,
        "duration_s": duration_s,
        "completed": run.completed,
        "rps": run.completed / duration_s,
        "p50_ms": percentile(0.50),
        "p99_ms": percentile(0.99),
        "mean_ms": sum(latencies) / len(latencies) / 1e6 if latencies else float("nan"),
        "errors": run.errors,
        "first_error": run.first_error,
        "client_cpu": cpu_s / (warmup_s + duration_s),
    }


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, run one measurement, print its JSON summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--request", type=Path, required=True, help="file with the raw request")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds not recorded")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds recorded")
    args = parser.parse_args(argv)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        parser.error("this benchmark only talks to the local machine")
    request = args.request.read_bytes()
    coro = _measure(args.host, args.port, request, args.concurrency, args.warmup, args.duration)
    try:
        import uvloop
    except ImportError:
        result = asyncio.run(coro)
    else:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            result = runner.run(coro)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
