"""A real local Ray cluster for tests and benchmarks (``shipyard ray serve``; needs [ray]).

Each node is its own ``ray start --block`` process in a session of its own, with every port
picked free, a temporary dir, and usage stats off. With ``haproxy=True`` Ray Serve runs its
HAProxy ingress (``RAY_SERVE_ENABLE_HA_PROXY=1``), with its ports and files moved off their
fixed defaults. Stopping sends SIGTERM to each node's process group (only the processes these
nodes started), then SIGKILL to what is left.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from shipyard.testing import wait_until_blocking

__all__ = ["RayCluster", "free_port", "local_ray_cluster"]

_RAY = str(Path(sys.executable).parent / "ray")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (for programs that cannot report port 0)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class RayCluster:
    """A started cluster: the GCS address, the environment its processes run with, the nodes."""

    address: str
    env: dict[str, str]
    nodes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def process_ids(self, title: str) -> list[int]:
        """The ids of this cluster's processes (the nodes' and their descendants, such as
        Ray's workers, which run in sessions of their own) whose command line has ``title``."""
        groups = {node.pid for node in self.nodes}
        parents: dict[int, int] = {}
        lines: dict[int, str] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except (OSError, UnicodeDecodeError, IndexError):
                continue
            if stat[0] == "Z":
                continue
            parents[int(entry.name)] = int(stat[1])
            lines[int(entry.name)] = cmdline

        def ours(pid: int) -> bool:
            for _ in range(64):
                if pid in groups:
                    return True
                pid = parents.get(pid, 0)
                if pid <= 1:
                    return False
            return False

        return sorted(pid for pid, line in lines.items() if title in line and ours(pid))


def _node_ports(head: bool) -> list[str]:
    ports = [
        "--node-manager-port",
        "--object-manager-port",
        "--dashboard-agent-listen-port",
        "--dashboard-agent-grpc-port",
        "--runtime-env-agent-port",
        "--metrics-export-port",
    ]
    if head:
        ports += ["--ray-client-server-port", "--dashboard-port"]
    return [item for flag in ports for item in (flag, str(free_port()))]


def _start_node(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        node = subprocess.Popen(
            [_RAY, "start", "--block", "--disable-usage-stats", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )

    def started() -> bool:
        if node.poll() is not None:
            raise AssertionError(f"ray start exited {node.returncode}: {log.read_text()}")
        return "block forever" in log.read_text()

    wait_until_blocking(started, f"the Ray node of {log.name} starts", timeout_s=120)
    return node


def _stop(node: subprocess.Popen[bytes]) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(node.pid, sig)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _group_alive(node.pid):
            node.poll()
            time.sleep(0.1)
    node.wait(timeout=10)


def _marked(mark: str) -> list[int]:
    """The live processes whose command line contains ``mark``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if mark in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode():
                    found.append(int(entry.name))
            except (OSError, UnicodeDecodeError):
                continue
    return found


def _group_alive(pgid: int) -> bool:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) == pgid:
                    state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                    if state != "Z":
                        return True
            except (OSError, IndexError):
                continue
    return False


@contextlib.contextmanager
def local_ray_cluster(
    workdir: Path,
    nodes: int = 2,
    cpus_per_node: int = 1,
    haproxy: bool = True,
    extra_env: dict[str, str] | None = None,
) -> Iterator[RayCluster]:
    """Start a head node and ``nodes - 1`` more on 127.0.0.1; stop them all on exit.

    The nodes import Shipyard from this process's ``sys.path``; ``extra_env`` is added to
    their environment (Ray's own tuning variables).
    """
    cleanups: list[Callable[[], None]] = []
    #: Command-line marks of processes that are this cluster's even once re-parented (HAProxy
    #: detaches from the Ray worker that starts it): killed on exit.
    marks: list[str] = []
    env = {
        **os.environ,
        "RAY_USAGE_STATS_ENABLED": "0",
        "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
        **(extra_env or {}),
    }
    if haproxy:
        # HAProxy's admin socket path must stay under ~100 bytes: a short folder of its own.
        state = Path(tempfile.mkdtemp(prefix="syhp-", dir="/tmp"))
        cleanups.append(lambda: shutil.rmtree(state, ignore_errors=True))
        marks.append(str(state))
        env |= {
            "RAY_SERVE_ENABLE_HA_PROXY": "1",
            "RAY_SERVE_HAPROXY_STATS_PORT": str(free_port()),
            "RAY_SERVE_HAPROXY_METRICS_PORT": str(free_port()),
            "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(state / "haproxy.cfg"),
            "RAY_SERVE_HAPROXY_SOCKET_PATH": str(state / "admin.sock"),
            "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(state),
            "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(state / "server-state"),
            "RAY_SERVE_HAPROXY_NBTHREAD": "1",
        }
    # Ray's Unix sockets live under the temp dir, whose paths must stay under 107 bytes.
    temp = Path(tempfile.mkdtemp(prefix="syray-", dir="/tmp"))
    cleanups.append(lambda: shutil.rmtree(temp, ignore_errors=True))
    gcs = free_port()
    cluster = RayCluster(f"127.0.0.1:{gcs}", env)
    try:
        cluster.nodes.append(
            _start_node(
                [
                    "--head",
                    "--node-ip-address=127.0.0.1",
                    f"--port={gcs}",
                    f"--num-cpus={cpus_per_node}",
                    "--include-dashboard=false",
                    f"--temp-dir={temp}",
                    *_node_ports(head=True),
                ],
                workdir / "head.log",
                env,
            )
        )
        for index in range(1, nodes):
            cluster.nodes.append(
                _start_node(
                    [
                        f"--address={cluster.address}",
                        "--node-ip-address=127.0.0.1",
                        f"--num-cpus={cpus_per_node}",
                        *_node_ports(head=False),
                    ],
                    workdir / f"node{index}.log",
                    env,
                )
            )
        yield cluster
    finally:
        workers = cluster.process_ids("")  # Ray's workers run in sessions of their own
        for node in reversed(cluster.nodes):
            _stop(node)
        for pid in [*workers, *(pid for mark in marks for pid in _marked(mark))]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for cleanup in cleanups:
            cleanup()
