"""Many connections against a live gRPC port: the connection cap, and a flood opened and dropped.

``SHIPYARD_CONNECTION_FLOOD`` sets how many connections the flood opens: 2,000 in ``make
test`` (10,000 took 47 s on the shared 2-core machine, mostly the client's own sockets);
``make test-connections`` runs the full 10,000.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shipyard.protocol.http2 import PREFACE, ErrorCode, frame
from shipyard.protocol.http2 import frames as f
from shipyard.testing import RunningServer, running_server
from tests.adversarial.clients import TIMEOUT_S, Attacker, LegitimateTraffic, goaway_code

CAP = 50
FLOOD = int(os.environ.get("SHIPYARD_CONNECTION_FLOOD", "2000"))


@pytest.fixture(scope="module")
def server(hostile_repository: Path) -> Iterator[RunningServer]:
    with running_server(hostile_repository, grpc_max_connections=CAP) as running:
        yield running


def connected(server: RunningServer) -> Attacker | None:
    """A new connection that completed the handshake, or None when the server refused it."""
    attacker = Attacker(server)
    if attacker.ping():
        return attacker
    attacker.sock.close()
    return None


def test_connections_over_the_cap_are_refused_with_goaway(server: RunningServer) -> None:
    """Past grpc_max_connections a new connection gets GOAWAY(ENHANCE_YOUR_CALM) and is
    closed; once others close, new ones are accepted again. The one already in use works."""
    with LegitimateTraffic(server):
        held: list[Attacker] = []
        deadline = time.monotonic() + TIMEOUT_S
        while len(held) < CAP - 1:  # the legitimate client holds one place
            assert time.monotonic() < deadline
            attacker = connected(server)
            assert attacker is not None
            held.append(attacker)
        with Attacker(server) as refused:
            goaway = refused.goaway()
        assert goaway_code(goaway) == ErrorCode.ENHANCE_YOUR_CALM
        assert b"too many connections" in goaway.additional_data
        for attacker in held[:5]:
            attacker.sock.close()
        accepted = None
        while accepted is None:  # the server notices the closed ones as it reads them
            assert time.monotonic() < deadline + TIMEOUT_S, "no place freed"
            accepted = connected(server)
        accepted.sock.close()
        for attacker in held[5:]:
            attacker.sock.close()


def test_connection_flood_opened_and_dropped(server: RunningServer) -> None:
    """FLOOD connections opened and dropped (some mid-preface, some mid-frame): the server
    keeps serving, and every one of them is released (the cap would refuse new ones)."""
    host, port = server.grpc_address.rsplit(":", 1)
    halves = [b"", PREFACE[:7], PREFACE + frame(f.SETTINGS, 0, 0) + b"\x00\x00\x10\x01"]
    started = time.monotonic()
    with LegitimateTraffic(server):
        for index in range(FLOOD):
            sock = socket.create_connection((host, int(port)), timeout=TIMEOUT_S)
            sent = halves[index % len(halves)]
            if sent:
                sock.sendall(sent)
            if index % 2:  # SO_LINGER 0: the close is a reset, the rudest way to go
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
    elapsed = time.monotonic() - started
    # Every dropped connection was released: there is room for the cap's worth again (less a
    # few the legitimate client's channels may still hold).
    deadline = time.monotonic() + TIMEOUT_S
    held: list[Attacker] = []
    while len(held) < CAP - 5:
        assert time.monotonic() < deadline, f"only {len(held)} places free after the flood"
        accepted = connected(server)
        if accepted is not None:
            held.append(accepted)
    for attacker in held:
        attacker.sock.close()
    print(f"{FLOOD} connections opened and dropped in {elapsed:.1f} s")
