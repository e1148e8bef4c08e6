"""The workers' lives under ``shipyard serve --workers 2``: a worker killed under load, a
drain on SIGTERM, a supervisor killed outright, and a start that fails."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from shipyard.testing import add_sub_model, slow_model, wait_until_blocking, write_model
from tests.workers.serving import SHIPYARD, ServeWorkers, alive, serve_workers

BODY = json.dumps(
    {
        "inputs": [
            {"name": "INPUT0", "shape": [1, 16], "datatype": "FP32", "data": list(range(16))},
            {"name": "INPUT1", "shape": [1, 16], "datatype": "FP32", "data": [1] * 16},
        ]
    }
)
#: How long a replacement may take to serve on a loaded 2-core test machine (it is ~2 s).
REPLACEMENT_S = 30.0


@dataclass
class Client:
    """One client thread's count of every request it sent."""

    name: str
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    #: Failures that were not a connection error the client saw.
    wrong: list[str] = field(default_factory=list)


def _http_loop(
    client: Client, connection: http.client.HTTPConnection, stop: threading.Event
) -> None:
    try:
        _http_requests(client, connection, stop)
    finally:
        connection.close()


def _http_requests(
    client: Client, connection: http.client.HTTPConnection, stop: threading.Event
) -> None:
    while not stop.is_set():
        try:
            connection.request("POST", "/v2/models/simple/infer", BODY)
            answer = connection.getresponse()
            text = answer.read()
        except (OSError, http.client.HTTPException) as exc:  # the connection broke
            client.failures.append(repr(exc))
            connection.close()  # the next request opens a new one
            continue
        if answer.status == 200:
            client.ok += 1
        else:
            client.wrong.append(f"{answer.status} {text[:200]!r}")


def _grpc_loop(client: Client, address: str, stop: threading.Event) -> None:
    grpc = grpcclient.InferenceServerClient(address)
    inputs = [grpcclient.InferInput(n, [1, 16], "FP32") for n in ("INPUT0", "INPUT1")]
    for tensor in inputs:
        tensor.set_data_from_numpy(np.ones((1, 16), np.float32))
    try:
        while not stop.is_set():
            try:
                grpc.infer("simple", inputs, client_timeout=60)
            except InferenceServerException as exc:
                if exc.status() == "StatusCode.UNAVAILABLE":
                    client.failures.append(str(exc))
                else:
                    client.wrong.append(f"{exc.status()} {exc}")
                continue
            client.ok += 1
    finally:
        grpc.close()


def test_a_worker_killed_under_load_fails_only_its_own_requests(tmp_path: Path) -> None:
    """kill -9 of a worker under HTTP and gRPC load: clients of the other worker see no error,
    its own clients at most their one in-flight request, as a connection error; the server is
    not ready until a replacement serves, within seconds; everyone keeps succeeding. Every
    request is counted."""
    write_model(tmp_path / "repo", "simple", add_sub_model())
    with serve_workers(tmp_path / "repo", 2) as server:
        victim, survivor = server.worker_pids()
        probe = server.connection_on(survivor, 60)
        stop = threading.Event()
        everyone: list[Client] = []
        threads: list[threading.Thread] = []

        def start(client: Client, run: Callable[..., None], *args: object) -> None:
            everyone.append(client)
            threads.append(threading.Thread(target=run, args=(client, *args, stop)))

        # Two HTTP clients on each worker, by their connection; two gRPC clients anywhere.
        for index, pid in enumerate((victim, victim, survivor, survivor)):
            who = "victim" if pid == victim else "other"
            start(Client(f"http-{who}-{index}"), _http_loop, server.connection_on(pid, 60))
        for index in range(2):
            start(Client(f"grpc-{index}"), _grpc_loop, server.grpc_address)
        for thread in threads:
            thread.start()
        try:
            wait_until_blocking(
                lambda: all(c.ok >= 3 for c in everyone), "load on every client", 60
            )
            before = [c.ok for c in everyone]
            killed = time.monotonic()
            os.kill(victim, signal.SIGKILL)
            wait_until_blocking(lambda: not alive(victim), "the worker dies", 10)
            probe.request("GET", "/v2/health/ready")  # asks the surviving worker
            answer = probe.getresponse()
            assert (answer.status, answer.read()) == (503, b'{"ready":false}')
            wait_until_blocking(
                lambda: len(server.worker_pids()) == 2 and server.ready(),
                "a replacement serves",
                REPLACEMENT_S,
            )
            replaced_s = time.monotonic() - killed
            wait_until_blocking(
                lambda: all(c.ok >= b + 3 for c, b in zip(everyone, before, strict=True)),
                "every client succeeds again",
                60,
            )
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=90)
            probe.close()
        counts = {c.name: (c.ok, c.failures, c.wrong) for c in everyone}
        print(f"replacement served {replaced_s:.2f} s after the kill; requests: {counts}")
        assert all(not c.wrong for c in everyone), counts
        assert all(len(c.failures) <= 1 for c in everyone), counts
        assert not [c for c in everyone if "other" in c.name and c.failures], counts
        assert victim not in server.worker_pids()
    assert server.process.returncode == 0


