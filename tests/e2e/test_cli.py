"""The ``shipyard`` command as a user runs it: a subprocess on a free port, polled, signalled."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from shipyard.hardware import int8_kernels, this_cpu
from shipyard.testing import (
    add_sub_model,
    identity_model,
    slow_model,
    wait_until_blocking,
    write_model,
)
from shipyard.testing.process import ServeProcess

SHIPYARD = str(Path(sys.executable).parent / "shipyard")
STARTUP_TIMEOUT_S = 60.0


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    env.update(PYTHONUNBUFFERED="1", COLUMNS="200", NO_COLOR="1")
    env.pop("SHIPYARD_HTTP_PORT", None)
    env.pop("SHIPYARD_GRPC_PORT", None)
    return env


class Serve(ServeProcess):
    """A ``shipyard serve`` subprocess whose output is collected by reader threads (gRPC on a
    free port unless ``args`` name one; the port variables of this environment left out)."""

    def __init__(self, repository: Path, *args: str) -> None:
        super().__init__(repository, *args, unset=("SHIPYARD_HTTP_PORT", "SHIPYARD_GRPC_PORT"))

    def wait_for_url(self) -> str:
        """Read stdout until the HTTP URL is printed, then poll until the server is ready."""
        try:
            return self.wait_ready(STARTUP_TIMEOUT_S)
        except RuntimeError as exc:
            pytest.fail(str(exc))


@pytest.fixture
def serve_processes() -> Iterator[list[Serve]]:
    """Every Serve started by a test, stopped at the end whatever happened."""
    started: list[Serve] = []
    yield started
    for process in started:
        process.stop()


@pytest.fixture
def start(serve_processes: list[Serve]) -> Any:
    """Start ``shipyard serve REPO --http-port 0 ...`` and return it."""

    def _start(repository: Path, *args: str) -> Serve:
        process = Serve(repository, *args)
        serve_processes.append(process)
        return process

    return _start


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``shipyard ARGS`` to completion."""
    return subprocess.run(
        [SHIPYARD, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_environment(),
        check=False,
    )


def assert_one_error_line(stderr: str, *fragments: str) -> None:
    """stderr is exactly one line, starting 'error:', holding ``fragments``, no traceback."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: "), stderr
    for fragment in fragments:
        assert fragment in lines[0], stderr
    assert "Traceback" not in stderr


def row(value: float) -> dict[str, Any]:
    """One [1, 4] FP32 row for INPUT0."""
    return {
        "inputs": [{"name": "INPUT0", "shape": [1, 4], "datatype": "FP32", "data": [value] * 4}]
    }


def queue_size(url: str, model: str) -> float:
    """The ``shipyard_inference_queue_size`` gauge of ``model`` from /metrics."""
    text = httpx.get(f"{url}/metrics", timeout=5).text
    match = re.search(rf'shipyard_inference_queue_size{{model="{model}",version="1"}} (\S+)', text)
    return float(match.group(1)) if match else -1.0


def test_serve_prints_url_and_model_table(repository: Path, start: Any) -> None:
    """serve prints the URL it listens on and the models table, and then serves."""
    write_model(repository, "simple", add_sub_model())
    write_model(repository, "strings", identity_model())
    server = start(repository)
    url = server.wait_for_url()
    stdout, _ = server.output()
    table = [line for line in stdout.splitlines() if "simple" in line and "READY" in line]
    assert table, stdout
    assert "INPUT0 FP32[-1, 16]" in table[0]
    assert "OUTPUT1 FP32[-1, 16]" in table[0]  # one line per model, no 80-column wrapping
    assert "metrics at /metrics)" in stdout
    assert re.search(r"\bstrings\b.*\b1\b.*READY", stdout), stdout
    response = httpx.get(f"{url}/v2/models/simple", timeout=5)
    assert response.status_code == 200
    assert response.json()["name"] == "simple"
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=30) == 0


def test_sigterm_drains_in_flight_requests(repository: Path, start: Any) -> None:
    """SIGTERM during a slow request: the running and the queued request both get 200, exit 0."""
    write_model(repository, "slow", slow_model(3000))  # about a second per execution
    drain_timeout = 20
    server = start(repository, "--drain-timeout", str(drain_timeout))
    url = server.wait_for_url()

    def infer(value: float) -> httpx.Response:
        return httpx.post(f"{url}/v2/models/slow/infer", json=row(value), timeout=60)

    with ThreadPoolExecutor(max_workers=2) as pool:
        # One instance: the first request runs at once, the second waits in the queue.
        running, queued = pool.submit(infer, 1.0), pool.submit(infer, 2.0)
        wait_until_blocking(lambda: queue_size(url, "slow") >= 1, "the second request queues", 30)
        assert not running.done()
        signalled = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        first_response, second_response = running.result(timeout=60), queued.result(timeout=60)
    assert first_response.status_code == 200, first_response.text
    assert second_response.status_code == 200, second_response.text
    assert second_response.json()["outputs"][0]["data"] == [2.0] * 4
    assert server.process.wait(timeout=drain_timeout + 10) == 0
    assert time.monotonic() - signalled < drain_timeout
    _, stderr = server.output()
    assert "Traceback" not in stderr


def test_sigint_exits_zero(repository: Path, start: Any) -> None:
    """Ctrl-C (SIGINT) stops the server cleanly with exit status 0."""
    write_model(repository, "simple", add_sub_model())
    server = start(repository)
    server.wait_for_url()
    server.process.send_signal(signal.SIGINT)
    assert server.process.wait(timeout=30) == 0
    _, stderr = server.output()
    assert "Traceback" not in stderr
    assert "KeyboardInterrupt" not in stderr


def test_missing_repository_is_one_clear_line(tmp_path: Path) -> None:
    """A missing repository: one 'error:' line on stderr, non-zero exit, no traceback."""
    missing = tmp_path / "nowhere"
    result = run_cli("serve", str(missing), "--http-port", "0", "--grpc-port", "0")
    assert result.returncode != 0
    assert_one_error_line(result.stderr, str(missing), "does not exist")


def test_port_in_use_is_one_clear_line(repository: Path) -> None:
    """A port that is taken: one 'error:' line naming it, non-zero exit, no traceback."""
    write_model(repository, "simple", add_sub_model())
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = run_cli("serve", str(repository), "--http-port", str(port), "--grpc-port", "0")
    assert result.returncode != 0
    assert_one_error_line(result.stderr, f"127.0.0.1:{port}", "--http-port")


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        pytest.param(["--model", "nope"], ["--model nope", "nope"], id="unknown-model"),
        pytest.param(["--http-port", "70000"], ["http_port", "70000"], id="port-out-of-range"),
        pytest.param(["--max-request-bytes", "10"], ["max_request_bytes"], id="limit-too-small"),
    ],
)
def test_bad_serve_arguments_are_one_clear_line(
    repository: Path, args: list[str], fragments: list[str]
) -> None:
    """Bad serve arguments: one 'error:' line saying what is wrong, non-zero exit."""
    write_model(repository, "simple", add_sub_model())
    result = run_cli("serve", str(repository), "--grpc-port", "0", *args)
    assert result.returncode != 0
    assert_one_error_line(result.stderr, *fragments)


def test_repo_list_prints_the_table_without_serving(repository: Path) -> None:
    """repo list prints names, versions and states (with the reason of a broken model) and exits."""
    write_model(repository, "simple", add_sub_model(), version=3)
    write_model(repository, "broken", b"not a model")
    result = run_cli("repo", "list", str(repository))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    simple = [line for line in lines if "simple" in line]
    assert simple, result.stdout
    assert re.search(r"\b3\b.*READY", simple[0]), result.stdout
    broken = [line for line in lines if "broken" in line]
    assert broken, result.stdout
    assert "UNAVAILABLE" in broken[0]
    assert "http://" not in result.stdout
    assert "Traceback" not in result.stderr


def test_repo_list_flags_int8_made_for_another_kind_of_cpu(repository: Path) -> None:
    """A version whose report.json says its int8 weights were chosen for another kind of CPU
    than this one is listed READY, with a warning line naming the model and the version."""
    here = int8_kernels(this_cpu())
    other = (
        {"family": "x86-no-vnni", "description": "x86 AVX2 without VNNI/AMX", "reduce_range": True}
        if here.family != "x86-no-vnni"
        else {"family": "x86-vnni", "description": "x86 with AVX-512 VNNI", "reduce_range": False}
    )
    write_model(repository, "q", identity_model())
    report = {"step": "optimize", "optimization": {"method": "int8-static", "int8": other}}
    (repository / "q" / "1" / "report.json").write_text(json.dumps(report))
    result = run_cli("repo", "list", str(repository))
    assert result.returncode == 0, result.stderr
    assert re.search(r"q\s.*READY", result.stdout), result.stdout
    warning = [line for line in result.stdout.splitlines() if line.startswith("warning: q ")]
    assert len(warning) == 1, result.stdout
    assert "version 1: quantized" in warning[0]
    assert other["description"] in warning[0]


def test_repo_list_of_missing_repository(tmp_path: Path) -> None:
    """repo list of a folder that does not exist: one 'error:' line, non-zero exit."""
    result = run_cli("repo", "list", str(tmp_path / "nowhere"))
    assert result.returncode != 0
    assert_one_error_line(result.stderr, "does not exist")


def test_model_option_loads_only_that_model(repository: Path, start: Any) -> None:
    """--model NAME serves that model only; the others stay unloaded."""
    write_model(repository, "simple", add_sub_model())
    write_model(repository, "other", identity_model())
    server = start(repository, "--model", "simple")
    url = server.wait_for_url()
    index = {r["name"]: r for r in httpx.post(f"{url}/v2/repository/index", timeout=5).json()}
    assert index["simple"]["state"] == "READY"
    assert index["other"]["state"] == "UNAVAILABLE"
    assert index["other"]["reason"] == "not loaded"
    assert httpx.get(f"{url}/v2/models/other/ready", timeout=5).status_code != 200
    response = httpx.post(f"{url}/v2/models/other/infer", json=row(1), timeout=5)
    assert response.status_code == 404


def test_serve_prints_the_dashboard_url_and_no_ui_turns_it_off(
    repository: Path, start: Any
) -> None:
    """serve prints where the dashboard is and serves it; with --no-ui there is none."""
    write_model(repository, "simple", add_sub_model())
    server = start(repository)
    url = server.wait_for_url()
    assert f"UI    {url}/ui/" in server.output()[0]
    assert httpx.get(f"{url}/ui/", timeout=5).status_code == 200
    quiet = start(repository, "--no-ui")
    quiet_url = quiet.wait_for_url()
    assert "/ui/" not in quiet.output()[0]
    assert httpx.get(f"{quiet_url}/ui/", timeout=5).status_code == 404
    assert httpx.get(f"{quiet_url}/", timeout=5).status_code == 404
