"""The two sides of the HTTP/1.1 adversarial tests: a raw-socket attacker and a legitimate client.

:class:`SlowClient` writes bytes by hand (no HTTP library would stop half-way through a
request) and measures when the server closes on it. :class:`LegitimateHttp` keeps unmodified
``tritonclient.http`` inference calls going in a thread while an attack runs, and fails the
test if any of them failed.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from types import TracebackType

import numpy as np
import tritonclient.http as httpclient

from shipyard.testing import RunningServer, wait_until_blocking

#: How long any single wait of a test may take before it fails (never a sleep).
TIMEOUT_S = 20.0


def http_request(
    path: str = "/v2/health/ready", method: str = "GET", body: bytes = b"", **headers: str
) -> bytes:
    """A complete HTTP/1.1 request (``Content-Length`` added when there is a body)."""
    lines = [f"{method} {path} HTTP/1.1", "Host: shipyard"]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class SlowClient:
    """A client on a raw socket that sends what it is told, when it is told."""

    def __init__(self, server: RunningServer) -> None:
        host, port = server.address.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=TIMEOUT_S)
        self.opened = time.monotonic()
        self.received = bytearray()
        self.closed_after: float | None = None

    def __enter__(self) -> SlowClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        """Send ``data`` now."""
        self.sock.sendall(data)

    def poll(self, timeout_s: float) -> bool:
        """Read what the server sent within ``timeout_s``; True once the server has closed."""
        if self.closed_after is not None:
            return True
        readable, _, _ = select.select([self.sock], [], [], timeout_s)
        if not readable:
            return False
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if chunk:
            self.received += chunk
            return False
        self.closed_after = time.monotonic() - self.opened
        return True

    def wait_closed(self, timeout_s: float = TIMEOUT_S) -> float:
        """Seconds from the connection's opening until the server closed it (fail past
        ``timeout_s``)."""
        deadline = time.monotonic() + timeout_s
        while not self.poll(max(0.0, deadline - time.monotonic())):
            assert time.monotonic() < deadline, f"still open after {timeout_s} s"
        assert self.closed_after is not None
        return self.closed_after

    def trickle(self, data: bytes, every_s: float, timeout_s: float = TIMEOUT_S) -> float:
        """Send ``data`` one byte at a time, a byte whenever the server has been silent for
        ``every_s``, until the server closes; return when it did (from the opening)."""
        deadline = time.monotonic() + timeout_s
        position = 0
        while not self.poll(every_s):
            assert time.monotonic() < deadline, f"still open after {timeout_s} s"
            if position < len(data):
                try:
                    self.send(data[position : position + 1])
                except (BrokenPipeError, ConnectionResetError):
                    continue  # closed under us: the next poll reads the end
                position += 1
        assert self.closed_after is not None
        return self.closed_after

    @property
    def status(self) -> int | None:
        """The status code of the answer received, or None when none was."""
        if not self.received.startswith(b"HTTP/1.1 "):
            return None
        return int(self.received[9:12])


def good_inputs() -> list[httpclient.InferInput]:
    """INPUT0 and INPUT1 of the add/sub model ``simple``."""
    inputs = []
    for name in ("INPUT0", "INPUT1"):
        tensor = httpclient.InferInput(name, [1, 16], "FP32")
        tensor.set_data_from_numpy(np.arange(16, dtype=np.float32).reshape(1, 16))
        inputs.append(tensor)
    return inputs


class LegitimateHttp:
    """Unmodified tritonclient.http calls in a thread, for as long as the ``with`` lasts.

    Each call opens a new connection (so none of them meets a short idle limit between
    calls); ``reuse=True`` keeps one connection for all of them instead (so a connection cap
    that attackers fill cannot refuse it). On exit, the test fails if any call failed or if
    fewer than ``minimum`` were made.
    """

    def __init__(self, server: RunningServer, minimum: int = 3, reuse: bool = False) -> None:
        self.server = server
        self.minimum = minimum
        self.reuse = reuse
        self.calls = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> LegitimateHttp:
        """Start calling; return once the first call is answered (before any attack)."""
        self._thread.start()
        wait_until_blocking(lambda: self.calls >= 1, "the first legitimate call", TIMEOUT_S)
        return self

    def _run(self) -> None:
        expected = 2 * np.arange(16, dtype=np.float32).reshape(1, 16)
        client = None
        while not self._stop.is_set():
            if client is None:
                client = httpclient.InferenceServerClient(
                    self.server.address, connection_timeout=TIMEOUT_S, network_timeout=TIMEOUT_S
                )
            try:
                result = client.infer("simple", good_inputs())
                if not np.array_equal(result.as_numpy("OUTPUT0"), expected):
                    self.failures.append("wrong answer")
            except Exception as exc:
                self.failures.append(repr(exc))
            finally:
                if not self.reuse:
                    client.close()
                    client = None
            self.calls += 1
        if client is not None:
            client.close()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if kind is None:
            wait_until_blocking(
                lambda: self.calls >= self.minimum or bool(self.failures),
                f"{self.minimum} legitimate calls",
                TIMEOUT_S,
            )
        self._stop.set()
        self._thread.join(TIMEOUT_S)
        if kind is None:
            assert not self.failures, self.failures[:5]
            assert self.calls >= self.minimum, f"only {self.calls} legitimate calls were made"
