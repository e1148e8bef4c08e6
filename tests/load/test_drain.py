"""Graceful drain under load: SIGTERM while clients run. Readiness goes false before the server
stops accepting, requests in flight finish, new connections are refused, the exit status is 0,
and every request the server took is answered (counted on both sides)."""

from __future__ import annotations

import re
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import onnx

from shipyard.testing import ServeProcess, wait_until_blocking, write_model
from tests.load.clients import Load, Probe
from tests.load.conftest import ONE_AT_A_TIME, ROW, calibrated

STOPPED = re.compile(r"server stopped: (\d+) requests received, (\d+) answered")


class Scrapes:
    """Reads of a model's in-flight gauge, counted (the server counts them too)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.count = 0

    def inflight(self, model: str) -> float:
        """``shipyard_inflight_requests`` of ``model`` version 1."""
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        self.count += 1
        series = f'shipyard_inflight_requests{{model="{model}",version="1"}} '
        return next(
            float(line.split()[-1]) for line in text.splitlines() if line.startswith(series)
        )


def _refused(url: str) -> bool:
    """Whether a new connection to ``url`` is refused."""
    host, port = url.removeprefix("http://").split(":")
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def test_sigterm_under_load(repository: Path, model_20ms: onnx.ModelProto) -> None:
    """SIGTERM under load: ready false first, in-flight finish, new connections refused, exit 0,
    and the server's own count of requests answered equals what the clients received."""
    write_model(repository, "slow", model_20ms, config=ONE_AT_A_TIME.format(queue=64))
    write_model(repository, "long", calibrated(1.5), config=ONE_AT_A_TIME.format(queue=4))
    server = ServeProcess(repository, "--drain-timeout", "20")
    try:
        server.wait_ready()
        load = Load(server.url, "/v2/models/slow/infer", ROW, threads=6, timeout_s=60)
        probe = Probe(server.url, ("/v2/health/ready",), interval_s=0.002)
        load.start()
        probe.start()
        wait_until_blocking(lambda: load.sent >= 100, "the load runs", 60)
        # One long request keeps the drain going for ~1.5 s.
        pool = ThreadPoolExecutor(1)
        long_request = pool.submit(
            httpx.post, f"{server.url}/v2/models/long/infer", json=ROW, timeout=60
        )
        scrapes = Scrapes(server.url)
        wait_until_blocking(lambda: scrapes.inflight("long") == 1, "the long request runs", 30)
        signalled = time.monotonic()
        server.signal(signal.SIGTERM)
        wait_until_blocking(lambda: _refused(server.url), "new connections are refused", 30)
        refused_at = time.monotonic()
        assert server.process.poll() is None, "still draining: the long request runs"
        status = server.wait(60)
        long_answer = long_request.result(timeout=60)
        pool.shutdown()
        outcomes = load.stop()
        probes = probe.stop()
        _, stderr = server.output()
    finally:
        server.stop()
    assert status == 0, stderr[-3000:]
    assert long_answer.status_code == 200, long_answer.text  # in flight at SIGTERM
    # Readiness went false before the listener closed, and never came back.
    assert stderr.index("shutting down: draining") < stderr.index("Shutting down"), stderr
    ready = [s for _, s, _ in probes]
    first_not_ready = next(i for i, s in enumerate(ready) if s != 200)
    assert all(s != 200 for s in ready[first_not_ready:]), ready[first_not_ready:]
    # Every request: served, refused cleanly while draining, or never taken (no connection).
    answered = [o for o in outcomes if isinstance(o.status, int)]
    assert {o.status for o in answered} <= {200, 503}, {o.status for o in answered}
    for outcome in answered:
        if outcome.status == 503:
            assert outcome.retry_after == "1"
            assert "shutting down" in outcome.error
    # No answer: the connection was refused, or closed idle (keep-alive) as the request went
    # out; the server's count below shows none of them was taken. A timeout would be a hang.
    unanswered = [o for o in outcomes if not isinstance(o.status, int)]
    kinds = {o.status for o in unanswered}
    assert kinds <= {"ConnectError", "RemoteProtocolError", "ReadError", "WriteError"}, kinds
    assert all(o.sent_at >= signalled for o in unanswered), "errors only once draining began"
    # The server's own count of requests it took equals the answers the clients got.
    counts = STOPPED.search(stderr)
    assert counts is not None, stderr[-3000:]
    received, served = int(counts.group(1)), int(counts.group(2))
    assert received == served
    client_answers = len(answered) + sum(isinstance(s, int) for s in ready) + 1  # + long
    client_answers += server.answers + scrapes.count  # wait_ready's and the metrics reads
    assert served == client_answers, (served, client_answers)
    assert refused_at - signalled < 1.0
