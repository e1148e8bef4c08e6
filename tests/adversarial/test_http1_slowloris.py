"""Slow HTTP/1.1 clients against a live server: slowloris on headers and body, idle, oversize.

The server's limits are small here (headers 0.5 s, body 0.5 s, idle 0.5 s, 4 KiB of headers)
so that every stuck connection must be closed within about a second, while an unmodified
tritonclient.http client keeps calling. A request that the application takes longer than any
of these limits to answer is not cut.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from shipyard.testing import RunningServer, add_sub_model, running_server, write_model
from tests.adversarial.http_clients import (
    TIMEOUT_S,
    LegitimateHttp,
    SlowClient,
    http_request,
)

HEADER_S = BODY_S = IDLE_S = 0.5
#: A request to ``held`` waits 1.5 s in its queue (a batch of two never fills): longer than
#: every limit above, whatever the CPU.
HELD = "max_batch_size = 8\n[dynamic_batching]\nmax_queue_delay_us = 1500000\n"
HELD += "preferred_batch_sizes = [2]\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server with short HTTP limits, ``simple`` and ``held``."""
    repo = tmp_path_factory.mktemp("slowloris")
    write_model(repo, "simple", add_sub_model())
    write_model(repo, "held", add_sub_model(), config=HELD)
    with running_server(
        repo,
        grpc=False,
        http_header_timeout_s=HEADER_S,
        http_body_timeout_s=BODY_S,
        http_idle_timeout_s=IDLE_S,
        http_max_header_bytes=4096,
    ) as running:
        yield running


def infer_body() -> bytes:
    """A JSON inference request for the add/sub models."""
    inputs = [
        {"name": n, "shape": [1, 16], "datatype": "FP32", "data": list(range(16))}
        for n in ("INPUT0", "INPUT1")
    ]
    return json.dumps({"inputs": inputs}).encode()


def error_of(client: SlowClient) -> str:
    """The ``{"error"}`` message of the one answer ``client`` received."""
    head, _, body = bytes(client.received).partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head.lower()
    assert b"connection: close" in head.lower()
    return str(json.loads(body)["error"])


def test_connection_that_sends_nothing_is_closed(server: RunningServer) -> None:
    """A connection that never sends a byte is closed after the header limit, unanswered."""
    with LegitimateHttp(server), SlowClient(server) as client:
        elapsed = client.wait_closed()
    assert HEADER_S * 0.8 <= elapsed < HEADER_S + 1.5
    assert client.received == b""


@pytest.mark.parametrize(
    "partial",
    [b"GE", b"GET /v2/health/ready HTTP/1.1\r\n", b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: 1"],
    ids=["request-line", "no-headers", "half-a-header"],
)
def test_partial_headers_get_408(server: RunningServer, partial: bytes) -> None:
    """Headers left unfinished get 408 with a JSON error naming the limit, then a close."""
    with LegitimateHttp(server), SlowClient(server) as client:
        client.send(partial)
        elapsed = client.wait_closed()
    assert HEADER_S * 0.8 <= elapsed < HEADER_S + 1.5
    assert client.status == 408
    assert "http_header_timeout_s" in error_of(client)


def test_headers_trickled_a_byte_at_a_time_are_cut_at_the_limit(server: RunningServer) -> None:
    """Each byte arriving in time does not extend the limit: it runs from the first byte."""
    slow = http_request() + b"X" * 10_000  # far more bytes than will be sent in time
    with LegitimateHttp(server), SlowClient(server) as client:
        elapsed = client.trickle(slow, every_s=HEADER_S / 10)
    assert elapsed < HEADER_S + 1.5
    assert client.status == 408


def test_partial_body_gets_408(server: RunningServer) -> None:
    """A body short of its Content-Length gets 408 naming the body limit, then a close."""
    head = http_request("/v2/models/simple/infer", "POST", b"")
    head = head.replace(b"Content-Length: 0", b"Content-Length: 1000")
    with LegitimateHttp(server), SlowClient(server) as client:
        client.send(head + infer_body()[:100])
        elapsed = client.wait_closed()
    assert elapsed < HEADER_S + BODY_S + 1.5
    assert client.status == 408
    assert "http_body_timeout_s" in error_of(client)


def test_body_trickled_a_byte_at_a_time_is_cut_at_the_limit(server: RunningServer) -> None:
    """A chunked body trickling in bytes is cut at the body limit, not at the last byte."""
    head = b"POST /v2/models/simple/infer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunk = b"1\r\n \r\n" * 10_000
    with LegitimateHttp(server), SlowClient(server) as client:
        client.send(head)
        elapsed = client.trickle(chunk, every_s=BODY_S / 10)
    assert elapsed < BODY_S + 1.5
    assert client.status == 408


def test_idle_keep_alive_connection_is_closed(server: RunningServer) -> None:
    """After an answer, a connection that sends nothing more is closed after the idle limit."""
    with SlowClient(server) as client:
        client.send(http_request())
        elapsed = client.wait_closed()
    assert client.status == 200
    assert IDLE_S * 0.8 <= elapsed < IDLE_S + 1.5


def test_headers_over_the_size_limit_get_431(server: RunningServer) -> None:
    """Headers past http_max_header_bytes get 431 at once, not after the timeout."""
    with LegitimateHttp(server), SlowClient(server) as client:
        client.send(b"GET / HTTP/1.1\r\nX-Big: " + b"x" * 8000)
        elapsed = client.wait_closed()
    assert elapsed < HEADER_S
    assert client.status == 431
    assert "http_max_header_bytes" in error_of(client)


def test_a_long_request_in_the_application_is_not_cut(server: RunningServer) -> None:
    """A request the server takes longer than every limit to answer still gets its answer."""
    with httpx.Client(base_url=server.url, timeout=TIMEOUT_S) as http:
        response = http.post("/v2/models/held/infer", content=infer_body())
    assert response.status_code == 200, response.text


def test_a_client_within_the_limits_is_served(server: RunningServer) -> None:
    """Headers and body sent in several pieces, each in time, make a normal request."""
    request = http_request("/v2/models/simple/infer", "POST", infer_body())
    with SlowClient(server) as client:
        for start in range(0, len(request), len(request) // 4):
            client.send(request[start : start + len(request) // 4])
        client.poll(TIMEOUT_S)
        assert client.status == 200
        assert b'"OUTPUT0"' in client.received


def test_many_slow_connections_at_once_are_all_closed(server: RunningServer) -> None:
    """200 slowloris connections of every kind at once: all closed within the limits, while
    the legitimate client is served throughout."""
    kinds = [b"", b"GET / HTTP/1.1\r\nX-Slow: 1", http_request()[:-2]]
    with LegitimateHttp(server, minimum=5):
        clients = [SlowClient(server) for _ in range(200)]
        try:
            for index, client in enumerate(clients):
                client.send(kinds[index % len(kinds)])
            elapsed = [client.wait_closed() for client in clients]
        finally:
            for client in clients:
                client.sock.close()
    assert max(elapsed) < HEADER_S + 3.0
    assert all(c.status in (None, 408) for c in clients)
