"""What one request, or a burst of them, can cost the server: big JSON decodes off the event
loop, the server-wide in-flight byte limit, Retry-After on overload, client disconnects."""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from shipyard.testing import running_server, slow_model, wait_until_blocking, write_model
from shipyard.testing.process import serve_process

MiB = 1024 * 1024
#: One valid request for ``simple`` (add/sub of two [1, 16] FP32 tensors).
ROW = {
    "inputs": [
        {"name": name, "datatype": "FP32", "shape": [1, 16], "data": [1.0] * 16}
        for name in ("INPUT0", "INPUT1")
    ]
}


def _nested_body(rows: int) -> bytes:
    """An /infer body for ``simple`` whose INPUT0 is ``rows`` nested one-element lists.

    Its shape [rows, 1] does not fit the model's [-1, 16]: it is refused, once decoded.
    """
    data = b",".join([b"[0]"] * rows)
    tensor = b'{"name":"INPUT%d","datatype":"FP32","shape":[%d,1],"data":[' % (0, rows)
    return b'{"inputs":[' + tensor + data + b"]}]}"


def _timed_get(client: httpx.Client, path: str) -> float:
    start = time.perf_counter()
    answer = client.get(path)
    assert answer.status_code == 200, answer.text
    return time.perf_counter() - start


def test_large_nested_json_does_not_stall_health(simple_repository: Path) -> None:
    """Health answers in milliseconds while a 16 MiB nested JSON body is decoded and refused."""
    body = _nested_body(4 * MiB)  # 16 MiB of "[0],"
    with serve_process(simple_repository) as server:
        outcome: list[httpx.Response] = []

        def post() -> None:
            with httpx.Client(base_url=server.url, timeout=300) as client:
                outcome.append(
                    client.post(
                        "/v2/models/simple/infer",
                        content=body,
                        headers={"content-type": "application/json"},
                    )
                )

        latencies: list[float] = []
        big = threading.Thread(target=post)
        with httpx.Client(base_url=server.url, timeout=30) as client:
            _timed_get(client, "/v2/health/ready")  # the connection is open before timing
            big.start()
            while big.is_alive():
                latencies.append(_timed_get(client, "/v2/health/ready"))
                time.sleep(0.005)
        big.join()
    assert outcome[0].status_code == 400, outcome[0].text
    assert "shape" in outcome[0].json()["error"]
    # On the event loop this decode blocked every health check for seconds (a handful of
    # checks in all); here the loop only receives the body. The bound on the worst check
    # leaves room for a busy CPU (the decode worker takes one core).
    assert len(latencies) >= 50, f"only {len(latencies)} health checks during the decode"
    latencies.sort()
    assert latencies[int(len(latencies) * 0.9)] < 0.05, latencies[-10:]
    assert latencies[-1] < 1.0, latencies[-10:]


# -- the server-wide limit on request bytes in flight ---------------------------------------

LIMITS = ("--max-request-bytes", str(8 * MiB), "--max-inflight-bytes", str(16 * MiB))


def _upload(url: str, size: int, sent: int) -> socket.socket:
    """Open a connection and start an /infer upload of ``size`` bytes, sending ``sent``."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    sock.sendall(
        b"POST /v2/models/simple/infer HTTP/1.1\r\nHost: test\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % size
    )
    if sent:
        sock.sendall(b" " * sent)
    return sock


def _answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Read one HTTP response from ``sock``: status, headers (lowercase names), body."""
    import http.client

    response = http.client.HTTPResponse(sock)
    response.begin()
    headers = {k.lower(): v for k, v in response.getheaders()}
    return response.status, headers, response.read()


