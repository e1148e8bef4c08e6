"""Measure a tuning candidate by actually serving it.

For each candidate the tuner writes a throw-away repository holding only the model: the
variant's file (linked, not copied, when the file system allows) and a ``model.toml`` that is
the model's own with the candidate's settings written by
:func:`shipyard.repository.settings.update_settings` (the same edit that writes the winner, so
every measurement also proves the file the tuner will write). It starts a real server on it
(:func:`shipyard.server.embedded.embedded_server`: HTTP on a free 127.0.0.1 port, in a thread
of this process, with the cyclic garbage collector frozen as ``shipyard serve`` does after
loading) and drives it with the ``shipyard bench`` load generator at each concurrency.

The load generator runs in a separate, long-lived process (:class:`LoadWorker`, see
:mod:`shipyard.tuning.loadworker`): on the same event loop or in the same process it would
share the GIL with the server it measures, which on a 2-core machine lowers the throughput and
inflates the p99 the tuner is trying to compare (see docs/tune.md).

This is the one place the offline half starts the online half; the server is imported only
when a candidate is measured.
"""

from __future__ import annotations

import base64
import contextlib
import gc
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from shipyard.config import ServerConfig
from shipyard.errors import LoadGeneratorError, ShipyardError
from shipyard.loadgen import http as http_load
from shipyard.loadgen.inputs import build_inputs
from shipyard.repository.layout import parse_version
from shipyard.tuning.search import Point

__all__ = ["LoadWorker", "Measured", "Workload", "serve_and_measure"]

#: Seconds a measurement may take beyond its warm-up and duration (connect, drain, spawn).
SLACK_S = 30.0


@dataclass(frozen=True, slots=True)
class Workload:
    """The load each candidate gets: closed loop at each concurrency, one request shape."""

    concurrency: tuple[int, ...]
    duration_s: float
    warmup_s: float
    binary: bool = True
    input_file: Path | None = None


@dataclass(frozen=True, slots=True)
class Measured:
    """A candidate's points, or why it could not be measured; ``raw``: the bench rows."""

    points: list[Point] | None
    reason: str = ""
    raw: tuple[dict[str, Any], ...] = ()
    first_error: str = ""


