"""``shipyard bench`` against a real server: HTTP JSON, HTTP binary and gRPC, closed and open loop.

The command runs in-process through click's runner (the server runs in its own thread), except
for the unreachable-server case, which runs it as a subprocess to see exactly what a user sees.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner, Result

from shipyard.cli import main
from shipyard.testing import RunningServer, cnn_model, running_server, slow_model, write_model

SHIPYARD = str(Path(sys.executable).parent / "shipyard")
#: A model that computes ~20 ms per request, one at a time, with room for one waiting request:
#: at concurrency 8 most requests are refused with 503 / UNAVAILABLE (queue full).
BUSY = "max_batch_size = 0\n[dynamic_batching]\nmax_queue_size = 1\n"
SHORT = ["--duration", "1", "--warmup", "0.2"]
ROW_KEYS = {
    "concurrency",
    "rate",
    "duration_s",
    "requests",
    "rps",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "max_ms",
    "mean_ms",
    "errors",
    "error_count",
    "first_error",
    "client_cpu",
    "missed",
    "errors_outside",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A real server with the CNN and a busy slow model, over HTTP and gRPC."""
    repo = tmp_path_factory.mktemp("bench")
    write_model(repo, "cnn", cnn_model())
    write_model(repo, "busy", slow_model(60), config=BUSY)
    with running_server(repo) as running:
        yield running


def url(server: RunningServer, protocol: str) -> str:
    """The server's URL for ``protocol`` as a user passes it."""
    return f"grpc://{server.grpc_address}" if protocol == "grpc" else server.url


def bench(*args: str) -> Result:
    """``shipyard bench ARGS`` in-process."""
    return CliRunner().invoke(main, ["bench", *args])