def _metric(url: str, name: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    raise AssertionError(f"no {name} in /metrics")


def test_inflight_bytes_refused_before_the_body_is_read(simple_repository: Path) -> None:
    """Past max_inflight_bytes a request gets 503 + Retry-After from its headers alone."""
    with serve_process(simple_repository, *LIMITS) as server:
        holding = [_upload(server.url, 8 * MiB, MiB) for _ in range(2)]
        wait_until_blocking(
            lambda: _metric(server.url, "shipyard_inflight_request_bytes") == 16 * MiB,
            "two uploads hold 16 MiB",
        )
        refused = _upload(server.url, 8 * MiB, 0)  # headers only: not one body byte sent
        status, headers, body = _answer(refused)
        assert status == 503, body
        assert headers["retry-after"] == "1"
        assert "max_inflight_bytes" in httpx.Response(503, content=body).json()["error"]
        refused.close()
        for sock in holding:
            sock.close()
        wait_until_blocking(
            lambda: _metric(server.url, "shipyard_inflight_request_bytes") == 0,
            "the abandoned uploads release their bytes",
        )
        text = httpx.get(f"{server.url}/metrics", timeout=10).text
        assert 'shipyard_rejected_requests_total{reason="inflight_bytes"} 1.0' in text
        answer = httpx.post(f"{server.url}/v2/models/simple/infer", json=ROW, timeout=10)
        assert answer.status_code == 200, answer.text


def test_memory_returns_to_baseline_after_a_burst(simple_repository: Path) -> None:
    """A burst of 24 concurrent 8 MiB bodies is held to the limit; RSS returns near baseline."""
    with serve_process(simple_repository, *LIMITS) as server:
        body = b" " * (8 * MiB)
        warm = httpx.post(f"{server.url}/v2/models/simple/infer", content=body[:MiB], timeout=30)
        assert warm.status_code == 400
        baseline = server.rss_bytes()
        peak = [baseline]
        sampling = threading.Event()

        def sample() -> None:
            while not sampling.is_set():
                peak.append(server.rss_bytes())
                time.sleep(0.005)

        sampler = threading.Thread(target=sample)
        sampler.start()
        # Every upload is in flight at once: all but its last byte sent before any finishes.
        uploads = [_upload(server.url, len(body), 0) for _ in range(24)]
        barrier = threading.Barrier(len(uploads))

        def send(sock: socket.socket) -> int:
            try:
                sock.sendall(body[:-1])
                barrier.wait(timeout=60)
                sock.sendall(body[-1:])
                return _answer(sock)[0]
            finally:
                sock.close()

        with ThreadPoolExecutor(len(uploads)) as pool:
            statuses = list(pool.map(send, uploads))
        sampling.set()
        sampler.join()
        wait_until_blocking(
            lambda: _metric(server.url, "shipyard_inflight_request_bytes") == 0,
            "the burst releases its bytes",
        )
        after = server.rss_bytes()
    # Without the limit all 24 bodies (192 MiB) were held at once and RSS grew ~220 MiB.
    assert set(statuses) == {400, 503}, statuses  # 400: a blank body is not JSON
    assert statuses.count(400) <= 4, statuses
    assert max(peak) - baseline < 64 * MiB, (baseline / MiB, max(peak) / MiB)
    assert after - baseline < 32 * MiB, (baseline / MiB, after / MiB)


# -- overload answers: Retry-After ------------------------------------------------------------


def test_queue_full_503_has_retry_after(repository: Path) -> None:
    """Every 503 of a full model queue carries Retry-After and an {"error"} naming the queue."""
    config = "max_batch_size = 0\n[dynamic_batching]\nmax_queue_size = 1\n"
    write_model(repository, "slow", slow_model(600), config=config)
    row = {"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [1, 4], "data": [0] * 4}]}
    with running_server(repository, grpc=False) as server, ThreadPoolExecutor(8) as pool:
        answers = list(
            pool.map(
                lambda _: httpx.post(f"{server.url}/v2/models/slow/infer", json=row, timeout=60),
                range(8),
            )
        )
    refused = [a for a in answers if a.status_code == 503]
    assert refused, [a.status_code for a in answers]
    assert {a.status_code for a in answers} == {200, 503}
    for answer in refused:
        assert answer.headers["retry-after"] == "1"
        assert "queue full" in answer.json()["error"]


# -- client disconnects ------------------------------------------------------------------------


def test_client_disconnect_mid_body_is_one_info_line(
    simple_repository: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A client gone mid-body is one INFO line each: no ERROR, no traceback, server fine."""
    caplog.set_level(logging.DEBUG)
    with running_server(simple_repository, grpc=False) as server:
        for _ in range(20):
            _upload(server.url, MiB, 64 * 1024).close()

        def logged() -> list[logging.LogRecord]:
            return [r for r in caplog.records if "client disconnected" in r.getMessage()]

        wait_until_blocking(lambda: len(logged()) == 20, "20 disconnects are logged")
        answer = httpx.post(f"{server.url}/v2/models/simple/infer", json=ROW, timeout=10)
        assert answer.status_code == 200
    records = logged()
    assert all(r.levelno == logging.INFO and r.exc_info is None for r in records)
    assert all(re.search(r"\(\d+ of 1048576 bytes received\)", r.getMessage()) for r in records)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "Traceback" not in caplog.text


# -- the end of a drain ------------------------------------------------------------------------


def test_requests_cut_off_by_the_drain_get_a_clean_503(
    repository: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Requests still queued when drain_timeout_s runs out get 503 {"error"}, not a bare 500."""
    config = "max_batch_size = 0\n"
    write_model(repository, "slow", slow_model(1500), config=config)
    row = {"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [1, 4], "data": [0] * 4}]}
    with running_server(repository, grpc=False, drain_timeout_s=1.0) as server:
        service = server.server.service
        assert service is not None
        batcher = service.registry.get("slow").batcher
        with ThreadPoolExecutor(6) as pool:
            futures = [
                pool.submit(httpx.post, f"{server.url}/v2/models/slow/infer", json=row, timeout=60)
                for _ in range(6)
            ]
            wait_until_blocking(lambda: batcher.queued == 5, "five requests wait in the queue")
            server.server.stop()
            answers = [future.result() for future in futures]
    statuses = sorted(a.status_code for a in answers)
    assert 503 in statuses, statuses
    assert set(statuses) <= {200, 503}, statuses
    for answer in answers:
        if answer.status_code == 503:
            assert answer.headers["retry-after"] == "1"
            assert "shut down" in answer.json()["error"]
    assert "Traceback" not in caplog.text
    assert "CancelledError" not in caplog.text


def test_repository_control_bodies_are_small(simple_repository: Path) -> None:
    """A repository-control body over 64 KiB is refused with 413 before it is parsed."""
    with running_server(simple_repository, grpc=False) as server:
        body = b'{"ready": true, "pad": "' + b"x" * (100 * 1024) + b'"}'
        answer = httpx.post(f"{server.url}/v2/repository/index", content=body, timeout=30)
    assert answer.status_code == 413
    assert "repository-control requests are small" in answer.json()["error"]