class LoadWorker:
    """A ``python -m shipyard.tuning.loadworker`` process, one job at a time."""

    def __init__(self) -> None:
        self._process: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._stderr: IO[str] | None = None
        self._pump: threading.Thread | None = None

    def __enter__(self) -> LoadWorker:
        self._stderr = tempfile.TemporaryFile("w+", encoding="utf-8")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self._process = subprocess.Popen(
            [sys.executable, "-m", "shipyard.tuning.loadworker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            env=env,
        )
        stdout = self._process.stdout
        if stdout is None:  # Popen(stdout=PIPE) always sets it; this narrows the type
            raise LoadGeneratorError("cannot read the load generator's output")

        def pump() -> None:
            for line in stdout:
                self._lines.put(line)
            self._lines.put(None)

        self._pump = threading.Thread(target=pump, name="shipyard-tune-loadworker", daemon=True)
        self._pump.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the worker's stdin and wait for it (killing it after 5 s)."""
        process, self._process = self._process, None
        if process is not None:
            with contextlib.suppress(OSError):
                if process.stdin:
                    process.stdin.close()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
            if self._pump is not None:
                self._pump.join(timeout=5)
            if process.stdout is not None:
                process.stdout.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def _died(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        lines = self._stderr.read().strip().splitlines()
        return lines[-1] if lines else ""

    def measure(
        self, host: str, port: int, request: bytes, concurrency: int, warmup: float, duration: float
    ) -> dict[str, Any]:
        """One closed-loop measurement; the bench row (Summary fields) as a dictionary."""
        process = self._process
        if process is None or process.stdin is None:
            raise LoadGeneratorError("the load generator process is not running")
        job = {
            "host": host,
            "port": port,
            "request": base64.b64encode(request).decode("ascii"),
            "concurrency": concurrency,
            "warmup_s": warmup,
            "duration_s": duration,
        }
        try:
            process.stdin.write(json.dumps(job) + "\n")
            process.stdin.flush()
            line = self._lines.get(timeout=warmup + duration + SLACK_S)
        except (OSError, queue.Empty) as exc:
            self.close()
            raise LoadGeneratorError(
                f"the load generator process stopped answering ({exc!r})"
            ) from exc
        if line is None:
            raise LoadGeneratorError(f"the load generator process exited: {self._died()}")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise LoadGeneratorError(str(answer["error"]))
        summary: dict[str, Any] = answer["summary"]
        return summary


def _link(source: Path, target: Path) -> None:
    try:
        target.symlink_to(source.resolve())
    except OSError:  # no symlinks here (Windows without the privilege): copy
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copy2(source, target)


def _repository(
    scratch: Path, name: str, model_file: Path, model_dir: Path, toml_text: str
) -> Path:
    """``scratch/repo/name/{1/model.onnx, model.toml, other files of the model folder}``."""
    repo = scratch / "repo"
    folder = repo / name
    (folder / "1").mkdir(parents=True)
    _link(model_file, folder / "1" / "model.onnx")
    (folder / "model.toml").write_text(toml_text, encoding="utf-8")
    for entry in model_dir.iterdir():  # labels files and the like, named by model.toml
        if (
            parse_version(entry.name) is not None
            or entry.name.startswith(".")
            or entry.name == "model.toml"
        ):
            continue
        if entry.name.startswith("tune-report"):
            continue
        _link(entry, folder / entry.name)
    return repo


def _point(row: dict[str, Any]) -> Point:
    return Point(
        int(row["concurrency"]),
        float(row["rps"]),
        row["p50_ms"],
        row["p99_ms"],
        int(row["error_count"]),
    )


def serve_and_measure(
    name: str,
    model_file: Path,
    model_dir: Path,
    toml_text: str,
    workload: Workload,
    worker: LoadWorker,
) -> Measured:
    """Serve ``model_file`` under ``toml_text`` and measure it at every concurrency."""
    # Imported here: the load worker process imports this package and needs no server.
    from shipyard.server.embedded import embedded_server

    with tempfile.TemporaryDirectory(prefix="shipyard-tune-") as tmp:
        repo = _repository(Path(tmp), name, model_file, model_dir, toml_text)
        try:
            config = ServerConfig(repository=repo, host="127.0.0.1", http_port=0, grpc_port=0)
            with embedded_server(config) as server:
                row = next((r for r in server.info.models if r["name"] == name), None)
                if row is None or row["state"] != "READY":
                    reason = row.get("reason", "") if row else "not loaded"
                    return Measured(None, f"the server could not load it: {reason}")
                target = http_load.HttpTarget(server.info.http_url)
                metadata = http_load.fetch_metadata(target, name, None)
                inputs = build_inputs(metadata, workload.input_file)
                body, headers = http_load.encode_request(inputs, workload.binary)
                path = f"{target.model_path(name, None)}/infer"
                request = http_load.raw_request(target.host, target.port, path, body, headers)
                rows = _drive(worker, target, request, workload)
        except ShipyardError as exc:
            return Measured(None, exc.message)
    points = [_point(r) for r in rows]
    first_error = next((str(r["first_error"]) for r in rows if r.get("first_error")), "")
    if not any(p.ok for p in points):
        reason = "no request succeeded" + (f": {first_error}" if first_error else "")
        return Measured(None, reason, tuple(rows), first_error)
    return Measured(points, "", tuple(rows), first_error)


def _drive(
    worker: LoadWorker, target: http_load.HttpTarget, request: bytes, workload: Workload
) -> Sequence[dict[str, Any]]:
    gc.collect()
    gc.freeze()  # what `shipyard serve` does once its models are loaded
    try:
        return [
            worker.measure(
                target.host, target.port, request, c, workload.warmup_s, workload.duration_s
            )
            for c in workload.concurrency
        ]
    finally:
        gc.unfreeze()