def _queued(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=30).text
    match = re.search(r'shipyard_inference_queue_size{model="slow",version="1"} (\S+)', text)
    return float(match.group(1)) if match else -1.0


def _refused(url: str) -> bool:
    try:
        httpx.get(f"{url}/v2/health/live", timeout=5)
    except httpx.ConnectError:
        return True
    except httpx.TransportError:
        return False
    return False


def test_sigterm_drains_every_worker_and_exits_zero(tmp_path: Path) -> None:
    """SIGTERM with a running and a queued request in each worker: new connections are
    refused at once, all four requests get 200, the server exits 0 and no worker remains."""
    write_model(tmp_path / "repo", "slow", slow_model(3000))  # about a second per execution
    body = json.dumps(
        {"inputs": [{"name": "INPUT0", "shape": [1, 4], "datatype": "FP32", "data": [2.0] * 4}]}
    )
    server = ServeWorkers(tmp_path / "repo", 2, "--drain-timeout", "30", grpc=False)
    try:
        server.wait_ready()
        connections = [server.connection_on(pid, 60) for pid in server.worker_pids() * 2]

        def infer(connection: http.client.HTTPConnection) -> int:
            connection.request("POST", "/v2/models/slow/infer", body)
            answer = connection.getresponse()
            answer.read()
            return answer.status

        with ThreadPoolExecutor(max_workers=4) as pool:
            answers = [pool.submit(infer, c) for c in connections]
            wait_until_blocking(lambda: _queued(server.url) >= 2, "one queued in each", 60)
            server.process.send_signal(signal.SIGTERM)
            wait_until_blocking(lambda: _refused(server.url), "new connections are refused", 10)
            assert not all(a.done() for a in answers)
            assert [a.result(timeout=90) for a in answers] == [200] * 4
        assert server.process.wait(timeout=60) == 0
    finally:
        assert server.stop() == 0
    _, stderr = server.output()
    assert "Traceback" not in stderr
    assert "all 2 workers stopped" in stderr


def test_workers_stop_when_the_supervisor_is_killed(tmp_path: Path) -> None:
    """kill -9 of the supervisor: its workers notice, drain and exit, and remove its folder."""
    write_model(tmp_path / "repo", "simple", add_sub_model())
    with tempfile.TemporaryDirectory(prefix="sy-") as short:  # fits a Unix socket's path
        _supervisor_killed(tmp_path / "repo", Path(short))


def _supervisor_killed(repository: Path, scratch: Path) -> None:
    server = ServeWorkers(repository, 2, grpc=False, env={"TMPDIR": str(scratch)})
    try:
        server.wait_ready()
        workers = server.worker_pids()
        assert len(list(scratch.glob("shipyard-workers-*"))) == 1  # the control folder
        server.process.kill()
        server.process.wait(timeout=10)
        wait_until_blocking(lambda: not any(alive(p) for p in workers), "the workers exit", 60)
        wait_until_blocking(lambda: not list(scratch.glob("shipyard-workers-*")), "cleanup", 10)
    finally:
        server.stop()
    _, stderr = server.output()
    assert "the supervisor is gone" in stderr


def test_a_start_that_fails_is_one_clear_line_and_leaves_no_process(tmp_path: Path) -> None:
    """A worker that cannot start (an unknown --model) fails the whole start with its error."""
    write_model(tmp_path / "repo", "simple", add_sub_model())
    command = [SHIPYARD, "serve", str(tmp_path / "repo"), "--workers", "2", "--http-port", "0"]
    result = subprocess.run(
        [*command, "--grpc-port", "0", "--model", "nope"],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, NO_COLOR="1"),
    )
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert "--model nope" in errors[0]
    assert "Traceback" not in result.stderr


def test_a_port_in_use_is_one_clear_line(tmp_path: Path) -> None:
    """--workers with a port already taken: one error naming the port, nothing started."""
    write_model(tmp_path / "repo", "simple", add_sub_model())
    with serve_workers(tmp_path / "repo", 2, grpc=False) as running:
        port = running.url.rsplit(":", 1)[1]
        command = [SHIPYARD, "serve", str(tmp_path / "repo"), "--workers", "2"]
        result = subprocess.run(
            [*command, "--http-port", port, "--grpc-port", "0"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


@pytest.mark.parametrize("value", ["0", "many", "-2"])
def test_bad_worker_counts_are_refused(tmp_path: Path, value: str) -> None:
    """--workers takes a positive count or 'auto'; anything else is one clear line."""
    result = subprocess.run(
        [SHIPYARD, "serve", str(tmp_path), "--workers", value, "--http-port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "invalid workers" in result.stderr
    assert "Traceback" not in result.stderr
