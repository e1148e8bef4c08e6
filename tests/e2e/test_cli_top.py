"""``shipyard top``: a live view of a server's /metrics, as a subprocess."""

from __future__ import annotations

import contextlib
import http.server
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx

from shipyard.testing import running_server

SHIPYARD = str(Path(sys.executable).parent / "shipyard")
ROW = {
    "inputs": [
        {"name": name, "datatype": "FP32", "shape": [1, 16], "data": [1.0] * 16}
        for name in ("INPUT0", "INPUT1")
    ]
}


def _top(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SHIPYARD, "top", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"},
        check=False,
    )


@contextlib.contextmanager
def _metrics_server(pages: list[str]) -> Iterator[str]:
    """A plain HTTP server answering /metrics with ``pages`` in turn (the last one repeats)."""
    served = iter(pages)
    last = [pages[-1]]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = next(served, last[0]).encode()
            self.send_response(200 if self.path == "/metrics" else 404)
            self.send_header("content-type", "text/plain; version=0.0.4")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _page(requests: int, under_1ms: int) -> str:
    return (
        "# TYPE shipyard_requests_total counter\n"
        f'shipyard_requests_total{{model="resnet",version="3",transport="grpc",code="0",'
        f'outcome="success"}} {requests}\n'
        "# TYPE shipyard_request_duration_seconds histogram\n"
        f'shipyard_request_duration_seconds_bucket{{model="resnet",version="3",le="0.001"}} '
        f"{under_1ms}\n"
        f'shipyard_request_duration_seconds_bucket{{model="resnet",version="3",le="0.002"}} '
        f"{requests}\n"
        f'shipyard_request_duration_seconds_bucket{{model="resnet",version="3",le="+Inf"}} '
        f"{requests}\n"
        f'shipyard_request_duration_seconds_count{{model="resnet",version="3"}} {requests}\n'
        'shipyard_request_duration_seconds_sum{model="resnet",version="3"} 1\n'
    )


def test_top_once_shows_a_live_servers_models(simple_repository: Path) -> None:
    """--once prints one refresh of a real server under load: its model with req/s > 0."""
    with running_server(simple_repository, grpc=False) as server:
        stop = threading.Event()

        def load() -> None:
            with httpx.Client(base_url=server.url, timeout=30) as client:
                while not stop.is_set():
                    client.post("/v2/models/simple/infer", json=ROW)

        worker = threading.Thread(target=load)
        worker.start()
        try:
            result = _top(server.url, "--once", "--interval", "1")
        finally:
            stop.set()
            worker.join()
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if " simple " in line)
    cells = [c.strip() for c in row.strip("│ ").split("│")]
    assert cells[0] == "simple"
    assert float(cells[1]) > 0  # req/s
    assert float(cells[2]) > 0  # p50 ms
    assert cells[-1] == "0.0"  # no errors


def test_top_reads_any_server_exposing_the_metrics() -> None:
    """Against a plain server with crafted /metrics, p50/p99 are the bucket interpolation."""
    with _metrics_server([_page(1000, 1000), _page(2000, 1500)]) as url:
        result = _top(url, "--once", "--interval", "0.5")
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if "resnet" in line)
    cells = [c.strip() for c in row.strip("│ ").split("│")]
    # 1,000 new requests, 500 <= 1 ms, 500 in (1, 2] ms: p50 = 1.00 ms, p99 = 1.98 ms.
    assert cells[2:4] == ["1.00", "1.98"]
    assert 1000 / 1.5 < float(cells[1]) < 1000 / 0.5


def test_top_says_when_the_server_is_unreachable() -> None:
    """An address nothing listens on is one clear error line and exit status 2."""
    with _metrics_server(["x 1\n"]) as url:
        pass  # the port is free again
    result = _top(url, "--once")
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: cannot reach {url}/metrics")
    assert "Traceback" not in result.stderr


def test_top_says_when_the_server_is_too_old() -> None:
    """A server without the latency histograms (an older Shipyard) is named as such."""
    old = 'shipyard_inference_request_success_total{model="m",version="1"} 3\n'
    with _metrics_server([old]) as url:
        result = _top(url, "--once")
    assert result.returncode == 2
    assert "older Shipyard" in result.stderr