def bench_json(*args: str) -> dict[str, Any]:
    """``shipyard bench ARGS --json``, checked to succeed, as the parsed document."""
    result = bench(*args, "--json")
    assert result.exit_code == 0, result.output
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.parametrize(
    ("protocol", "extra", "encoding"),
    [("http", [], "json"), ("http", ["--binary"], "binary"), ("grpc", [], "raw")],
)
def test_closed_loop_figures_are_sane(
    server: RunningServer, protocol: str, extra: list[str], encoding: str
) -> None:
    """Concurrency 1 and 4 complete requests without errors, with ordered, consistent figures."""
    doc = bench_json(
        url(server, protocol), "--model", "cnn", "--concurrency", "1,4", *SHORT, *extra
    )
    assert (doc["protocol"], doc["encoding"], doc["mode"], doc["model"]) == (
        protocol,
        encoding,
        "closed",
        "cnn",
    )
    assert doc["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [1, 1, 28, 28]}]
    assert [row["concurrency"] for row in doc["rows"]] == [1, 4]
    for row in doc["rows"]:
        assert set(row) == ROW_KEYS
        assert row["requests"] > 0
        assert (row["errors"], row["error_count"], row["first_error"]) == ({}, 0, "")
        assert row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"] <= row["max_ms"]
        assert row["duration_s"] == pytest.approx(1.0, abs=0.01)
        assert row["rps"] == pytest.approx(row["requests"] / row["duration_s"])
        # Little's law: requests in flight on average = throughput x mean latency <= concurrency.
        in_flight = row["rps"] * row["mean_ms"] / 1000
        assert 0.2 * row["concurrency"] <= in_flight <= 1.05 * row["concurrency"]
        assert 0 < row["client_cpu"] < 4
        assert row["rate"] is None


def test_table_shows_one_row_per_concurrency(server: RunningServer) -> None:
    """Without --json, a table names the target and model and lists the figures."""
    result = bench(server.url, "--model", "cnn", "--concurrency", "2", "--duration", "0.5")
    assert result.exit_code == 0, result.output
    for text in ("model cnn", "req/s", "p99", "conc.", "client CPU", "json"):
        assert text in result.stdout


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_open_loop_achieves_the_rate(server: RunningServer, protocol: str) -> None:
    """--rate 100 for 1 s completes about 100 requests, with none missed."""
    doc = bench_json(url(server, protocol), "--model", "cnn", "--rate", "100", *SHORT)
    assert doc["mode"] == "open"
    (row,) = doc["rows"]
    assert (row["rate"], row["concurrency"], row["error_count"]) == (100.0, 64, 0)
    assert 60 <= row["requests"] <= 110
    assert row["missed"] == 0


def test_open_loop_with_a_tick_achieves_the_rate(server: RunningServer) -> None:
    """--rate 100 --tick 5: the generator wakes every 5 ms at most and still completes about
    100 requests in 1 s, none missed; the JSON says which tick ran."""
    doc = bench_json(server.url, "--model", "cnn", "--rate", "100", "--tick", "5", *SHORT)
    assert doc["tick_ms"] == 5.0
    (row,) = doc["rows"]
    assert row["error_count"] == 0
    assert 60 <= row["requests"] <= 110
    assert row["missed"] == 0


def test_a_tick_out_of_range_is_refused(server: RunningServer) -> None:
    """--tick -1 is one error line naming the flag, no traceback."""
    result = bench(server.url, "--model", "cnn", "--rate", "100", "--tick", "-1", *SHORT)
    assert result.exit_code != 0
    assert "--tick" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(("protocol", "status"), [("http", "400"), ("grpc", "INVALID_ARGUMENT")])
def test_wrong_inputs_are_counted_by_status(
    server: RunningServer, tmp_path: Path, protocol: str, status: str
) -> None:
    """An --input array of the wrong shape makes every request fail, counted under its status."""
    path = tmp_path / "wrong.npz"
    np.savez(path, input=np.zeros((1, 3, 3), np.float32))
    args = ["--input", str(path), "--concurrency", "2", "--duration", "0.5", "--warmup", "0.1"]
    doc = bench_json(url(server, protocol), "--model", "cnn", *args)
    (row,) = doc["rows"]
    assert row["requests"] == 0
    assert set(row["errors"]) == {status}
    assert row["errors"][status] == row["error_count"] > 0
    assert "input" in row["first_error"]
    assert row["p50_ms"] is None


@pytest.mark.parametrize(("protocol", "status"), [("http", "503"), ("grpc", "UNAVAILABLE")])
def test_overload_is_counted_as_unavailable(
    server: RunningServer, protocol: str, status: str
) -> None:
    """A full queue's 503 / UNAVAILABLE answers are counted beside the requests that succeed."""
    doc = bench_json(url(server, protocol), "--model", "busy", "--concurrency", "8", *SHORT)
    (row,) = doc["rows"]
    assert row["requests"] > 0
    assert row["errors"].get(status, 0) > 0
    assert "queue full" in row["first_error"]


def test_unreachable_server_is_one_line_error() -> None:
    """Nothing listening: a one-line error, a non-zero exit and no traceback (as a subprocess)."""
    done = subprocess.run(
        [SHIPYARD, "bench", f"http://127.0.0.1:{free_port()}", "--model", "cnn"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert done.stderr.startswith("error: cannot reach http://127.0.0.1:")
    assert done.stderr.count("\n") == 1
    assert "Traceback" not in done.stderr + done.stdout


def test_unreachable_grpc_server_is_one_line_error() -> None:
    """Nothing listening on the gRPC port: a clear error at once, not a hang."""
    result = bench(f"grpc://127.0.0.1:{free_port()}", "--model", "cnn")
    assert result.exit_code == 2
    assert "error: cannot reach grpc://127.0.0.1:" in result.output
    assert isinstance(result.exception, SystemExit)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_unknown_model_is_named(server: RunningServer, protocol: str) -> None:
    """A model the server does not have: exit 2 and an error naming it."""
    result = bench(url(server, protocol), "--model", "nope", "--duration", "0.5")
    assert result.exit_code == 2
    assert "error: model 'nope' not found" in result.output
    assert isinstance(result.exception, SystemExit)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--concurrency", "0"], "--concurrency takes positive integers"),
        (["--concurrency", "1,x"], "--concurrency '1,x'"),
        (["--rate", "-5"], "--rate takes positive"),
        (["--protocol", "grpc", "--binary"], "--binary is for HTTP"),
        (["--shape", "bogus:1,2"], "--shape names bogus"),
        (["--duration", "0"], "--duration must be positive"),
    ],
)
def test_bad_flags_are_one_line_errors(
    server: RunningServer, args: list[str], message: str
) -> None:
    """Each bad flag is refused with exit 2 and a message saying what is wrong."""
    target = url(server, "grpc" if "grpc" in args else "http")
    result = bench(target, "--model", "cnn", *args)
    assert result.exit_code == 2
    assert message in result.output
    assert isinstance(result.exception, SystemExit)
