"""Many HTTP/1.1 connections against a live server: the connection cap, and a flood.

``SHIPYARD_HTTP_CONNECTION_FLOOD`` sets how many connections the flood opens and drops
(10,000 by default; each is a connect and a close, some after half a request).
"""

from __future__ import annotations

import json
import os
import socket
import struct
import time
from collections.abc import Iterator

import pytest

from shipyard.testing import RunningServer, add_sub_model, running_server, write_model
from tests.adversarial.http_clients import TIMEOUT_S, LegitimateHttp, SlowClient, http_request

CAP = 50
FLOOD = int(os.environ.get("SHIPYARD_HTTP_CONNECTION_FLOOD", "10000"))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server that takes at most CAP HTTP connections (and waits long for headers)."""
    repo = tmp_path_factory.mktemp("connections")
    write_model(repo, "simple", add_sub_model())
    with running_server(
        repo, grpc=False, http_max_connections=CAP, http_header_timeout_s=60.0
    ) as running:
        yield running


def held_open(server: RunningServer) -> SlowClient | None:
    """A connection the server accepted (it answers a request), or None if it was refused."""
    client = SlowClient(server)
    client.send(http_request(Connection="keep-alive"))
    while client.status is None and not client.poll(TIMEOUT_S):
        pass
    if client.status == 200:
        return client
    client.sock.close()
    return None


def test_connections_over_the_cap_get_503_and_close(server: RunningServer) -> None:
    """Past http_max_connections a new connection is answered 503 with Retry-After and a JSON
    error, and closed; once others close, new ones are served again."""
    held: list[SlowClient] = []
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while len(held) < CAP:
            assert time.monotonic() < deadline
            client = held_open(server)
            assert client is not None, f"refused after only {len(held)} connections"
            held.append(client)
        with SlowClient(server) as refused:
            refused.send(http_request())
            refused.wait_closed()
        assert refused.status == 503
        head, _, body = bytes(refused.received).partition(b"\r\n\r\n")
        assert b"retry-after: 1" in head.lower()
        assert "http_max_connections 50" in json.loads(body)["error"]
        for client in held[:5]:
            client.sock.close()
        accepted = None
        while accepted is None:  # the server notices the closed ones as it reads them
            assert time.monotonic() < deadline + TIMEOUT_S, "no place freed"
            accepted = held_open(server)
        held.append(accepted)
    finally:
        for client in held:
            client.sock.close()


def test_connection_flood_opened_and_dropped(server: RunningServer) -> None:
    """FLOOD connections opened and dropped (some mid-request, half with a reset): the server
    keeps serving, and every one of them is released (the cap would refuse new ones)."""
    host, port = server.address.rsplit(":", 1)
    halves = [b"", b"GET /v2/health/ready HT", http_request()]
    started = time.monotonic()
    with LegitimateHttp(server, reuse=True):  # connected first: the cap cannot refuse it
        for index in range(FLOOD):
            sock = socket.create_connection((host, int(port)), timeout=TIMEOUT_S)
            sent = halves[index % len(halves)]
            if sent:
                sock.sendall(sent)
            if index % 2:  # SO_LINGER 0: the close is a reset, the rudest way to go
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
    elapsed = time.monotonic() - started
    # Every dropped connection was released: the cap's worth can be opened again.
    deadline = time.monotonic() + TIMEOUT_S
    held: list[SlowClient] = []
    try:
        while len(held) < CAP:
            assert time.monotonic() < deadline, f"only {len(held)} places free after the flood"
            client = held_open(server)
            if client is not None:
                held.append(client)
    finally:
        for client in held:
            client.sock.close()
    print(f"{FLOOD} HTTP connections opened and dropped in {elapsed:.1f} s")
