"""``shipyard serve`` as a subprocess: for tests that signal it, measure its memory, or load it.

A server in its own process does not share the test's GIL, so timings taken while the test
drives load (health answer times, refusal times) are the server's own.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

__all__ = ["ServeProcess", "cpu_seconds", "running", "serve_process"]

_URL = re.compile(r"HTTP\s+(https?://127\.0\.0\.1:(\d+))")
_GRPC = re.compile(r"gRPC\s+grpc://(127\.0\.0\.1:\d+)")
#: The last line of serve's start-up banner: it is printed after the port is open, so a test
#: that reads the banner (the models table) waits for this line, not only for health.
BANNER_END = "Press Ctrl-C to stop."


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, every thread) the process ``pid`` has used (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def running(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (Linux ``/proc``)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


class ServeProcess:
    """A running ``shipyard serve`` subprocess whose output reader threads collect."""

    def __init__(
        self,
        repository: Path,
        *args: str,
        env: dict[str, str] | None = None,
        unset: Sequence[str] = (),
    ) -> None:
        """Start ``shipyard serve REPOSITORY --http-port 0 [args]``; ``env`` is added to this
        process's environment, and the variables named in ``unset`` are removed from it."""
        command = [
            str(Path(sys.executable).parent / "shipyard"),
            "serve",
            str(repository),
            "--http-port",
            "0",
            *(() if "--grpc-port" in args else ("--grpc-port", "0")),
            *args,
        ]
        environment = dict(os.environ)
        environment.update(PYTHONUNBUFFERED="1", COLUMNS="200", NO_COLOR="1")
        environment.update(env or {})
        for name in unset:
            environment.pop(name, None)
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environment,
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._lines: queue.Queue[str] = queue.Queue()
        assert self.process.stdout is not None
        assert self.process.stderr is not None
        self._readers = [
            threading.Thread(target=self._read, args=(self.process.stdout, self.stdout, True)),
            threading.Thread(target=self._read, args=(self.process.stderr, self.stderr, False)),
        ]
        for reader in self._readers:
            reader.daemon = True
            reader.start()
        self.url = ""
        #: ``host:port`` of gRPC, when the command line gave it a port.
        self.grpc_address: str | None = None
        #: HTTP answers :meth:`wait_ready` received (requests the server counts too).
        self.answers = 0

    @property
    def pid(self) -> int:
        """The server's process ID."""
        return self.process.pid

    def _read(self, stream: IO[str], sink: list[str], announce: bool) -> None:
        for line in stream:
            sink.append(line)
            if announce:
                self._lines.put(line)

    def wait_ready(self, timeout_s: float = 60.0) -> str:
        """Wait for the URL it prints, until ``/v2/health/ready`` answers 200, and until the
        whole start-up banner (models table included) has been read."""
        deadline = time.monotonic() + timeout_s
        while not self.url:
            left = deadline - time.monotonic()
            if left <= 0 or (self.process.poll() is not None and self._lines.empty()):
                raise RuntimeError(f"no URL printed; stdout={self.stdout} stderr={self.stderr}")
            try:
                line = self._lines.get(timeout=min(left, 0.5))
            except queue.Empty:
                continue
            match = _URL.search(line)
            if match:
                self.url = match.group(1)
            grpc = _GRPC.search(line)
            if grpc:
                self.grpc_address = grpc.group(1)
        while time.monotonic() < deadline:
            ready = f"{self.url}/v2/health/ready"
            try:
                with urllib.request.urlopen(ready, timeout=2) as answer:
                    self.answers += 1
                    if answer.status == 200:
                        break
            except urllib.error.HTTPError:
                self.answers += 1  # 503 while the models load
            except OSError:
                pass
            time.sleep(0.01)
        else:
            raise RuntimeError(f"{self.url} did not become ready within {timeout_s} s")
        while not any(BANNER_END in line for line in self.stdout):
            if time.monotonic() > deadline or self.process.poll() is not None:
                for reader in self._readers:  # all it printed, when it has exited
                    reader.join(timeout=5)
                raise RuntimeError(
                    f"no '{BANNER_END}' printed; stdout={self.stdout} stderr={self.stderr}"
                )
            time.sleep(0.01)
        return self.url

    def rss_bytes(self) -> int:
        """The server's resident memory now (Linux ``/proc``)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS in /proc/<pid>/status")

    def signal(self, number: int = signal.SIGTERM) -> None:
        """Send the server a signal."""
        self.process.send_signal(number)

    def wait(self, timeout_s: float = 60.0) -> int:
        """Wait for the server to exit; return its exit status."""
        return self.process.wait(timeout=timeout_s)

    def output(self) -> tuple[str, str]:
        """Everything it printed so far (all of it, once it has exited)."""
        if self.process.poll() is not None:
            for reader in self._readers:
                reader.join(timeout=5)
        return "".join(self.stdout), "".join(self.stderr)

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM it if it still runs (then SIGKILL after ``timeout_s``), close its pipes;
        return its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        for reader in self._readers:
            reader.join(timeout=10)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()
        return self.process.returncode


@contextlib.contextmanager
def serve_process(
    repository: Path, *args: str, env: dict[str, str] | None = None, timeout_s: float = 60.0
) -> Iterator[ServeProcess]:
    """Start ``shipyard serve REPOSITORY --http-port 0 [args]``; yield it once it is ready.

    gRPC is off unless ``args`` give ``--grpc-port``. The server is stopped on exit.
    """
    server = ServeProcess(repository, *args, env=env)
    try:
        server.wait_ready(timeout_s)
        yield server
    finally:
        server.stop()
